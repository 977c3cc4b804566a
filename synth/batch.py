"""The Batch: a batch of records laid out by field, mirroring the plan (docs/architecture.md, the codec).

Each plan node holds its instances flattened across records and repeats, plus the
record each instance belongs to (`root`), so per-node losses can be summed back to
records. Strings of all fields that share a StringLiteral are packed into one
(N, T) array sorted longest first, so the GRU runs once per step on a prefix slice.
Everything here is numpy: the codec builds it outside `forward`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from synth.tokens import EOS


@dataclass
class NodeData:
    n: int
    root: np.ndarray  # (n,) record index of each instance
    values: np.ndarray | list | None = None  # leaves: (n,k) / (n,) arrays, or list of bytes
    present: np.ndarray | None = None  # PresenceNode: (n,) bool
    lengths: np.ndarray | None = None  # SequenceNode: (n,) int
    case: np.ndarray | None = None  # OneofNode: (n,) int, -1 = not set


@dataclass
class StringPack:
    tokens: np.ndarray  # (N, T) int64: UTF-8 bytes then EOS, sorted by length desc
    lengths: np.ndarray  # (N,) including EOS
    order: np.ndarray  # (N,) sorted row -> index in the concatenation of the fields' values
    slices: dict[str, tuple[int, int]]  # node path -> [start, end) in the concatenation


@dataclass
class Batch:
    size: int
    nodes: dict[str, NodeData] = field(default_factory=dict)
    strings: dict[str, StringPack] = field(default_factory=dict)
    # Records [0, n_real) are training data; later ones are generated variants (augmented
    # training). Only real records may move data statistics such as the whitening.
    n_real: int | None = None

    def real_rows(self, root: np.ndarray) -> np.ndarray:
        """Mask of the instances (by their record index `root`) that come from real records."""
        return np.ones(len(root), dtype=bool) if self.n_real is None else root < self.n_real


def pack_strings(per_node: dict[str, list[bytes]]) -> StringPack:
    """Concatenate the values of several string nodes, append EOS, sort longest first."""
    slices, flat, start = {}, [], 0
    for path, values in per_node.items():
        slices[path] = (start, start + len(values))
        flat.extend(values)
        start += len(values)
    lengths = np.fromiter((len(s) + 1 for s in flat), dtype=np.int64, count=len(flat))
    order = np.argsort(-lengths, kind="stable")
    steps = int(lengths.max()) if len(flat) else 0
    tokens = np.full((len(flat), steps), EOS, dtype=np.int64)
    for row, i in enumerate(order):
        s = flat[i]
        if s:
            tokens[row, : len(s)] = np.frombuffer(s, dtype=np.uint8)
    return StringPack(tokens, lengths[order], order, slices)


def tensor(a: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)
