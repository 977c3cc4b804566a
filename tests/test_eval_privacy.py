"""Copies and distance to closest record (synth/eval/privacy.py), and the p-value cross-check with scipy."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis
from scipy.stats import chi2

from synth.eval.features import CATEGORY, NUMBER, STRING, Column, LeafTable
from synth.eval.privacy import (_encode, _nearest, dcr_floor, dcr_paired, dcr_share, exact_copy_share,
                                neighbour_agreement)
from synth.eval.pvalue import fit_group_stats, mahalanobis_sq, pvalues


def sample(n: int, seed: int) -> LeafTable:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    k = rng.integers(0, 4, n)
    return LeafTable((Column("x", NUMBER, x), Column("k", CATEGORY, np.array([f"c{v}" for v in k], dtype=object)),
                      Column("s", STRING, np.array([f"w{v}" for v in rng.integers(0, 50, n)], dtype=object))), n)


def test_copied_training_set_is_flagged():
    train, holdout = sample(500, 0), sample(500, 1)
    assert exact_copy_share(train, train) == 1.0
    r = dcr_share(train, train, holdout, seed=0)
    assert r["share"] > 0.95 and r["zero_share"] == 1.0 and r["below_holdout_q05"] > 0.9


def test_fresh_rows_are_one_half():
    train, holdout, fresh = sample(500, 0), sample(500, 1), sample(500, 2)
    assert exact_copy_share(fresh, train) == 0.0
    r = dcr_share(fresh, train, holdout, seed=0)
    assert 0.4 < r["share"] < 0.6
    assert 0.4 < dcr_floor(train, sample(1000, 3), seed=0)["share"] < 0.6


def test_paired_excess_is_share_minus_floor_seed_by_seed():
    """`dcr_paired`: each seed's share minus the floor of the same seed, averaged; given shares
    and floors stand in for the first seeds'; fresh rows have no excess, copied ones a large one."""
    train, holdout, fresh = sample(500, 0), sample(800, 1), sample(500, 2)
    p = dcr_paired(fresh, train, holdout, seed=3, seeds=4)
    diffs = [dcr_share(fresh, train, holdout, seed=3 + i)["share"] - dcr_floor(train, holdout, seed=3 + i)["share"]
             for i in range(4)]
    assert p["seeds"] == 4 and p["excess_mean"] == pytest.approx(np.mean(diffs))
    assert p["excess_sd"] == pytest.approx(np.std(diffs)) and abs(p["excess_mean"]) < 0.1
    given = dcr_paired(fresh, train, holdout, seed=3, seeds=2, shares=[{"share": 0.9, "below_holdout_q05": 0.1}],
                       floors=[0.4, 0.5])
    assert given["shares"][0] == 0.9 and given["floors"] == [0.4, 0.5]
    assert given["excess_mean"] == pytest.approx((0.9 - 0.4 + p["shares"][1] - 0.5) / 2)
    assert dcr_paired(train, train, holdout, seed=3, seeds=2)["excess_mean"] > 0.3


def test_gower_distance_hand_values():
    ref = LeafTable((Column("x", NUMBER, np.array([0.0, 1.0, 2.0, 3.0])),
                     Column("k", CATEGORY, np.array(["a", "a", "b", "b"], dtype=object))), 4)
    q = LeafTable((Column("x", NUMBER, np.array([0.0, np.nan])),
                   Column("k", CATEGORY, np.array(["b", "a"], dtype=object))), 2)
    (qn, rn), (qc, rc), names = _encode(ref, [q, ref])
    assert names == ["x", "k"]
    d = _nearest(qn, qc, rn, rc)
    # row 0: x rank of 0.0 = 1/8; nearest is ref row 0 (rank diff 0, k differs) or row 2 (0.5, k same): 0.5/2
    assert d[0] == pytest.approx(0.25)
    # row 1: x absent is at distance 1 from every number; k matches rows 0, 1
    assert d[1] == pytest.approx(0.5)


def test_neighbour_agreement_names_the_copied_column():
    """Rows whose identifier column is copied from training rows (the rest fresh): in that
    column the nearest training row agrees with them far more than the nearest held-out row
    does; fresh rows show no such column."""
    def with_ids(t: LeafTable, prefix: str) -> LeafTable:
        ids = np.array([f"{prefix}{i}" for i in range(t.n_rows)], dtype=object)
        return LeafTable((*t.columns[:2], Column("id", STRING, ids)), t.n_rows)

    train, holdout, fresh = with_ids(sample(600, 0), "t"), with_ids(sample(600, 1), "h"), with_ids(sample(600, 2), "f")
    copied_ids = LeafTable((*fresh.columns[:2], train.columns[2]), 600)
    copied = neighbour_agreement(copied_ids, train, holdout, seed=0)
    assert set(copied) == {"x", "k", "id"}
    assert copied["id"] > 0.2 and copied["id"] == max(copied.values())
    assert max(abs(v) for v in neighbour_agreement(fresh, train, holdout, seed=0).values()) < 0.06
    assert neighbour_agreement(fresh.take(np.arange(0)), train, holdout) == {}


def test_pvalue_matches_scipy_mahalanobis_and_chi2():
    rng = np.random.default_rng(0)
    records = []
    for g in range(5):
        cov = np.array([[1.0, 0.6 * (g - 2) / 2], [0.6 * (g - 2) / 2, 0.5 + g]])
        pts = rng.multivariate_normal([g, -g], cov, size=40)
        records += [{"postcode": f"z{g}", "lat": float(a), "lon": float(b)} for a, b in pts]
    stats = fit_group_stats(records)
    queries = [{"postcode": f"z{g}", "lat": float(a), "lon": float(b)}
               for g in range(5) for a, b in rng.normal(size=(10, 2)) * 2]
    p = pvalues(queries, stats).values
    for q, pv in zip(queries, p):
        fit = stats.groups[q["postcode"]]
        x = np.array([q["lat"], q["lon"]])
        d = mahalanobis(x, np.array(fit.mean), np.linalg.inv(np.array(fit.cov)))
        assert mahalanobis_sq(x[None], fit)[0] == pytest.approx(d ** 2)
        assert pv == pytest.approx(np.exp(-d ** 2 / 2)) and pv == pytest.approx(chi2.sf(d ** 2, 2))
