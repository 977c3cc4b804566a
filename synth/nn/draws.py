"""Random draws during generation: from one generator, or per row from its request's own.

A generation batch may hold the rows of several sample requests (micro-batching,
synth/service/batcher.py). For a request to get the same records alone and merged,
each of its rows must draw from the request's generator, and the request must ask its
generator for the same numbers in the same order either way. `RowStreams` does that:
a draw for the rows of a batch asks each request's generator for exactly the rows it
owns, in row order, and nothing for rows that have finished (so a long-running
neighbour cannot advance a request's stream).

Modules take `generator`: a `torch.Generator` (or None), or a `RowRNG` (the streams
bound to the rows at hand, from `_Gen.rng(root)` in synth/vae.py). `uniform`,
`normal` and `narrow` work with both. With one request, `RowRNG` draws exactly what
the plain generator would.

Categorical draws use the inverse CDF with one uniform per row (not
`torch.multinomial`, whose consumption of the stream is an implementation detail and
which is slow on CPU).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synth.nn import rowwise


class RowStreams:
    """One generator per request and the request of each record of the batch."""

    def __init__(self, generators: Sequence[torch.Generator], owner_of_record: np.ndarray):
        self.generators = list(generators)
        self.owner_of_record = np.asarray(owner_of_record, dtype=np.int64)

    def bind(self, root: np.ndarray) -> "RowRNG":
        """The streams for rows belonging to the records `root` (a node's instances)."""
        return RowRNG(self.generators, self.owner_of_record[np.asarray(root, dtype=np.int64)])


class RowRNG:
    """Random numbers for a set of rows, each from its owner's generator."""

    def __init__(self, generators: list[torch.Generator], owners: np.ndarray):
        self.generators, self.owners = generators, owners
        self._groups: list[tuple[torch.Generator, np.ndarray | None]] | None = None

    def __len__(self) -> int:
        return len(self.owners)

    def groups(self) -> list[tuple[torch.Generator, np.ndarray | None]]:
        """(generator, its rows in order), or (generator, None) when one owns them all."""
        if self._groups is None:
            owners = self.owners
            if len(owners) == 0:
                self._groups = []
            elif (owners == owners[0]).all():
                self._groups = [(self.generators[int(owners[0])], None)]
            else:
                self._groups = [(self.generators[int(k)], np.nonzero(owners == k)[0])
                                for k in np.unique(owners)]
        return self._groups

    def subset(self, keep: torch.Tensor | np.ndarray) -> "RowRNG":
        """The rows selected by a boolean mask or an index (order kept)."""
        keep = keep.cpu().numpy() if isinstance(keep, torch.Tensor) else np.asarray(keep)
        return RowRNG(self.generators, self.owners[keep])

    def draw(self, kind: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        fn = torch.rand if kind == "uniform" else torch.randn
        groups = self.groups()
        if not groups:  # no rows left (every record of the batch finished this node)
            return torch.empty(0, *shape, device=device)
        if len(groups) == 1 and groups[0][1] is None:
            return fn(len(self), *shape, generator=groups[0][0], device=device)
        parts = torch.cat([fn(len(rows), *shape, generator=g, device=device) for g, rows in groups])
        order = np.concatenate([rows for _, rows in groups])
        if (order[1:] > order[:-1]).all():  # a request's rows are usually contiguous: no reordering
            return parts
        out = torch.empty_like(parts)
        out[torch.as_tensor(order, device=device)] = parts
        return out


def uniform(generator, n: int, device: torch.device, *shape: int) -> torch.Tensor:
    """U(0, 1) of shape (n, *shape): row i from its own stream when `generator` is a RowRNG."""
    if isinstance(generator, RowRNG):
        return generator.draw("uniform", shape, device)
    return torch.rand(n, *shape, generator=generator, device=device)


def normal(generator, n: int, device: torch.device, *shape: int) -> torch.Tensor:
    """N(0, 1) of shape (n, *shape), like `uniform`."""
    if isinstance(generator, RowRNG):
        return generator.draw("normal", shape, device)
    return torch.randn(n, *shape, generator=generator, device=device)


def narrow(generator, keep: torch.Tensor):
    """The generator for the rows `keep` selects (a RowRNG follows its rows; others are shared)."""
    return generator.subset(keep) if isinstance(generator, RowRNG) else generator


def categorical(probs: torch.Tensor, generator) -> torch.Tensor:
    """One draw per row (n, K) -> (n,) by the inverse CDF: one uniform per row."""
    n, k = probs.shape
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=probs.device)
    if k >= BLOCKED_MIN_CLASSES and probs.device.type == "cpu" and not rowwise.enabled():
        idx = _blocked_inverse_cdf(probs, uniform(generator, n, probs.device))
    else:
        cdf = probs.cumsum(-1)
        target = uniform(generator, n, probs.device) * cdf[:, -1]
        idx = torch.searchsorted(cdf, target.unsqueeze(1), right=True)[:, 0].clamp_(max=k - 1)
    # u * total can round up to total: never return a class of probability zero (a blocked case)
    zero = probs.gather(1, idx.unsqueeze(1))[:, 0] <= 0
    return torch.where(zero, probs.argmax(-1), idx) if bool(zero.any()) else idx


# Vocabularies this large (a street or house-number leaf: thousands of classes) search their
# CDF in two levels on the CPU, where a full-width cumsum is a slow serial pass: about 4.5 of
# the 9.6 ms that drawing 512 streets took (docs/benchmarks.md, Performance). Row-invariant
# mode keeps the flat cumsum: a reduction over short blocks may be vectorised across rows.
BLOCKED_MIN_CLASSES = 1024
_BLOCK = 64


def _blocked_inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The inverse CDF at u for each row, found by the block (sums of _BLOCK classes), then the class."""
    n, k = probs.shape
    full = k // _BLOCK
    sums = probs[:, : full * _BLOCK].reshape(n, full, _BLOCK).sum(-1)
    if full * _BLOCK < k:
        sums = torch.cat([sums, probs[:, full * _BLOCK:].sum(-1, keepdim=True)], 1)
    cdf = sums.cumsum(-1)
    target = (u * cdf[:, -1]).unsqueeze(1)
    block = torch.searchsorted(cdf, target, right=True).clamp_(max=cdf.shape[1] - 1)
    before = torch.where(block > 0, cdf.gather(1, (block - 1).clamp(min=0)), torch.zeros_like(target))
    cols = block * _BLOCK + torch.arange(_BLOCK, device=probs.device)
    inside = probs.gather(1, cols.clamp(max=k - 1)) * (cols < k)  # the last block may be short
    within = torch.searchsorted(inside.cumsum(-1), target - before, right=True).clamp_(max=_BLOCK - 1)
    return (block * _BLOCK + within)[:, 0]


def softmax_draw(logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
    """Argmax, or a draw from softmax(logits / temperature): (n, K) -> (n,)."""
    if greedy or logits.shape[0] == 0:
        return logits.argmax(-1)
    if temperature != 1.0:  # a full pass over (n, K): skipped when the caller scaled already
        logits = logits / max(temperature, 1e-6)
    return categorical(F.softmax(logits, -1), generator)
