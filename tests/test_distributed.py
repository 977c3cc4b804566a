"""Data-parallel training (docs/training.md, "Distributed training"): torchrun with gloo on loopback.

The comparison is with one process training on the same global batch: same seed, same
data order, TF decoding (so no draw depends on a rank's share), a oneof case and an
optional field that many steps leave unused on one rank or both, and two beta levels,
one per rank. After the same steps the weights and buffers must agree to float rounding,
while training itself moves them by orders of magnitude more.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synth.cli import main
from synth.model import Model
from synth.model_config import ModelConfig
from synth.train.distributed import Dist

PROTO = """
syntax = "proto3";
package toy;
message Row {
  string name = 1;
  double x = 2;
  double y = 3;
  optional string nick = 4;
  oneof pick { int32 count = 5; string tag = 6; }
}
"""
CONFIG = """
[model]
latent_dim = 16
char_dim = 8
n_levels = 2
[train]
steps = 6
batch_size = 8
eval_every = 0
log_every = 3
checkpoint_every = 0
tuple_sampling = "TF"
string_sampling = "TF"
validation_fraction = 0.0
device = "cpu"
[train.tune]
enabled = false
"""
TOLERANCE = 1e-5


def rows() -> list[dict]:
    names = ["ann", "bob", "cy", "dee", "eve"]
    out = []
    for i in range(64):
        r: dict = {"name": names[i % 5], "x": float(i % 3) + 0.01 * i, "y": float(i % 5)}
        if i % 8 == 3:
            r["nick"] = f"n{i % 2}"
        if i % 16 == 5:
            r["tag"] = "t"  # rare: most shares of a step have no tag
        else:
            r["count"] = i % 4
        out.append(r)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    (d / "row.proto").write_text(PROTO)
    (d / "run.toml").write_text(CONFIG)
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    return d


def args(d: Path, out: Path, *extra: str) -> list[str]:
    return [str(d / "row.proto"), "--message", "Row", "--data", str(d / "rows.jsonl"), "--config",
            str(d / "run.toml"), "--out", str(out), *extra]


def torchrun(n: int, d: Path, out: Path, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "synth.train", *args(d, out, *extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def one_process(files) -> Path:
    out = files / "one"
    assert main(["train", *args(files, out)]) == 0
    return out


def max_difference(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].numel())


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(files, one_process):
    two = files / "two"
    torchrun(2, files, two)
    assert max_difference(one_process, two) < TOLERANCE
    # ... while training moved the weights far more than the tolerance
    torch.manual_seed(0)
    start = Model.create(files / "row.proto", "Row", records=rows(),
                         config=ModelConfig(latent_dim=16, char_dim=8, n_levels=2)).vae.state_dict()
    trained = load_file(str(one_process / "weights.safetensors"))
    moved = max(float((trained[k].double() - start[k].double()).abs().max()) for k in trained if trained[k].numel())
    assert moved > 100 * TOLERANCE
    # rank 0 alone logs and writes: one metrics row per log step (3, 6) and the final evaluation
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [3, 6, 6]
    assert (two / "checkpoint" / "trainer.json").is_file()
    assert json.loads((two / "checkpoint" / "trainer.json").read_text())["step"] == 6


def test_resuming_with_another_number_of_processes_continues_the_same_run(files, one_process):
    out = files / "resumed"
    torchrun(2, files, out, "--steps", "3")
    assert main(["train", *args(files, out, "--resume")]) == 0  # one process takes over at step 3
    assert max_difference(one_process, out) < TOLERANCE


def test_beta_levels_are_spread_across_ranks():
    """Rank r trains levels l = r (mod W) at every step (paper section 6: levels per worker)."""
    n_levels, batch = 4, 8
    for step in range(5):
        seen = []
        for rank in range(2):
            pos = Dist(rank, 2).positions(batch, step, n_levels)
            levels = (pos + step) % n_levels
            assert len(pos) == batch // 2 and set(levels % 2) == {rank}
            seen += pos.tolist()
        assert sorted(seen) == list(range(batch))  # disjoint shares covering the batch
    # without multiscale the shares are strided and still cover the batch once
    shares = [Dist(r, 4).positions(12, 7, 1) for r in range(4)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(12))


def test_batch_not_divisible_by_the_processes_is_refused():
    from synth.errors import ConfigError
    from synth.train import TrainConfig
    from synth.train.distributed import check_config

    with pytest.raises(ConfigError, match="batch_size"):
        check_config(TrainConfig(batch_size=9), Dist(0, 2))
    check_config(TrainConfig(batch_size=8), Dist(0, 2))
