"""Classifier two-sample test (synth/eval/detection.py): 0.5 for the same distribution, high for a broken joint."""
from __future__ import annotations

import numpy as np

from synth.eval.detection import detection_auc, detection_floor, feature_matrix
from synth.eval.features import CATEGORY, NUMBER, STRING, Column, LeafTable


def sample(n: int, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = x + 0.2 * rng.normal(size=n)
    cat = np.where(x + 0.2 * rng.normal(size=n) > 0, "hi", "lo").astype(object)
    word = np.array([("ST " if v > 0 else "AVENUE ") + str(int(abs(v) * 10)) for v in y], dtype=object)
    return LeafTable((Column("x", NUMBER, x), Column("y", NUMBER, y), Column("cat", CATEGORY, cat),
                      Column("word", STRING, word)), n)


def shuffled(t: LeafTable, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    return LeafTable(tuple(Column(c.name, c.kind, c.values[rng.permutation(t.n_rows)]) for c in t.columns), t.n_rows)


def test_same_distribution_is_near_one_half():
    r = detection_auc(sample(600, 0), sample(600, 1), seed=0)
    assert 0.4 < r["auc"] < 0.6, r
    assert r["rows_per_class"] == 600 and r["folds"] == 5


def test_broken_correlation_is_detected_by_trees():
    real = sample(600, 0)
    r = detection_auc(real, shuffled(sample(600, 1), 2), seed=0)
    assert r["auc"] > 0.7, r


def test_deterministic_and_balanced():
    a, b = sample(500, 0), sample(300, 1)
    r1, r2 = detection_auc(a, b, seed=3), detection_auc(a, b, seed=3)
    assert r1 == r2 and r1["rows_per_class"] == 300


def test_floor_is_the_same_test_on_real_rows():
    train, holdout = sample(800, 0), sample(400, 1)
    f = detection_floor(train, holdout, seed=0)
    assert f == detection_auc(holdout, train, seed=0) and 0.4 < f["auc"] < 0.6


def test_features_code_strings_without_raw_values():
    t = sample(50, 0)
    (m,), categorical, names = feature_matrix(t, [t])
    assert m.shape == (50, len(names)) and "word:len" in names and "word:code" in names
    assert categorical[names.index("cat:code")] and not categorical[names.index("x")]
