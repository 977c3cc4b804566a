"""Classifier two-sample test (synth/eval/detection.py): 0.5 for the same distribution, high for a broken joint."""
from __future__ import annotations

import numpy as np
import pytest

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
    r = detection_auc(sample(600, 0), sample(600, 1), seed=0, repeats=1)
    assert 0.4 < r["auc"] < 0.6, r
    assert r["rows_per_class"] == 600 and r["folds"] == 5


def test_broken_correlation_is_detected_by_trees():
    real = sample(600, 0)
    r = detection_auc(real, shuffled(sample(600, 1), 2), seed=0, repeats=1)
    assert r["auc"] > 0.7, r


def test_deterministic_and_balanced():
    a, b = sample(500, 0), sample(300, 1)
    r1, r2 = detection_auc(a, b, seed=3, repeats=2), detection_auc(a, b, seed=3, repeats=2)
    assert r1 == r2 and r1["rows_per_class"] == 300 and r1["repeats"] == 2


def test_floor_is_the_same_test_on_real_rows():
    train, holdout = sample(800, 0), sample(400, 1)
    f = detection_floor(train, holdout, seed=0, repeats=1)
    assert f == detection_auc(holdout, train, seed=0, repeats=1) and 0.4 < f["auc"] < 0.6


def test_features_code_strings_without_raw_values():
    t = sample(50, 0)
    (m,), categorical, names = feature_matrix(t, [t])
    assert m.shape == (50, len(names)) and "word:len" in names and "word:code" in names
    assert categorical[names.index("cat:code")] and not categorical[names.index("x")]


def zipf_words(n: int, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    words = np.array([f"W{int(k)}" for k in rng.zipf(1.3, size=n) % 400], dtype=object)
    return LeafTable((Column("w", STRING, words),), n)


def test_top_values_picked_on_one_side_do_not_give_it_away():
    """A high-cardinality string from one distribution on both sides: AUC ~0.5.

    Codes fitted on the real side alone favoured it (a value that happens to be frequent
    in these 300 rows is rarer in another 300): measured mean AUC 0.579 over 6 seeds,
    0.491 with the codes fitted on both sides pooled.
    """
    aucs = [detection_auc(zipf_words(300, 2 * s), zipf_words(300, 2 * s + 1), seed=s, repeats=1)["auc"]
            for s in range(4)]
    assert np.mean(aucs) <= 0.53, aucs


def test_small_samples_repeat_the_cross_validation():
    r = detection_auc(sample(60, 0), sample(200, 1), seed=0)
    assert r["repeats"] == 5 and r["rows_per_class"] == 60 and abs(r["null_se"] - 0.0527) < 1e-3
    assert detection_auc(sample(60, 0), sample(200, 1), seed=0, repeats=1)["repeats"] == 1


def test_the_floor_on_a_random_split_of_real_data_is_at_most_0_55():
    """Real vs real rows (penguins, seeded random split) must look alike: the floor of every report.

    Before the fix the benchmark's real held-out row read 0.579 here (27 validation vs
    68 test rows); the same pairs now give 0.44-0.52 over seeds (docs/evaluation.md).
    """
    pytest.importorskip("palmerpenguins")
    from bench.datasets import get, split_records
    from synth.eval.features import flatten
    from synth.schema.loader import load_schema
    from synth.schema.tree import build_tree

    ds = get("penguins")
    tree = build_tree(load_schema(ds.proto, ds.message).descriptor)
    train, validation, test = (flatten(tree, rows) for rows in split_records(ds, 0))
    floor = detection_floor(train, test, seed=20260501)
    heldout = detection_auc(test, validation, seed=20260501)
    assert floor["auc"] <= 0.55 and heldout["auc"] <= 0.55, (floor, heldout)
    assert floor["repeats"] == heldout["repeats"] == 5
