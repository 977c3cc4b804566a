"""Running mean and covariance of a stream of rows, in memory that does not grow with the stream.

`synth.fitstats` needs the mean and covariance of every scalar field (the initial
whitening statistics); a training file larger than memory cannot be held as rows. Rows
are gathered in chunks of `CHUNK` and each chunk is merged into the running moments
with Chan, Golub and LeVeque's pairwise update, which stays as exact as a two-pass
computation (no sum-of-squares cancellation for values with a large offset).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from synth.value_grid import GridTracker

CHUNK = 4096
# Rows kept (a seeded uniform reservoir) for the marginal quantiles of the number transform
# (synth/nn/scalar_tuple.py): bounded memory on streamed input
RESERVOIR = 8192
QUANTILES = 129  # knots of each column's quantile function (probabilities 0, 1/128, ..., 1)


class RunningMoments:
    """Mean and sample covariance (ddof 1, like `numpy.cov`) of rows of equal length."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of outer products of deviations from the mean
        self.absmax = 0.0  # for the fallback scale when the moments overflow float64
        self.grid: GridTracker | None = None  # the step the values are multiples of (synth.value_grid)
        self._rows: list[Sequence[float]] = []
        self.sample: np.ndarray | None = None  # the reservoir (at most RESERVOIR rows)
        self._rng = np.random.default_rng(0)

    def add(self, row: Sequence[float]) -> None:
        self._rows.append(row)
        if len(self._rows) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        x = np.asarray(self._rows, dtype=np.float64)
        self._rows = []
        if self.grid is None:
            self.grid = GridTracker(x.shape[1])
        self.grid.update(x)
        self._keep(x)
        with np.errstate(over="ignore", invalid="ignore"):
            self.absmax = max(self.absmax, float(np.abs(x).max()))
            mean_b = x.mean(0)
            dev = x - mean_b
            m2_b = dev.T @ dev
            if self.mean is None:
                self.n, self.mean, self.m2 = len(x), mean_b, m2_b
                return
            n_a, n_b = self.n, len(x)
            n = n_a + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + np.outer(delta, delta) * (n_a * n_b / n)
            self.n = n

    def _keep(self, x: np.ndarray) -> None:
        """Reservoir sampling (algorithm R) of the rows, chunk by chunk."""
        seen = self.n if self.sample is not None else 0  # rows before this chunk (n lags the merge)
        if self.sample is None:
            self.sample = x[:RESERVOIR].copy()
            x, seen = x[RESERVOIR:], len(self.sample)
        elif len(self.sample) < RESERVOIR:
            take = RESERVOIR - len(self.sample)
            self.sample = np.vstack([self.sample, x[:take]])
            x, seen = x[take:], seen + take
        if len(x):
            slot = np.floor(self._rng.random(len(x)) * (seen + np.arange(1, len(x) + 1))).astype(np.int64)
            hit = slot < RESERVOIR
            self.sample[slot[hit]] = x[hit]  # in row order: a later row replaces an earlier one

    def quantiles(self, grid: Sequence[float] = ()) -> list[list[float]]:
        """Per column, its values at probabilities 0, 1/(QUANTILES-1), ..., 1 (from the
        reservoir); a column on a grid of step q is taken with U(-q/2, q/2) noise, as its
        training targets are (synth.value_grid), so its quantile function has no flat steps."""
        self._flush()
        if self.sample is None or len(self.sample) < 2:
            return []
        x = self.sample.copy()
        noise = np.random.default_rng(1).random(x.shape) - 0.5
        for j, q in enumerate(grid):
            x[:, j] += noise[:, j] * q
        with np.errstate(over="ignore", invalid="ignore"):
            return np.quantile(x, np.linspace(0.0, 1.0, QUANTILES), axis=0).T.tolist()

    def grid_steps(self) -> list[float]:
        """Per column: the grid step of every value seen, or 0.0 for none."""
        self._flush()
        return self.grid.result() if self.grid is not None else []

    def result(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean (k,), covariance (k, k)), or None for fewer than two rows."""
        self._flush()
        if self.n < 2 or self.mean is None or self.m2 is None:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            return self.mean.copy(), np.atleast_2d(self.m2 / (self.n - 1))
