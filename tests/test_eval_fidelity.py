"""Marginals and association (synth/eval/fidelity.py) on synthetic cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.eval.features import CATEGORY, NUMBER, STRING, Column, LeafTable
from synth.eval.fidelity import association, cramers_v, ks_statistic, marginals, summarize_marginals, tv_distance


def table(**cols) -> LeafTable:
    columns = []
    for name, (kind, values) in cols.items():
        arr = np.asarray(values, dtype=np.float64) if kind == NUMBER else np.asarray(values, dtype=object)
        columns.append(Column(name, kind, arr))
    return LeafTable(tuple(columns), len(columns[0].values))


def correlated(n: int, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = x + 0.3 * rng.normal(size=n)
    cat = np.where(x > 0, "hi", "lo")
    word = np.array([("north" if v > 0.5 else "mid" if v > -0.5 else "south") for v in y], dtype=object)
    return table(x=(NUMBER, x), y=(NUMBER, y), cat=(CATEGORY, cat), word=(STRING, word))


def shuffled(t: LeafTable, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    return LeafTable(tuple(Column(c.name, c.kind, c.values[rng.permutation(t.n_rows)]) for c in t.columns), t.n_rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=40),
       st.lists(st.sampled_from("abcxyz"), min_size=1, max_size=40))
def test_tv_is_a_bounded_symmetric_distance(a, b):
    d = tv_distance(a, b)
    assert 0.0 <= d <= 1.0 + 1e-12
    assert d == pytest.approx(tv_distance(b, a))
    assert tv_distance(a, list(a)) == 0.0
    assert tv_distance(a, a * 3) == pytest.approx(0.0)  # proportions, not counts


def test_tv_hand_values():
    assert tv_distance("aabb", "abab") == 0.0
    assert tv_distance("aa", "bb") == 1.0
    assert tv_distance("aaab", "abbb") == pytest.approx(0.5)


def test_identical_sets_score_zero():
    t = correlated(500, 0)
    entries = marginals(t, t)
    assert all(e["value"] == 0.0 for e in entries)
    a = association(t, t)
    assert a["mean_abs_diff"] == 0.0 and len(a["columns"]) == 4


def test_shuffled_columns_keep_marginals_but_break_association():
    real = correlated(2000, 0)
    fake = shuffled(real, 1)
    assert all(e["value"] == pytest.approx(0.0, abs=1e-12) for e in marginals(real, fake))
    a = association(real, fake)
    assert a["mean_abs_diff"] > 0.3
    worst = a["worst"][0]
    assert worst["real"] > 0.5 and worst["generated"] < 0.1


def test_shifted_marginal_shows_on_that_leaf_only():
    real = correlated(2000, 0)
    other = correlated(2000, 1)  # same distribution, fresh sample
    cols = list(other.columns)
    cols[0] = Column("x", NUMBER, cols[0].values + 1.0)
    shifted = LeafTable(tuple(cols), other.n_rows)
    by_name = {e["column"]: e["value"] for e in marginals(real, shifted)}
    assert by_name["x"] > 0.3
    assert by_name["y"] < 0.06 and by_name["cat"] < 0.06 and by_name["word"] < 0.06
    s = summarize_marginals(marginals(real, shifted))
    assert s["ks"]["worst_column"] == "x"


def test_string_marginal_uses_top_values_and_lengths():
    real = table(s=(STRING, [f"id{i:04d}" for i in range(1000)]))
    fresh = table(s=(STRING, [f"id{i:04d}" for i in range(1000, 2000)]))
    longer = table(s=(STRING, [f"identifier{i}" for i in range(1000)]))
    e_fresh, e_long = marginals(real, fresh)[0], marginals(real, longer)[0]
    # unseen-but-alike unique values: all fall into "other", so TV stays < 1
    assert e_fresh["value"] == pytest.approx(0.05) and e_fresh["length_tv"] == 0.0
    assert e_long["length_tv"] == 1.0


def test_cramers_v_hand_cases():
    a = np.repeat([0, 1, 2], 100)
    assert cramers_v(a, a) == pytest.approx(1.0, abs=0.01)
    rng = np.random.default_rng(0)
    assert cramers_v(rng.integers(0, 3, 5000), rng.integers(0, 4, 5000)) < 0.03
    assert cramers_v(np.zeros(10, int), a[:10]) == 0.0


def test_ks_matches_scipy_and_ignores_nan():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.5, size=200)
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    assert ks_statistic(np.r_[a, np.nan], b) == pytest.approx(ks_2samp(a, b).statistic)
    assert np.isnan(ks_statistic(np.array([np.nan]), b))
