"""Which categorical field a message's joint floats depend on most, and their moments per class.

The decoder draws a message's labels before its floats (synth/kinds/tuple.py). When a
label pins the floats down (a postcode its coordinates, a penguin's species its bill),
the ScalarTuple models the floats *relative to that label's class*: centred on the
class's mean and scaled by its covariance (synth/nn/scalar_tuple.py, "anchor"), so a
drawn postcode brings coordinates from that postcode's area, not from wherever the latent
points. This module computes, in the fit statistics' one streaming pass, each candidate
field's per-value moments of the floats, and picks the fields whose classes explain most
of the floats' variance.
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

CHUNK = 4096
# Distinct values tracked per field; more: not a label (dropped). Twice the categorical
# leaf's class cap (ModelConfig.categorical_max_classes), so memory stays a few MB per field
MAX_GROUPS = 20000
MIN_SHARE = 0.3  # least share of the floats' variance the classes must explain
KEPT = 3  # candidates stored, best first (the compiler takes the first that is categorical)


class GroupedMoments:
    """Count, mean and covariance (ddof 1) of rows of k floats, per group label, in bounded
    chunks. Sums are of deviations from each group's first row, which keeps coordinates
    (|x| ~ 70, spread ~ 0.01) exact in float64."""

    def __init__(self, k: int):
        self.k = k
        self.index: dict[Hashable, int] | None = {}
        self.shift = np.zeros((0, k))  # each group's first row
        self.n = np.zeros(0)
        self.s1 = np.zeros((0, k))
        self.s2 = np.zeros((0, k, k))
        self._labels: list[Hashable] = []
        self._rows: list[list[float]] = []

    @property
    def dropped(self) -> bool:
        return self.index is None

    def add(self, label: Hashable, row: list[float]) -> None:
        if self.index is None:
            return
        self._labels.append(label)
        self._rows.append(row)
        if len(self._rows) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self.index is None or not self._rows:
            self._labels, self._rows = [], []
            return
        x = np.asarray(self._rows, dtype=np.float64)
        ids = np.empty(len(x), dtype=np.int64)
        first = []  # rows that start a group
        for i, label in enumerate(self._labels):
            j = self.index.get(label)
            if j is None:
                j = self.index[label] = len(self.index)
                first.append(i)
            ids[i] = j
        self._labels, self._rows = [], []
        if len(self.index) > MAX_GROUPS:  # an identifier or free text, not a label
            self.index, self.shift = None, np.zeros((0, self.k))
            self.n, self.s1, self.s2 = np.zeros(0), np.zeros((0, self.k)), np.zeros((0, self.k, self.k))
            return
        if first:
            grow = len(first)
            self.shift = np.concatenate([self.shift, x[first]])
            self.n = np.concatenate([self.n, np.zeros(grow)])
            self.s1 = np.concatenate([self.s1, np.zeros((grow, self.k))])
            self.s2 = np.concatenate([self.s2, np.zeros((grow, self.k, self.k))])
        np.add.at(self.n, ids, 1.0)
        with np.errstate(over="ignore", invalid="ignore"):  # |x| near float64's limit: non-finite, skipped later
            d = x - self.shift[ids]
            np.add.at(self.s1, ids, d)
            np.add.at(self.s2, ids, d[:, :, None] * d[:, None, :])

    def result(self) -> tuple[list, np.ndarray, np.ndarray, np.ndarray] | None:
        """(labels, counts (g,), means (g, k), covariances (g, k, k)) of the groups with at
        least two rows, or None (dropped, or none)."""
        self._flush()
        if self.index is None:
            return None
        labels = list(self.index)
        keep = np.flatnonzero(self.n >= 2)
        if not len(keep):
            return None
        n = self.n[keep]
        with np.errstate(over="ignore", invalid="ignore"):
            dm = self.s1[keep] / n[:, None]
            cov = (self.s2[keep] - n[:, None, None] * dm[:, :, None] * dm[:, None, :]) / (n - 1)[:, None, None]
            mean = self.shift[keep] + dm
        return [labels[i] for i in keep], n, mean, cov


def explained_share(total_cov: np.ndarray, counts: np.ndarray, covs: np.ndarray) -> float:
    """1 - tr(total^-1 W) / k, W the pooled within-class covariance: the share of the floats'
    (whitened) variance that the class means explain. W pools unbiased class covariances, so
    a field of many tiny classes does not look better than it is."""
    if (counts - 1).sum() < 2:
        return 0.0
    k = total_cov.shape[0]
    return float(1.0 - np.trace(np.linalg.pinv(total_cov) @ pooled(counts, covs)) / k)


def pooled(counts: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """The pooled within-class covariance (k, k): class covariances weighted by their degrees of freedom."""
    dof = counts - 1
    return (dof[:, None, None] * covs).sum(0) / dof.sum()


def choose_anchors(total_cov: np.ndarray, candidates: dict[str, GroupedMoments]) -> list[dict[str, Any]]:
    """Up to KEPT candidate fields whose classes explain at least MIN_SHARE of the floats'
    variance, best first, each as {"field", "share", "values", "counts", "means", "covs",
    "within"} (JSON-ready; the covariances are the raw ones, shrunk by the compiler)."""
    if not np.isfinite(total_cov).all():
        return []
    found = []
    for key, groups in candidates.items():
        res = groups.result()
        if res is None:
            continue
        labels, counts, means, covs = res
        if not (np.isfinite(means).all() and np.isfinite(covs).all()):
            continue
        share = explained_share(total_cov, counts, covs)
        if share >= MIN_SHARE:
            found.append({"field": key, "share": round(share, 6), "values": labels,
                          "counts": counts.astype(int).tolist(), "means": means.tolist(),
                          "covs": covs.tolist(), "within": pooled(counts, covs).tolist()})
    found.sort(key=lambda a: -a["share"])
    return found[:KEPT]
