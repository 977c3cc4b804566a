"""A short real training run with its own quality floor, so that a regression in the training
code (synth/train/, the model) shows up here, not only in the stored bundled weights.

Palmer penguins (bench/datasets/penguins.py: 342 birds, 3 enums and 5 numbers), a tiny
model, 300 steps through the public `synth.Synthesizer.fit`, then scored by
`compare_records` against the held-out test split. Measured (seed 0, this machine, ~7 s
to fit): the loss falls from 19.9 (first logged step) to 6.5; trained vs untrained (1
step): detection AUC 0.66 vs 1.00 (real-vs-real floor 0.42-0.50), mean TV 0.043 vs 0.353,
mean KS 0.078 vs 0.438. The floors below sit between the two, so a training loop that
does not learn (no optimizer step, a broken loss or gradient) fails them. (The loss fell
further, to 0.62, before numbers on a grid were dequantized: the Gaussian likelihood
could then shrink onto the grid points; synth/value_grid.py.)
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("palmerpenguins")

STEPS = 300
CONFIG = {"model": {"latent_dim": 32, "char_dim": 8},
          "train": {"batch_size": 64, "log_every": 10, "eval_every": 100000, "checkpoint_every": 100000,
                    "validation_fraction": 0.0}}
MAX_LOSS_RATIO = 0.5  # final / first logged loss; measured 0.33
MAX_DETECTION_AUC = 0.85  # measured 0.68 trained, 1.00 untrained
MAX_MEAN_TV = 0.15  # measured 0.069 trained, 0.353 untrained
MAX_MEAN_KS = 0.22  # measured 0.111 trained, 0.438 untrained


def test_a_short_training_run_reaches_its_quality_floor(tmp_path):
    import torch

    import synth
    from bench.datasets import get, split_records
    from synth.eval.compare import compare_records
    from synth.schema.tree import build_tree

    ds = get("penguins")
    train, validation, test = split_records(ds, 0)
    train = train + validation
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = synth.Synthesizer(ds.proto, ds.message, config=CONFIG).fit(
            train, steps=STEPS, seed=0, progress=False, out=tmp_path / "run")
        generated = s.sample(400, seed=0)
    finally:
        torch.set_num_threads(threads)
    assert s.result.step == STEPS and not s.result.stopped
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) >= 10 and losses[-1] <= MAX_LOSS_RATIO * losses[0], (losses[0], losses[-1])

    r = compare_records(build_tree(s.schema.descriptor), test, generated, train, seed=0)["summary"]
    assert r["copies"] <= 0.05, r
    assert r["detection_auc"] <= MAX_DETECTION_AUC, r
    assert r["mean_tv"] <= MAX_MEAN_TV, r
    assert r["mean_ks"] <= MAX_MEAN_KS, r
