"""Hand-checked tests of the evaluation metrics (synth/eval) and the packaged data.

Reference values are computed by hand on tiny fixtures; the real-data check scores
the Vermont rows against their own statistics (BENCHMARK.md: 0.522 / 0.535 / 0.296).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import math
import random
import sys

import numpy as np
import pytest
from scipy.stats import chi2

from synth.datasets import VERMONT_ROWS, vermont_csv_path, vermont_rows, vermont_split
from synth.errors import ArtifactError, InvalidArgument
from synth.eval import (
    GroupStats,
    copied_share,
    fit_group_stats,
    levenshtein,
    per_char,
    per_char_by_field,
    pvalues,
    record_copy_share,
)
from synth.eval.levenshtein import _levenshtein_slow
from synth.eval.pvalue import RIDGE_RELATIVE, TOO_FEW_ROWS, ZERO_VARIANCE

# ---------------------------------------------------------------------------
# p-value
# ---------------------------------------------------------------------------

SQUARE = [(0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0)]


def _rec(cat, x, y) -> dict:
    return {"postcode": cat, "lat": x, "lon": y}


@pytest.fixture
def square_stats() -> GroupStats:
    return fit_group_stats([_rec("A", x, y) for x, y in SQUARE])


def test_fit_mean_and_sample_covariance(square_stats):
    g = square_stats.groups["A"]
    assert g.n == 4
    assert g.mean == (1.0, 1.0)
    # each coordinate: deviations +-1, sum of squares 4, / (n - 1) = 4/3; no covariance
    np.testing.assert_allclose(g.cov, [[4 / 3, 0.0], [0.0, 4 / 3]], atol=1e-15)
    assert g.ridge == 0.0
    assert square_stats.numeric == ("lat", "lon")
    assert square_stats.category == "postcode"


def test_pvalue_hand_values(square_stats):
    s = math.sqrt(4 / 3)
    report = pvalues([_rec("A", 1.0, 1.0), _rec("A", 1.0 + s, 1.0), _rec("A", 1.0 + s, 1.0 + s)], square_stats)
    # d2 = 0, 1, 2  ->  p = 1, exp(-1/2), exp(-1)
    np.testing.assert_allclose(report.values, [1.0, math.exp(-0.5), math.exp(-1.0)], rtol=1e-12)
    assert report.n == 3 and report.malformed == 0 and report.unknown == 0


def test_pvalue_unknown_and_malformed(square_stats):
    records = [
        _rec("A", 1.0, 1.0),  # p = 1
        _rec("B", 1.0, 1.0),  # unknown category
        {"lat": 1.0, "lon": 1.0},  # category missing
        _rec("", 1.0, 1.0),  # category empty (proto3 unset)
        _rec(None, 1.0, 1.0),
        {"postcode": "A", "lat": 1.0},  # lon missing
        _rec("A", "1.0", 1.0),  # a string is not a decoded double
        _rec("A", math.nan, 1.0),
        _rec("A", 1.0, math.inf),
        _rec("A", True, 1.0),  # bool is not a number here
    ]
    report = pvalues(records, square_stats)
    assert report.unknown == 1
    assert report.malformed == 8
    assert report.n == 10
    np.testing.assert_array_equal(report.values, [1.0] + [0.0] * 9)
    assert report.mean == pytest.approx(0.1)
    assert report.median == 0.0
    assert report.std == pytest.approx(0.3)  # population std of one 1 and nine 0s
    assert report.to_dict() == {
        "mean": report.mean, "median": 0.0, "std": report.std, "n": 10, "malformed": 8, "unknown": 1,
    }


def test_whitespace_category_is_an_ordinary_category():
    stats = fit_group_stats([_rec(" ", x, y) for x, y in SQUARE])
    report = pvalues([_rec(" ", 1.0, 1.0), _rec("  ", 1.0, 1.0)], stats)
    np.testing.assert_array_equal(report.values, [1.0, 0.0])  # compared exactly as stored
    assert report.unknown == 1 and report.malformed == 0


def test_int_category_and_numpy_values():
    stats = fit_group_stats([{"zone": 7, "x": np.float32(x), "y": np.int64(y)} for x, y in SQUARE], "zone", ["x", "y"])
    assert list(stats.groups) == [7]
    assert pvalues([{"zone": np.int32(7), "x": 1.0, "y": 1}], stats).values[0] == pytest.approx(1.0)


def test_chi2_sf_equals_exp_for_k2():
    d2 = np.array([0.0, 0.1, 1.0, 2.0, 5.0, 30.0, 200.0])
    np.testing.assert_allclose(chi2.sf(d2, 2), np.exp(-d2 / 2), rtol=1e-12, atol=0)


def test_general_k_uses_chi2_sf():
    # k = 1: points 0, 2, 4 -> mean 2, sample var 4; x = 4 gives d2 = 1
    stats = fit_group_stats([{"c": "a", "x": v} for v in (0.0, 2.0, 4.0)], "c", ["x"])
    assert stats.groups["a"].cov == ((4.0,),)
    assert pvalues([{"c": "a", "x": 4.0}], stats).values[0] == pytest.approx(chi2.sf(1.0, 1))
    # k = 3: the 8 cube corners {0, 2}^3 -> mean 1, sample var 8/7 per axis
    cube = [{"c": "a", "x": x, "y": y, "z": z} for x in (0.0, 2.0) for y in (0.0, 2.0) for z in (0.0, 2.0)]
    stats3 = fit_group_stats(cube, "c", ["x", "y", "z"])
    p = pvalues([{"c": "a", "x": 2.0, "y": 2.0, "z": 2.0}], stats3).values[0]
    assert p == pytest.approx(chi2.sf(3 * 7 / 8, 3))


def test_too_few_rows_are_dropped_and_scored_unknown():
    records = [_rec("one", 0.0, 0.0), _rec("two", 0.0, 0.0), _rec("two", 1.0, 1.0)]
    stats = fit_group_stats(records + [_rec("A", x, y) for x, y in SQUARE])
    assert stats.dropped == {"one": (TOO_FEW_ROWS, 1), "two": (TOO_FEW_ROWS, 2)}
    assert set(stats.groups) == {"A"}
    report = pvalues(records, stats)
    assert report.unknown == 3 and report.malformed == 0
    assert report.values.tolist() == [0.0, 0.0, 0.0]


def test_zero_variance_is_dropped():
    stats = fit_group_stats([_rec("same", 5.0, 5.0)] * 4)
    assert stats.dropped == {"same": (ZERO_VARIANCE, 4)}
    assert pvalues([_rec("same", 5.0, 5.0)], stats).unknown == 1


def test_singular_covariance_gets_relative_ridge():
    # collinear points (0,0), (1,1), (2,2): sample cov [[1, 1], [1, 1]], eigenvalues 0 and 2
    stats = fit_group_stats([_rec("L", t, t) for t in (0.0, 1.0, 2.0)])
    g = stats.groups["L"]
    ridge = RIDGE_RELATIVE * 1.0  # relative to trace / k = 1
    assert g.ridge == pytest.approx(ridge)
    np.testing.assert_allclose(g.cov, [[1 + ridge, 1.0], [1.0, 1 + ridge]])
    # on the line: the direction (1,1)/sqrt2 has variance 2 (+ ridge); (2,2) is at d2 = 2/2 = 1
    on_line, off_line = pvalues([_rec("L", 2.0, 2.0), _rec("L", 1.1, 0.9)], stats).values
    assert on_line == pytest.approx(math.exp(-0.5), rel=1e-5)
    # off the line by 0.1*sqrt2 across a direction of variance 1e-6: d2 ~ 2e4
    assert off_line == 0.0


def test_well_conditioned_groups_are_not_ridged(square_stats):
    assert square_stats.groups["A"].ridge == 0.0


def test_fit_counts_and_skips_malformed_rows():
    rows = [_rec("A", x, y) for x, y in SQUARE] + [_rec("A", math.nan, 0.0), {"lat": 1.0, "lon": 1.0}]
    stats = fit_group_stats(rows)
    assert stats.malformed == 2
    assert stats.groups["A"].n == 4


def test_group_stats_json_round_trip():
    rows = [_rec("A", x, y) for x, y in SQUARE] + [_rec("B", 0.1, 0.3), _rec("L", 0.0, 0.0), _rec("L", 1.0, 1.0), _rec("L", 2.0, 2.0)]
    rows += [{"postcode": 12, "lat": x / 3, "lon": y / 7} for x, y in SQUARE]
    stats = fit_group_stats(rows)
    back = GroupStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert back == stats  # floats exact, int category stays int
    assert 12 in back.groups and "12" not in back.groups


def test_group_stats_from_bad_dict():
    with pytest.raises(ArtifactError):
        GroupStats.from_dict({"format": "something/v9"})
    broken = fit_group_stats([_rec("A", x, y) for x, y in SQUARE]).to_dict()
    broken["groups"][0]["mean"] = [1.0]
    with pytest.raises(ArtifactError):
        GroupStats.from_dict(broken)


def test_bad_numeric_argument():
    with pytest.raises(InvalidArgument):
        fit_group_stats([], "postcode", [])
    with pytest.raises(InvalidArgument):
        fit_group_stats([], "postcode", ["lat", "lat"])


def test_empty_report_is_nan():
    report = pvalues([], fit_group_stats([]))
    assert report.n == 0 and math.isnan(report.mean)
    assert report.to_dict()["mean"] is None


def test_vectorised_pvalues_match_per_record_twin():
    rng = np.random.default_rng(1)
    rows = [_rec(str(c), float(x), float(y)) for c, (x, y) in zip(rng.integers(0, 5, 300), rng.normal(size=(300, 2)))]
    stats = fit_group_stats(rows)
    batched = pvalues(rows, stats).values
    one_by_one = np.array([pvalues([r], stats).values[0] for r in rows])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-13)


# ---------------------------------------------------------------------------
# Levenshtein
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [("kitten", "sitting", 3), ("", "", 0), ("", "abc", 3), ("abc", "", 3), ("MAIN ST", "MAIN ST", 0),
     ("flaw", "lawn", 2), ("ÉCOLE", "ECOLE", 1)],
)
def test_levenshtein_hand_pairs(a, b, d):
    assert levenshtein(a, b) == d
    assert _levenshtein_slow(a, b) == d


def test_levenshtein_fast_matches_slow_twin():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("ABC ") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("ABC ") for _ in range(rng.randint(0, 9)))
        assert levenshtein(a, b) == _levenshtein_slow(a, b)


def test_levenshtein_without_rapidfuzz(monkeypatch):
    module = sys.modules["synth.eval.levenshtein"]  # the attribute `synth.eval.levenshtein` is the function
    monkeypatch.setattr(module, "_RapidLevenshtein", None)
    assert levenshtein("kitten", "sitting") == 3
    assert per_char(["kitten"], ["sitting"]) == pytest.approx(0.5)


def test_per_char_hand_values():
    assert per_char(["kitten"], ["sitting"]) == pytest.approx(3 / 6)
    # (3/6 + 0/4 + 2/1 [empty original counts as length 1]) / 3
    assert per_char(["kitten", "MAIN", ""], ["sitting", "MAIN", "ab"]) == pytest.approx((0.5 + 0.0 + 2.0) / 3)
    assert math.isnan(per_char([], []))
    with pytest.raises(InvalidArgument):
        per_char(["a"], [])


def test_per_char_by_field():
    originals = [{"street": "MAIN ST", "city": "BURLINGTON"}, {"street": "OAK"}]
    recon = [{"street": "MAIN AVE", "city": "BURLINGTON"}, {"street": "OAK", "city": "X"}]
    out = per_char_by_field(originals, recon, ["street", "city"])
    assert out["street"] == pytest.approx((3 / 7 + 0) / 2)  # "ST" -> "AVE": 2 subs + 1 insert
    assert out["city"] == pytest.approx((0 + 1 / 1) / 2)  # missing city reads as ""


# ---------------------------------------------------------------------------
# Memorization
# ---------------------------------------------------------------------------


def test_copied_share():
    training = ["MAIN ST", "OAK AVE", "MAIN ST"]
    assert copied_share(["MAIN ST", "ELM ST", "OAK AVE", "MAIN ST"], training) == 0.75
    assert copied_share(["ELM ST"], training) == 0.0
    assert copied_share([1.0, 1, True], [1]) == pytest.approx(1 / 3)  # types kept apart
    assert math.isnan(copied_share([], training))


def test_record_copy_share():
    training = [
        {"street": "MAIN ST", "lat": 44.5, "postcode": "05401"},
        {"street": "OAK AVE", "lat": 44.25},
    ]
    generated = [
        {"street": "MAIN ST", "lat": 44.5, "postcode": "05401"},  # exact copy
        {"street": "MAIN ST", "lat": 44.5},  # postcode absent here, present there
        {"street": "OAK AVE", "lat": 44.25, "postcode": "05401"},  # extra key
        {"street": "OAK AVE", "lat": 44.250000000000004},  # one ulp off
    ]
    assert record_copy_share(generated, training) == 0.25
    assert record_copy_share(generated, training, fields=["street", "lat"]) == 0.75
    assert record_copy_share(generated, training, fields=["street"]) == 1.0
    # a field absent from both counts as equal on that field
    assert record_copy_share([{"street": "OAK AVE"}], training, fields=["street", "postcode"]) == 1.0
    assert record_copy_share([{"a": -0.0}], [{"a": 0.0}]) == 0.0  # exact bits
    assert record_copy_share([{"a": [1, 2], "m": {"x": 1}}], [{"m": {"x": 1}, "a": [1, 2]}]) == 1.0
    assert math.isnan(record_copy_share([], training))


# ---------------------------------------------------------------------------
# Packaged data and the metric on it
# ---------------------------------------------------------------------------


def _csv_module_rows() -> list[dict]:
    """The packaged CSV read directly with the csv module: POSTCODE stays text."""
    with gzip.open(vermont_csv_path(), "rt", encoding="utf-8", newline="") as handle:
        return [
            {"lat": float(r["LAT"]), "lon": float(r["LON"]), "postcode": r["POSTCODE"]}
            for r in csv.DictReader(handle)
        ]


def test_packaged_csv_is_the_source_file():
    raw = gzip.decompress(vermont_csv_path().read_bytes())
    assert hashlib.sha256(raw).hexdigest() == "e5046281e8d63cc360459e4bbd627198ee463a991eb948b26a4dc064e7064d8e"
    assert 400_000 < vermont_csv_path().stat().st_size < 1_000_000
    assert (vermont_csv_path().parent / "VCGI_Warranty_Copyright_Notice_2013.pdf").is_file()


def test_metric_on_real_data_matches_benchmark():
    rows = _csv_module_rows()
    assert len(rows) == VERMONT_ROWS
    report = pvalues(rows, fit_group_stats(rows, "postcode", ["lat", "lon"]))
    assert report.mean == pytest.approx(0.522, abs=0.005)
    assert report.median == pytest.approx(0.535, abs=0.005)
    assert report.std == pytest.approx(0.296, abs=0.005)
    assert report.malformed == 29  # empty POSTCODE
    assert report.unknown == 9  # 8 postcodes with fewer than 3 rows


@pytest.fixture(scope="module")
def all_rows() -> list[dict]:
    return vermont_rows()


def test_vermont_rows_types(all_rows):
    rows = all_rows
    assert len(rows) == VERMONT_ROWS
    first = rows[0]
    assert first == {
        "lon": -73.23490905761719, "lat": 42.93500900268555, "number": "70",
        "street": "MCCARTHY ACRES", "city": "SHAFTSBURY", "postcode": "05262",
    }
    assert all(k not in r for r in rows for k in ("unit", "district", "region"))
    assert all(isinstance(r["lat"], float) and isinstance(r["lon"], float) for r in rows)
    assert any(r.get("postcode", "").startswith("0") for r in rows)
    # same scores as the direct csv read
    direct = _csv_module_rows()
    report = pvalues(rows, fit_group_stats(rows))
    assert report.mean == pytest.approx(pvalues(direct, fit_group_stats(direct)).mean)


def test_vermont_split_is_seeded_and_partitions(all_rows):
    train, test = vermont_split()
    assert (len(train), len(test)) == (30_089, 3_343)
    again_train, again_test = vermont_split(seed=0)
    assert train == again_train and test == again_test
    other_train, _ = vermont_split(seed=1)
    assert other_train != train
    key = lambda r: tuple(sorted(r.items()))  # noqa: E731
    assert sorted(map(key, train + test)) == sorted(map(key, all_rows))
    # the documented rule, spelled out
    perm = np.random.default_rng(0).permutation(VERMONT_ROWS)
    assert test[0] == all_rows[perm[0]]
    with pytest.raises(InvalidArgument):
        vermont_split(test_fraction=1.0)

