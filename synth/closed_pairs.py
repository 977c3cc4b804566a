"""Closed combinations: label pairs whose new records only ever repeat combinations seen in training.

Some labels of a message nearly fix another (a postcode its town, a plane's model its
manufacturer). The decoder draws them one after the other, each conditioned on the
ones before, but a latent drawn between the training records' latents can still point
the second label at another record's value: 1.9% of the bundled Vermont model's samples
paired a postcode with a town it never goes with, and every one of them had a p-value
near 0, because the coordinates follow the town (docs/benchmarks.md item 25).

So after training, each ordered pair (A, B) of categorical leaves of one message, A
drawn before B, is checked on the validation split: if at least `min_coverage` of the
validation records' (A, B) class pairs occur among the training records' (and the
training pairs leave out some of the combinations, so the check constrains anything),
the pair is *closed*. Sampling then draws B only among the classes seen with the A just
drawn. Class indices include a label's escape class, so a rare value pairs like any
other; an A whose class was never seen with any B (none, for training classes) leaves B
free. Decoding given latents (`decode`, `reconstruct`, `interpolate`) is not restricted,
so a record with an unseen combination still comes back as it was.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from synth.plan import CategoricalNode, TupleNode, walk

MAX_TABLE_CELLS = 5_000_000  # classes of A x classes of B: larger pairs are not checked
MAX_PAIRS = 200_000  # distinct (A, B) class pairs kept over all closed pairs of a model
KEY_SEP = " -> "


def pair_key(a: str, b: str) -> str:
    return f"{a}{KEY_SEP}{b}"


def _candidates(plan: TupleNode) -> Iterator[tuple[CategoricalNode, CategoricalNode]]:
    """Ordered pairs of categorical children of one Tuple, in the decoder's order."""
    for node in walk(plan):
        if isinstance(node, TupleNode):
            labels = [c for c in node.children if isinstance(c, CategoricalNode)]
            for i, a in enumerate(labels):
                for b in labels[i + 1:]:
                    if n_classes(a) * n_classes(b) <= MAX_TABLE_CELLS:
                        yield a, b


def n_classes(node: CategoricalNode) -> int:
    """Classes of a categorical leaf, its escape class included."""
    return len(node.classes) + (node.other is not None)


def _codes(batch: Any, node: CategoricalNode) -> np.ndarray:
    return np.asarray(batch.nodes[node.path].values, dtype=np.int64)


def find_closed_pairs(plan: TupleNode, train_batch: Any, val_batch: Any, min_coverage: float,
                      min_records: int) -> dict[str, Any]:
    """Check every candidate pair on encoded training and validation records (codec Batches);
    -> {"chosen": {key: [[a, b], ...]}, "checked": [{pair, coverage, seen, ...}], ...}."""
    chosen: dict[str, list[list[int]]] = {}
    checked = []
    kept = 0
    for a, b in _candidates(plan):
        if a.path not in train_batch.nodes or a.path not in val_batch.nodes:
            continue
        ta, tb, va, vb = _codes(train_batch, a), _codes(train_batch, b), _codes(val_batch, a), _codes(val_batch, b)
        seen = np.unique(ta * n_classes(b) + tb)
        if len(va) < min_records or len(np.unique(tb)) < 2:
            continue
        coverage = float(np.isin(va * n_classes(b) + vb, seen).mean())
        # it constrains something: some A value was seen with fewer B values than B has overall
        constrains = len(seen) < len(np.unique(ta)) * len(np.unique(tb))
        closed = coverage >= min_coverage and constrains and kept + len(seen) <= MAX_PAIRS
        checked.append({"pair": pair_key(a.path, b.path), "validation_coverage": round(coverage, 5),
                        "training_pairs": int(len(seen)), "closed": closed})
        if closed:
            kept += len(seen)
            chosen[pair_key(a.path, b.path)] = [[int(x // n_classes(b)), int(x % n_classes(b))] for x in seen]
    return {"chosen": chosen, "checked": checked,
            "criterion": f"share of validation records whose (A, B) classes occur in training >= {min_coverage}"}


def allowed_tables(plan: TupleNode, closed: dict[str, Sequence[Sequence[int]]],
                   device: torch.device | str = "cpu") -> dict[str, list[tuple[str, torch.Tensor]]]:
    """B's path -> [(A's path, (classes of A, classes of B) bool table of the pairs seen)]."""
    labels = {n.path: n for n in walk(plan) if isinstance(n, CategoricalNode)}
    out: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for key, pairs in closed.items():
        a_path, _, b_path = key.partition(KEY_SEP)
        a, b = labels.get(a_path), labels.get(b_path)
        if a is None or b is None:
            continue  # a manifest's pair naming no label of this plan: nothing to restrict
        table = torch.zeros(n_classes(a), n_classes(b), dtype=torch.bool)
        idx = torch.as_tensor(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
        table[idx[:, 0], idx[:, 1]] = True
        table[~table.any(1)] = True  # an A class never seen with any B leaves B free
        out.setdefault(b_path, []).append((a_path, table.to(device)))
    return out


def allowed_rows(tables: list[tuple[str, torch.Tensor]], batch: Any) -> torch.Tensor | None:
    """The classes B may take in each row (n, classes of B), given the A values already drawn
    into `batch`; rows that no class satisfies are left free. None: no A drawn yet."""
    mask = None
    for a_path, table in tables:
        data = batch.nodes.get(a_path)
        if data is None or data.values is None:
            continue
        rows = table[torch.as_tensor(np.asarray(data.values, dtype=np.int64), device=table.device)]
        mask = rows if mask is None else mask & rows
    if mask is not None:
        mask[~mask.any(1)] = True
    return mask
