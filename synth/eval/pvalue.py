"""The zip/coordinate p-value of Chou & Hathi 2019, section 2.2, made general.

Why: the paper judges generated addresses by asking whether their coordinates are
plausible *for their zip code*. For each zip code it fits a Gaussian to the training
(lat, lon) and scores a generated record by the chi-squared tail probability of its
Mahalanobis distance, p = chi2.sf(d^2, k) (= exp(-d^2/2) for k = 2). A perfect
generator gives uniform p (mean = median = 0.5, std = 1/sqrt(12) = 0.289). Here the
categorical field and the group of numeric fields are named by the caller
(paper section 2.2; docs/evaluation.md); the address defaults are `postcode` and `(lat, lon)`.

Records are decoded records: plain dicts of proto field name -> value, a missing
key meaning unset. Everything is numpy/scipy; no torch.

Choices, each tested:

* **Malformed record -> p = 0, counted as `malformed`.** The category is missing,
  not a str/int, or the empty string (how proto3 reads an unset string); or a
  numeric field is missing, not a real number (bools and strings are rejected: a
  decoded record carries typed values, nothing to parse) or not finite.
  Other category values are compared exactly as stored, whitespace included: the
  Vermont data has 111 rows whose POSTCODE is a single " ", a real (if odd)
  category of the training data that a faithful generator reproduces, so it is
  fitted and scored like any other rather than called malformed.
* **Unknown category -> p = 0, counted as `unknown`.** Includes categories seen in
  training but dropped at fit time (next points).
* **Fewer than k + 1 rows -> dropped ("too_few_rows").** n points span at most an
  (n - 1)-dimensional affine subspace, so their sample covariance is singular for
  n <= k: the data do not define a k-dimensional Gaussian, and inventing a shape
  (a pooled or an isotropic one) would score records against a distribution the
  training data never showed. The category is treated as unseen, which is the
  metric's own rule for unseen zip codes. For the address model (k = 2) this is the
  "fewer than 3 rows" rule; in the Vermont data it affects 8 categories, 9 rows.
* **Zero variance (all rows identical) -> dropped ("zero_variance")**, for the same
  reason: there is no scale to measure distance in.
* **Near-singular covariance -> ridge.** With n >= k + 1 rows the covariance can
  still be (nearly) singular, e.g. points on a line or repeated rows. Then
  lambda = RIDGE_RELATIVE * trace(cov) / k is added to the diagonal, so no
  direction is narrower than 1e-3 of the group's RMS spread: records on the
  observed line get their ordinary p, records off it get p ~ 0. The ridge is
  applied only when the smallest eigenvalue is below lambda, so well-conditioned
  groups (all of the Vermont data) keep their exact sample covariance; the ridge
  used is stored per group.
* **Summary std is the population std (ddof = 0)**, the statistic whose ideal is
  1/sqrt(12) = 0.289.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from scipy.stats import chi2

from synth.errors import ArtifactError, InvalidArgument

Category = str | int
"""A category value as it appears in a record (a string, or an int/enum field)."""

ADDRESS_CATEGORY = "postcode"
ADDRESS_NUMERIC: tuple[str, ...] = ("lat", "lon")

RIDGE_RELATIVE = 1e-6
"""Ridge, relative to the mean variance trace(cov)/k, added to near-singular covariances."""

TOO_FEW_ROWS = "too_few_rows"
ZERO_VARIANCE = "zero_variance"

_FORMAT = "group_stats/v1"


# ---------------------------------------------------------------------------
# Reading one record
# ---------------------------------------------------------------------------


def _category_of(record: Mapping[str, Any], name: str) -> Category | None:
    """The record's category value, or None when it is missing or malformed."""
    value = record.get(name)
    if isinstance(value, bool):  # bool is an int subclass; never a category
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None


def _numeric_of(record: Mapping[str, Any], names: Sequence[str]) -> np.ndarray | None:
    """The record's numeric vector, shape (k,), or None when any entry is malformed."""
    out = np.empty(len(names), dtype=np.float64)
    for j, name in enumerate(names):
        value = record.get(name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            return None
        number = float(value)
        if not math.isfinite(number):
            return None
        out[j] = number
    return out


def _check_numeric(numeric: Sequence[str]) -> tuple[str, ...]:
    names = tuple(numeric)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise InvalidArgument(
            f"numeric must be a non-empty list of distinct field names, got {list(names)!r}; "
            f"for addresses use {list(ADDRESS_NUMERIC)!r}"
        )
    return names


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFit:
    """The Gaussian fitted to one category: row count, mean (k,), covariance (k, k).

    `cov` is the sample covariance (ddof = 1) plus `ridge` on the diagonal; `ridge`
    is 0.0 unless the group was near-singular.
    """

    n: int
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    ridge: float = 0.0


@dataclass(frozen=True)
class GroupStats:
    """Per-category Gaussians of `numeric` fields, keyed by the value of `category`.

    `dropped` maps categories seen at fit time but not fitted to the reason
    (TOO_FEW_ROWS or ZERO_VARIANCE) and their row count; `malformed` counts the fit
    rows that were skipped. JSON-able via `to_dict`/`from_dict`, so it can live in a
    model manifest; floats survive a JSON round trip exactly.
    """

    category: str
    numeric: tuple[str, ...]
    groups: dict[Category, GroupFit]
    dropped: dict[Category, tuple[str, int]] = field(default_factory=dict)
    malformed: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Lists of entries rather than JSON objects keyed by category, so that int
        # categories stay ints after a round trip.
        return {
            "format": _FORMAT,
            "category": self.category,
            "numeric": list(self.numeric),
            "groups": [
                {"category": c, "n": g.n, "mean": list(g.mean), "cov": [list(r) for r in g.cov], "ridge": g.ridge}
                for c, g in self.groups.items()
            ],
            "dropped": [{"category": c, "reason": r, "n": n} for c, (r, n) in self.dropped.items()],
            "malformed": self.malformed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupStats:
        if data.get("format") != _FORMAT:
            raise ArtifactError(
                f"group stats have format {data.get('format')!r}, expected {_FORMAT!r}; "
                "refit them with fit_group_stats"
            )
        try:
            numeric = tuple(data["numeric"])
            k = len(numeric)
            groups: dict[Category, GroupFit] = {}
            for entry in data["groups"]:
                mean = tuple(float(x) for x in entry["mean"])
                cov = tuple(tuple(float(x) for x in row) for row in entry["cov"])
                if len(mean) != k or len(cov) != k or any(len(row) != k for row in cov):
                    raise ValueError(f"category {entry['category']!r}: mean/cov do not have {k} entries")
                groups[entry["category"]] = GroupFit(int(entry["n"]), mean, cov, float(entry["ridge"]))
            dropped = {e["category"]: (str(e["reason"]), int(e["n"])) for e in data["dropped"]}
            return cls(str(data["category"]), numeric, groups, dropped, int(data["malformed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"group stats are malformed ({exc}); refit them with fit_group_stats") from exc


def _fit_one(points: np.ndarray) -> GroupFit | str:
    """Fit one group, points (n, k); returns a GroupFit or the reason it is dropped."""
    n, k = points.shape
    if n < k + 1:
        return TOO_FEW_ROWS
    mean = points.mean(axis=0)  # (k,)
    cov = np.atleast_2d(np.cov(points, rowvar=False, ddof=1))  # (k, k)
    scale = float(np.trace(cov)) / k  # mean variance
    if not scale > 0.0:
        return ZERO_VARIANCE
    ridge = RIDGE_RELATIVE * scale
    if float(np.linalg.eigvalsh(cov)[0]) < ridge:
        cov = cov + ridge * np.eye(k)
    else:
        ridge = 0.0
    return GroupFit(
        n=n,
        mean=tuple(float(x) for x in mean),
        cov=tuple(tuple(float(x) for x in row) for row in cov),
        ridge=ridge,
    )


def fit_group_stats(
    records: Iterable[Mapping[str, Any]],
    category: str = ADDRESS_CATEGORY,
    numeric: Sequence[str] = ADDRESS_NUMERIC,
) -> GroupStats:
    """Per category value: mean and sample covariance (ddof = 1) of the numeric fields.

    Malformed rows are skipped and counted; small and zero-variance groups are
    dropped (see the module docstring). Categories appear in first-seen order.
    """
    names = _check_numeric(numeric)
    points: dict[Category, list[np.ndarray]] = {}
    malformed = 0
    for record in records:
        cat = _category_of(record, category)
        x = _numeric_of(record, names)
        if cat is None or x is None:
            malformed += 1
            continue
        points.setdefault(cat, []).append(x)

    groups: dict[Category, GroupFit] = {}
    dropped: dict[Category, tuple[str, int]] = {}
    for cat, rows in points.items():
        fit = _fit_one(np.stack(rows))  # (n, k)
        if isinstance(fit, str):
            dropped[cat] = (fit, len(rows))
        else:
            groups[cat] = fit
    return GroupStats(category, names, groups, dropped, malformed)


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PValueReport:
    """Summary of per-record p-values; `values` (n,) is in record order.

    mean/median/std are NaN when there are no records; std is ddof = 0.
    """

    mean: float
    median: float
    std: float
    n: int
    malformed: int
    unknown: int
    values: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary without the raw values (NaN becomes None)."""

        def _num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "mean": _num(self.mean),
            "median": _num(self.median),
            "std": _num(self.std),
            "n": self.n,
            "malformed": self.malformed,
            "unknown": self.unknown,
        }


def mahalanobis_sq(points: np.ndarray, fit: GroupFit) -> np.ndarray:
    """Squared Mahalanobis distance of points (m, k) to one group; returns (m,)."""
    diff = points - np.asarray(fit.mean)  # (m, k)
    solved = np.linalg.solve(np.asarray(fit.cov), diff.T)  # (k, m) = cov^-1 diff^T
    return np.einsum("mk,km->m", diff, solved)


def pvalues(records: Iterable[Mapping[str, Any]], stats: GroupStats) -> PValueReport:
    """p = chi2.sf(d^2, k) per record (exp(-d^2/2) for k = 2), 0 for malformed/unknown."""
    records = list(records)
    k = len(stats.numeric)
    values = np.zeros(len(records), dtype=np.float64)
    malformed = unknown = 0
    index_by_cat: dict[Category, list[int]] = {}
    points_by_cat: dict[Category, list[np.ndarray]] = {}
    for i, record in enumerate(records):
        cat = _category_of(record, stats.category)
        x = _numeric_of(record, stats.numeric)
        if cat is None or x is None:
            malformed += 1
        elif cat not in stats.groups:
            unknown += 1
        else:
            index_by_cat.setdefault(cat, []).append(i)
            points_by_cat.setdefault(cat, []).append(x)

    # One vectorised solve per category present.
    for cat, index in index_by_cat.items():
        d2 = mahalanobis_sq(np.stack(points_by_cat[cat]), stats.groups[cat])  # (m,)
        values[index] = chi2.sf(d2, k)

    if len(values):
        mean, median, std = float(values.mean()), float(np.median(values)), float(values.std())
    else:
        mean = median = std = math.nan
    return PValueReport(mean, median, std, len(values), malformed, unknown, values)
