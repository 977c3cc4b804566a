"""Marginal and pairwise fidelity of generated records, leaf by leaf (docs/evaluation.md).

Why: the paper's p-value (section 2.2) looks at two fields of one schema. To judge
any schema we compare every leaf's distribution (marginals) and every pair of
leaves' dependence (association), the two figures most synthetic-data reports
(SDMetrics, mostlyai-qa) start from:

* total-variation distance, 0.5 * sum |p - q| over values, for categories, strings
  (top values + "other", so sample size does not inflate it), string lengths and
  repeat counts: 0 = same distribution, 1 = disjoint supports;
* the two-sample Kolmogorov-Smirnov statistic for numbers: 0 = same, 1 = disjoint;
* presence: the absolute difference of the presence rates;
* association: bias-corrected Cramer's V (Bergsma 2013) of every pair of columns,
  each binned into <= 20 codes fitted on the real data (binning.py), in the real and
  in the generated records; we report the mean absolute difference of the two
  matrices and the worst pairs. One measure for every pair of kinds keeps it
  schema-agnostic, and binning makes it see non-linear dependence too.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from synth.eval.binning import Binning, fit_binning
from synth.eval.features import (
    ABSENT,
    CATEGORY,
    COUNT,
    NUMBER,
    PRESENCE,
    STRING,
    LeafTable,
)

TOP_K = 50
"""String/category marginals compare the real data's TOP_K values plus an "other" bucket."""
MAX_ASSOCIATION_COLUMNS = 80
"""The association matrix uses at most this many (non-constant) columns, in tree order."""


def tv_distance(a: Iterable[Hashable], b: Iterable[Hashable]) -> float:
    """Total-variation distance between the empirical distributions of two samples; NaN if one is empty."""
    ca, cb = Counter(a), Counter(b)
    na, nb = sum(ca.values()), sum(cb.values())
    if na == 0 or nb == 0:
        return math.nan
    return 0.5 * sum(abs(ca[k] / na - cb[k] / nb) for k in ca.keys() | cb.keys())


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic on the finite values; NaN when either side has none."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return math.nan
    return float(ks_2samp(a, b).statistic)


def _top_k(values: list, real: list, k: int = TOP_K) -> list:
    counts = Counter(v for v in real)
    keep = {v for v, _ in counts.most_common(k)}
    return [v if v in keep else "\x00other" for v in values]


def _lengths(values: np.ndarray) -> list:
    return [ABSENT if v is None else len(v) for v in values.tolist()]


def _nan_as_absent(values: np.ndarray) -> list:
    return [ABSENT if math.isnan(v) else float(v) for v in values.tolist()]


def marginals(real: LeafTable, generated: LeafTable) -> list[dict[str, Any]]:
    """One entry per leaf column: {column, kind, metric, value} (plus `length_tv` for strings)."""
    out = []
    for r, g in zip(real.columns, generated.columns):
        entry: dict[str, Any] = {"column": r.name, "kind": r.kind}
        if r.kind == NUMBER:
            entry.update(metric="ks", value=ks_statistic(r.values, g.values))
            rp, gp = np.isfinite(r.values).mean() if real.n_rows else math.nan, \
                np.isfinite(g.values).mean() if generated.n_rows else math.nan
            entry["missing_diff"] = float(abs(rp - gp))
        elif r.kind == PRESENCE:
            entry.update(metric="rate_diff", value=float(abs(np.mean(r.values) - np.mean(g.values)))
                         if real.n_rows and generated.n_rows else math.nan)
        elif r.kind == COUNT:
            entry.update(metric="tv", value=tv_distance(_nan_as_absent(r.values), _nan_as_absent(g.values)))
        elif r.kind in (CATEGORY, STRING):
            rv, gv = r.values.tolist(), g.values.tolist()
            rv = [ABSENT if v is None else v for v in rv]
            gv = [ABSENT if v is None else v for v in gv]
            entry.update(metric="tv", value=tv_distance(_top_k(rv, rv), _top_k(gv, rv)))
            if r.kind == STRING:
                entry["length_tv"] = tv_distance(_lengths(r.values), _lengths(g.values))
        out.append(entry)
    return out


def summarize_marginals(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst of each metric, over the columns where it is defined."""
    out: dict[str, Any] = {}
    for metric in ("tv", "ks", "rate_diff", "length_tv"):
        pairs = [(e["column"], e[metric] if metric == "length_tv" else e["value"]) for e in entries
                 if (metric == "length_tv" and "length_tv" in e) or e.get("metric") == metric]
        pairs = [(c, v) for c, v in pairs if v is not None and not math.isnan(v)]
        if pairs:
            worst = max(pairs, key=lambda cv: cv[1])
            out[metric] = {"mean": float(np.mean([v for _, v in pairs])), "max": worst[1],
                           "worst_column": worst[0], "columns": len(pairs)}
    return out


# ---------------------------------------------------------------------------
# Association
# ---------------------------------------------------------------------------


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Bias-corrected Cramer's V of two integer-coded columns (Bergsma 2013), in [0, 1].

    0 when either column is constant (there is no dependence to measure).
    """
    n = len(a)
    if n < 2:
        return 0.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    r, k = int(ai.max()) + 1, int(bi.max()) + 1
    if r < 2 or k < 2:
        return 0.0
    table = np.bincount(ai * k + bi, minlength=r * k).reshape(r, k).astype(np.float64)
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    rc = r - (r - 1) ** 2 / (n - 1)
    kc = k - (k - 1) ** 2 / (n - 1)
    denom = min(kc - 1, rc - 1)
    if denom <= 0:
        return 0.0
    return float(min(1.0, math.sqrt(phi2 / denom)))


def association_matrix(codes: list[np.ndarray]) -> np.ndarray:
    """Symmetric (c, c) matrix of Cramer's V between coded columns; 1 on the diagonal."""
    c = len(codes)
    m = np.eye(c)
    for i in range(c):
        for j in range(i + 1, c):
            m[i, j] = m[j, i] = cramers_v(codes[i], codes[j])
    return m


def association(real: LeafTable, generated: LeafTable, binnings: list[Binning] | None = None,
                worst: int = 5) -> dict[str, Any]:
    """Association matrices of real and generated data and their mean absolute difference.

    Columns constant in the real data are left out (their V is 0 by definition and
    would only dilute the mean). Returns the column names, both matrices (lists),
    `mean_abs_diff` over the pairs i < j, and the `worst` pairs.
    """
    if binnings is None:
        binnings = [fit_binning(c) for c in real.columns]
    keep, real_codes, gen_codes = [], [], []
    for col_r, col_g, b in zip(real.columns, generated.columns, binnings):
        rc = b.codes(col_r.values)
        if len(np.unique(rc)) < 2:
            continue
        keep.append(col_r.name)
        real_codes.append(rc)
        gen_codes.append(b.codes(col_g.values))
        if len(keep) >= MAX_ASSOCIATION_COLUMNS:
            break
    mr, mg = association_matrix(real_codes), association_matrix(gen_codes)
    iu = np.triu_indices(len(keep), k=1)
    diff = np.abs(mr - mg)[iu]
    order = np.argsort(-diff, kind="stable")[:worst]
    return {
        "columns": keep,
        "pairs": int(len(diff)),
        "mean_abs_diff": float(diff.mean()) if len(diff) else math.nan,
        "max_abs_diff": float(diff.max()) if len(diff) else math.nan,
        "worst": [{"a": keep[iu[0][t]], "b": keep[iu[1][t]], "real": float(mr[iu[0][t], iu[1][t]]),
                   "generated": float(mg[iu[0][t], iu[1][t]])} for t in order],
        "real": mr.round(4).tolist(),
        "generated": mg.round(4).tolist(),
    }
