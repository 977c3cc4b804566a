"""FitStats: the data-dependent choices of the compiler, computed once from training records.

Kept separate from the model config so that a manifest rebuilds the same module tree
without the data (docs/architecture.md, the compiler). Keys are type-level field keys,
`<message full name>.<field>`, so that recursive levels of one type share them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from google.protobuf.message import Message

from synth.anchor_stats import GroupedMoments, choose_anchors
from synth.moments import RunningMoments
from synth.schema.tree import FLOAT_TYPES, INT_TYPES, TYPE_NAMES  # at import: _type runs per value

JOINT = "#floats"
MAX_CATEGORIES = 4096  # distinct int values kept, so an override to categorical has them
# Distinct string values counted per field (the automatic categorical test needs their
# counts); a field with more is open text, and its counts are dropped to bound memory.
MAX_STRING_VALUES = 65536


@dataclass
class FitStats:
    n_records: int = 0
    int_values: dict[str, list[int]] = field(default_factory=dict)  # distinct values, if few
    # their counts, same order (for the closed-vocabulary test; artifacts from before it have none)
    int_counts: dict[str, list[int]] = field(default_factory=dict)
    string_max_len: dict[str, int] = field(default_factory=dict)  # bytes
    string_values: dict[str, list[str]] = field(default_factory=dict)  # distinct values, if few
    string_counts: dict[str, list[int]] = field(default_factory=dict)  # their counts, same order
    seq_max_len: dict[str, int] = field(default_factory=dict)
    # the fewest elements a repeated field had where its message occurred (artifacts from
    # before it have none: 0)
    seq_min_len: dict[str, int] = field(default_factory=dict)
    scalar_mean: dict[str, list[float]] = field(default_factory=dict)
    scalar_cov: dict[str, list[list[float]]] = field(default_factory=dict)
    # Per ScalarTuple member, the step its values are all multiples of (0.0: none), for the
    # keys that have one (synth.value_grid); artifacts from before it have none
    scalar_grid: dict[str, list[float]] = field(default_factory=dict)
    # Per ScalarTuple member, its quantile function at 129 evenly spaced probabilities (the
    # number transform, synth/nn/scalar_tuple.py); artifacts from before it have none
    scalar_quantiles: dict[str, list[list[float]]] = field(default_factory=dict)
    # Generation order of each message's Tuple children, as indices into their declared
    # order, written by the compiler the first time it orders a message (field_order =
    # "auto"). It is part of the trained model: an artifact rebuilds the order it was
    # trained with, even if a later protosynth would order the fields differently.
    field_order: dict[str, list[int]] = field(default_factory=dict)
    # Per joint-float key, the label fields whose classes explain the floats best, with the
    # floats' moments per class (synth.anchor_stats); the compiler keeps the one it uses.
    # Artifacts from before it have none (their floats have no anchor).
    scalar_anchors: dict[str, list[dict]] = field(default_factory=dict)


class _Collector:
    def __init__(self, int_cap: int):
        self.int_cap = int_cap
        self.string_cap = max(int_cap, MAX_STRING_VALUES)
        self.ints: dict[str, dict[int, int] | None] = {}  # value -> count, until too many
        self.strings: dict[str, int] = {}
        self.string_sets: dict[str, dict[str, int] | None] = {}  # value -> count, until too many
        self.seqs: dict[str, int] = {}
        self.seq_mins: dict[str, int] = {}
        # running moments, not rows: a streamed training file may not fit in memory
        self.scalars: dict[str, RunningMoments] = {}
        # joint-float key -> label field key -> the floats' moments per label value
        self.groups: dict[str, dict[str, GroupedMoments]] = {}

    def value(self, key: str, ftype: str, v: Any) -> None:
        if ftype in INT_TYPES or ftype == "enum" or ftype == "bool":
            seen = self.ints.setdefault(key, {})
            if seen is not None:
                seen[int(v)] = seen.get(int(v), 0) + 1
                if len(seen) > self.int_cap:
                    self.ints[key] = None  # too many distinct values: a number, not a category
            self.scalars.setdefault(key, RunningMoments()).add([float(v)])
        elif ftype in ("string", "bytes"):
            n = len(v.encode("utf-8")) if isinstance(v, str) else len(v)
            self.strings[key] = max(self.strings.get(key, 0), n)
            seen = self.string_sets.setdefault(key, {})
            if seen is not None and isinstance(v, str):
                seen[v] = seen.get(v, 0) + 1
                if len(seen) > self.string_cap:
                    self.string_sets[key] = None
        elif ftype in FLOAT_TYPES:
            self.scalars.setdefault(key, RunningMoments()).add([float(v)])

    def message(self, msg: Message) -> None:
        d = msg.DESCRIPTOR
        joint = []
        labels: list[tuple[str, Any]] = []  # the message's singular label values: anchor candidates
        for fd in d.fields:
            key = f"{d.full_name}.{fd.name}"
            value = getattr(msg, fd.name)
            if fd.is_repeated:
                entries = list(value.items()) if fd.message_type and fd.message_type.GetOptions().map_entry \
                    else list(value)
                self.seqs[key] = max(self.seqs.get(key, 0), len(entries))
                self.seq_mins[key] = min(self.seq_mins.get(key, len(entries)), len(entries))
                for item in entries:
                    self.item(fd, item)
                continue
            if fd.type == fd.TYPE_MESSAGE:
                if msg.HasField(fd.name):
                    self.message(value)
                continue
            if fd.has_presence and not msg.HasField(fd.name):
                continue
            self.value(key, _type(fd), value)
            if _type(fd) in FLOAT_TYPES and not fd.has_presence and fd.containing_oneof is None:
                joint.append(float(value))
            elif _type(fd) in LABEL_TYPES and not fd.has_presence and fd.containing_oneof is None:
                labels.append((key, value))
        if joint:
            self.scalars.setdefault(d.full_name + JOINT, RunningMoments()).add(joint)
            groups = self.groups.setdefault(d.full_name + JOINT, {})
            for key, value in labels:
                groups.setdefault(key, GroupedMoments(len(joint))).add(value, joint)

    def item(self, fd, item) -> None:
        mt = fd.message_type
        if mt is not None and mt.GetOptions().map_entry:
            k, v = item
            kf, vf = mt.fields_by_name["key"], mt.fields_by_name["value"]
            self.value(f"{mt.full_name}.key", _type(kf), k)
            if vf.type == vf.TYPE_MESSAGE:
                self.message(v)
            else:
                self.value(f"{mt.full_name}.value", _type(vf), v)
        elif mt is not None:
            self.message(item)
        else:
            self.value(f"{fd.containing_type.full_name}.{fd.name}", _type(fd), item)


LABEL_TYPES = INT_TYPES | {"enum", "bool", "string"}


def _type(fd) -> str:
    return TYPE_NAMES[fd.type]


def fit_stats(messages: Iterable[Message], int_cap: int = MAX_CATEGORIES) -> FitStats:
    """Walk the records once; ints keep their distinct values when there are at most `int_cap`."""
    c = _Collector(int_cap)
    n = 0
    for m in messages:
        c.message(m)
        n += 1
    stats = FitStats(n_records=n)
    stats.int_values = {k: sorted(v) for k, v in c.ints.items() if v is not None}
    stats.int_counts = {k: [c.ints[k][v] for v in vs] for k, vs in stats.int_values.items()}
    stats.string_max_len = dict(c.strings)
    stats.string_values = {k: sorted(v) for k, v in c.string_sets.items() if v is not None}
    stats.string_counts = {k: [c.string_sets[k][s] for s in vs] for k, vs in stats.string_values.items()}
    stats.seq_max_len = dict(c.seqs)
    stats.seq_min_len = dict(c.seq_mins)
    for key, moments in c.scalars.items():
        result = moments.result()
        if result is None:
            continue
        mean, cov = result
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            # |x| beyond ~1e154: the variance overflows float64. Whiten by a capped diagonal
            # scale instead; ScalarTuple clamps what still does not fit float32.
            with np.errstate(over="ignore", invalid="ignore"):
                mean = np.nan_to_num(mean, posinf=0.0, neginf=0.0)
            cov = np.eye(len(mean)) * min(moments.absmax, 1e150) ** 2
        stats.scalar_mean[key] = mean.tolist()
        stats.scalar_cov[key] = cov.tolist()
        grid = moments.grid_steps()
        if any(grid):
            stats.scalar_grid[key] = grid
        quantiles = moments.quantiles(grid)
        if quantiles and np.isfinite(quantiles).all():
            stats.scalar_quantiles[key] = quantiles
        anchors = choose_anchors(cov, c.groups.get(key, {}))
        if anchors:
            stats.scalar_anchors[key] = anchors
    return stats
