"""Every leaf column -> small integer codes fitted on the REAL data (docs/evaluation.md).

Why: the association matrix, the high-cardinality marginals and the detector all
need columns of one common, bounded shape whatever the schema. Numbers are cut at
quantiles of the real data and categories/strings keep their top values plus an
"other" bucket, so a generated value the real data never showed lands in "other"
(or the extreme bins) instead of growing the table. Absent values (NaN, None,
"<absent>") get a bin of their own: presence is part of the distribution.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from synth.eval.features import ABSENT, NUMERIC_KINDS, Column

MAX_BINS = 20
"""At most this many codes per column (absent and "other" included)."""


@dataclass(frozen=True)
class Binning:
    """How one column is coded: quantile `edges` for numbers, `levels` (top values) otherwise.

    Codes: numbers 0..len(edges) by `np.searchsorted`, absent = len(edges) + 1;
    categories 0..len(levels)-1, "other" = len(levels), absent = len(levels) + 1.
    """

    kind: str
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()

    @property
    def n_codes(self) -> int:
        return len(self.edges) + 2 if self.kind in NUMERIC_KINDS else len(self.levels) + 2

    def labels(self) -> list[str]:
        if self.kind in NUMERIC_KINDS:
            cuts = [f"{e:.4g}" for e in self.edges]
            lows = ["-inf", *cuts]
            highs = [*cuts, "inf"]
            return [f"[{lo}, {hi})" for lo, hi in zip(lows, highs)] + [ABSENT]
        return [*self.levels, "<other>", ABSENT]

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Integer codes (n,) of a column's values."""
        if self.kind in NUMERIC_KINDS:
            x = values.astype(np.float64)
            out = np.searchsorted(np.asarray(self.edges), x, side="right")
            out[np.isnan(x)] = len(self.edges) + 1
            return out.astype(np.int64)
        index = {v: i for i, v in enumerate(self.levels)}
        other, absent = len(self.levels), len(self.levels) + 1
        return np.fromiter(
            (absent if v is None or v == ABSENT else index.get(v, other) for v in values.tolist()),
            dtype=np.int64, count=len(values))


def fit_binning(column: Column, max_bins: int = MAX_BINS) -> Binning:
    """Quantile edges (numbers) or top values (categories, strings) of a real column."""
    if column.kind in NUMERIC_KINDS:
        x = column.values.astype(np.float64)
        x = x[np.isfinite(x)]
        if len(x) == 0:
            return Binning(column.kind)
        uniq = np.unique(x)
        if len(uniq) <= max_bins - 1:  # few distinct values: one bin each
            edges = uniq[1:]
        else:
            qs = np.quantile(x, np.linspace(0, 1, max_bins - 1)[1:-1])
            edges = np.unique(qs)
        return Binning(column.kind, edges=tuple(float(e) for e in edges))
    counts = Counter(v for v in column.values.tolist() if v is not None and v != ABSENT)
    levels = tuple(v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_bins - 2])
    return Binning(column.kind, levels=levels)
