"""Input larger than memory (docs/training.md): `synth train --stream` reads the data in passes.

The first pass holds the validation split out by a hash of the record index and computes
the fit statistics; the training passes go through a shuffle buffer, each rank over its
own records. Compared here with what the in-memory path computes from the same records.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from synth.cli import main
from synth.fitstats import fit_stats
from synth.moments import RunningMoments
from synth.records import to_messages
from synth.schema.loader import load_schema
from synth.train import TrainConfig
from synth.train.distributed import Dist
from synth.train.stream import StreamingSource, index_hash

PROTO = """
syntax = "proto3";
package toy;
message Row { string name = 1; string zip = 2; double x = 3; double y = 4; int32 n = 5; }
"""
N = 300


def rows(n: int = N) -> list[dict]:
    names = ["ann", "bob", "cy", "dee", "eve", "flo"]
    return [{"name": names[i % 6], "zip": f"0{i % 7}", "x": 44.0 + 0.001 * i, "y": -72.0 + 0.3 * (i % 5),
             "n": i % 4} for i in range(n)]


@pytest.fixture()
def data(tmp_path) -> Path:
    (tmp_path / "row.proto").write_text(PROTO)
    with gzip.open(tmp_path / "rows.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows())
    return tmp_path


def held_out(seed: int = 0, fraction: float = 0.1, n: int = N) -> set[int]:
    return {i for i in range(n) if index_hash(seed, i) < fraction}


def test_training_streams_a_gzip_jsonl_file_through_the_cli(data):
    out = data / "model"
    cfg = data / "run.toml"
    cfg.write_text("[model]\nlatent_dim = 16\nchar_dim = 8\n[train]\nsteps = 8\nbatch_size = 16\neval_every = 0\n"
                   "log_every = 4\ncheckpoint_every = 0\nshuffle_buffer = 32\ndevice = \"cpu\"\n"
                   "[train.tune]\nenabled = false\n")
    assert main(["train", str(data / "row.proto"), "--message", "Row", "--data", str(data / "rows.jsonl.gz"),
                 "--config", str(cfg), "--out", str(out), "--stream"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    meta = manifest["metadata"]
    held = held_out()
    assert 10 < len(held) < 60  # ~10 % of 300
    assert meta["validation"]["source"] == "hash"
    assert meta["validation"]["validation_records"] == len(held)
    assert meta["summary"]["train_records"] == N - len(held)
    assert meta["run_config"]["train"]["stream"] is True
    # the first pass computed what the in-memory statistics of the training records are
    schema = load_schema(PROTO, "Row")
    expected = fit_stats(to_messages([r for i, r in enumerate(rows()) if i not in held], schema.message_class))
    got = manifest["fit_stats"]
    assert got["n_records"] == expected.n_records
    assert got["string_values"] == expected.string_values and got["int_values"] == expected.int_values
    for key, mean in expected.scalar_mean.items():
        assert np.allclose(got["scalar_mean"][key], mean, rtol=0, atol=1e-9)
        assert np.allclose(got["scalar_cov"][key], expected.scalar_cov[key], rtol=1e-9, atol=1e-12)


def source(data: Path, dist: Dist = Dist(), **kw) -> StreamingSource:
    cfg = TrainConfig(shuffle_buffer=kw.pop("buffer", 16), validation_min_records=4, **kw)
    s = StreamingSource(data / "rows.jsonl.gz", load_schema(PROTO, "Row").message_class, cfg, dist=dist)
    s.scan()
    return s


def test_each_rank_sees_a_disjoint_slice_of_every_epoch_shuffled(data):
    held = held_out()
    per_rank = []
    for rank in range(2):
        s = source(data, Dist(rank, 2))
        epoch = [(m.x - 44.0) / 0.001 for m in s.take(s.shard_sizes[rank])]
        ids = [int(round(v)) for v in epoch]
        assert len(set(ids)) == len(ids)  # every record of the slice once per epoch
        assert ids != sorted(ids)  # shuffled through the buffer
        assert all(i % 2 == rank for i in ids)
        second = [int(round((m.x - 44.0) / 0.001)) for m in s.take(s.shard_sizes[rank])]
        assert sorted(second) == sorted(ids) and second != ids  # the next epoch, in another order
        per_rank.append(set(ids))
    assert per_rank[0].isdisjoint(per_rank[1])
    assert per_rank[0] | per_rank[1] == set(range(N)) - held


def test_a_resumed_stream_continues_where_the_step_left_it(data):
    s = source(data)
    first = [m.SerializeToString() for m in s.take(300)]  # into the second epoch
    again = source(data)
    again.seek(120)
    assert [m.SerializeToString() for m in again.take(180)] == first[120:]


def test_validation_split_is_capped_and_spread_by_hash(data):
    s = source(data, validation_max_records=10)
    assert len(s.validation) == 10
    # the ten smallest hashes over the whole file, not the first ten candidates
    smallest = sorted(range(N), key=lambda i: index_hash(0, i))[:10]
    assert sorted(int(round((m.x - 44.0) / 0.001)) for m in s.validation) == sorted(smallest)
    none = source(data, validation_fraction=0.0)
    assert none.validation == [] and none.n_train == N


def test_running_moments_match_numpy_and_fall_back_on_overflow():
    x = np.random.default_rng(0).normal([44.0, -72.0], [0.3, 0.5], size=(9000, 2))
    m = RunningMoments()
    for row in x:
        m.add(row.tolist())
    mean, cov = m.result()
    assert np.allclose(mean, x.mean(0), atol=1e-12) and np.allclose(cov, np.cov(x.T), atol=1e-14)
    huge = RunningMoments()
    for v in (1e300, -1e300, 5.0):
        huge.add([v])
    assert not np.isfinite(huge.result()[1]).all() and huge.absmax == 1e300  # fit_stats' fallback scale
    one = RunningMoments()
    one.add([1.0])
    assert one.result() is None
