"""The grid of a numeric field: the step its training values are all multiples of.

Why: many real "continuous" fields are recorded on a grid: delays in whole minutes
(flights' dep_delay 7.0, -4.0), lengths to 0.1 mm (penguins), prices in cents. A
Gaussian likelihood on such values can shrink its spread onto the grid points without
bound; on flights the reconstruction loss went to -14 with gradient norms in the
thousands, and the run never settled (docs/benchmarks.md). The standard fix is
dequantization: train on value + U(-q/2, q/2), which bounds the likelihood by the mass
of each grid cell. Generated values are then put back on the grid, so they look like the
data's (7.0, not 6.87).

The grid is found in one streaming pass (synth.moments, for synth.fitstats): the largest
power of ten q (10^3 down to 10^-4) that every value is a multiple of, within float32's
rounding. None when the values are finer, or so large against q that float rounding
could pass any value (|v / q| > 1e5).
"""
from __future__ import annotations

import zlib

import numpy as np

CANDIDATES = (1e3, 1e2, 1e1, 1.0, 1e-1, 1e-2, 1e-3, 1e-4)
MAX_MULTIPLE = 1e5  # |v / q| beyond this: a float's rounding error is too close to the grid step


def on_grid(x: np.ndarray, q: float) -> bool:
    """Every value a multiple of q, allowing for float32 storage (fields of type float)."""
    with np.errstate(over="ignore", invalid="ignore"):  # values near float64's limits
        r = x / q
    if not np.isfinite(r).all() or np.abs(r).max(initial=0.0) > MAX_MULTIPLE:
        return False
    return bool((np.abs(r - np.round(r)) <= 1e-3 + 2e-7 * np.abs(r)).all())


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread uint64 hash of each uint64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def dequantization_noise(key: int, path: str, positions: np.ndarray, root: np.ndarray, k: int) -> np.ndarray:
    """U(-1/2, 1/2) noise (n, k) for a node's n instances, a function of the step's `key`,
    the node, each instance's record position in the global batch (`positions[root]`) and
    its place among its record's instances: the same numbers whichever rank holds the
    record and whatever else is in the batch, so data-parallel training matches one process."""
    order = np.argsort(root, kind="stable")
    ranked = root[order]
    ordinal = np.empty(len(root), dtype=np.int64)  # the instance's place among its record's
    ordinal[order] = np.arange(len(root)) - np.searchsorted(ranked, ranked)
    base = _mix(np.uint64(key % 2**64) ^ np.uint64(zlib.crc32(path.encode())))
    ident = _mix(base ^ _mix(positions[root].astype(np.uint64)) ^ (ordinal.astype(np.uint64) << np.uint64(40)))
    bits = _mix(ident[:, None] ^ np.arange(k, dtype=np.uint64)[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5


class GridTracker:
    """The grid step of each column of a stream of (n, k) chunks (monotone: a step that
    fails once is never tried again, and neither is any larger one)."""

    def __init__(self, k: int):
        self.index = np.zeros(k, dtype=np.int64)  # into CANDIDATES; len(CANDIDATES) = no grid

    def update(self, x: np.ndarray) -> None:
        for j in range(x.shape[1]):
            while self.index[j] < len(CANDIDATES) and not on_grid(x[:, j], CANDIDATES[self.index[j]]):
                self.index[j] += 1

    def result(self) -> list[float]:
        """Per column: the grid step, or 0.0 for none."""
        return [CANDIDATES[i] if i < len(CANDIDATES) else 0.0 for i in self.index]
