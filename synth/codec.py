"""Records <-> Batch (DESIGN.md section 3, "Batching").

`encode` reads a list of messages into a field-major Batch (numpy) following the
plan; `decode` builds valid messages of the user's schema back from a Batch, whether
it came from `encode` (the ground-truth path) or from the model's generator:

* enums and categorical ints are always one of the known classes;
* ints are rounded and clamped to their type's range, floats to float32's;
* required fields are always set, a oneof has at most one case;
* strings are valid UTF-8 (undecodable byte runs from the generator are dropped).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from synth.batch import Batch, NodeData, pack_strings
from synth.errors import DataError, Violation
from synth.plan import (CategoricalNode, Node, NumberNode, OneofNode, PresenceNode, ScalarsNode,
                        SequenceNode, StringNode, TruncatedNode, TupleNode, walk)
from synth.schema.tree import FLOAT32_MAX, FieldNode


class MapEntry:
    """One key/value pair of a map field, as the map-entry Tuple sees it."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any = None, value: Any = None):
        self.key, self.value = key, value


def _read(node: Node, obj: Any) -> Any:
    """The value a Tuple child node models, read from its parent message (or map entry)."""
    if isinstance(node, ScalarsNode):
        return tuple(getattr(obj, f.name) for f in node.fields)
    if isinstance(node, OneofNode):
        which = obj.WhichOneof(node.name)
        if which is None:
            return (-1, None)
        idx = next(i for i, f in enumerate(node.cases) if f.name == which)
        return (idx, getattr(obj, which))
    f: FieldNode = node.field
    if isinstance(obj, MapEntry):
        return getattr(obj, f.name)
    if f.is_map:
        container = getattr(obj, f.name)
        return [MapEntry(k, container[k]) for k in sorted(container)]
    if f.repeated:
        return list(getattr(obj, f.name))
    if isinstance(node, (PresenceNode, TruncatedNode)):
        return getattr(obj, f.name) if obj.HasField(f.name) else None
    return getattr(obj, f.name)


def _write_field(obj: Any, f: FieldNode, value: Any) -> None:
    if isinstance(obj, MapEntry):
        setattr(obj, f.name, value)
    elif f.type == "message":
        sub = getattr(obj, f.name)
        sub.SetInParent()
        sub.CopyFrom(value)
    else:
        setattr(obj, f.name, value)


def _write(node: Node, obj: Any, value: Any) -> None:
    """Store a child node's value into its parent message."""
    if isinstance(node, ScalarsNode):
        for f, v in zip(node.fields, value):
            setattr(obj, f.name, v)
    elif isinstance(node, OneofNode):
        if value[0] >= 0:
            _write_field(obj, node.cases[value[0]], value[1])
    elif isinstance(node, TruncatedNode):
        return
    elif isinstance(node, SequenceNode) and not isinstance(obj, MapEntry):
        container = getattr(obj, node.field.name)
        if node.field.is_map:
            for e in value:
                if node.field.map_value.type == "message":
                    container[e.key].CopyFrom(e.value)
                else:
                    container[e.key] = e.value
        else:
            container.extend(value)
    elif isinstance(node, PresenceNode):
        if value is not None:
            _write_field(obj, node.field, value)
    else:
        _write_field(obj, node.field, value)


def clamp_number(f: FieldNode, x: float) -> int | float:
    """Round/clamp a generated number so that it fits the field's type."""
    if f.int_range is not None:
        lo, hi = f.int_range
        if not math.isfinite(x):
            return 0 if x != x else (hi if x > 0 else lo)
        return max(lo, min(hi, int(round(x))))
    if x != x:
        return 0.0
    if f.type == "float":
        return max(-FLOAT32_MAX, min(FLOAT32_MAX, x))
    return x


def _fix_timestamp(ts: Any) -> None:
    # RFC 3339 range 0001-01-01 .. 9999-12-31, nanos in [0, 1e9): what the JSON mapping accepts
    ts.seconds = max(-62135596800, min(253402300799, ts.seconds))
    ts.nanos = max(0, min(999_999_999, ts.nanos))


def _fix_duration(d: Any) -> None:
    # seconds and nanos must share a sign, |seconds| <= 10,000 years, |nanos| < 1e9
    total = max(-315576000000, min(315576000000, d.seconds)) * 10**9 + max(-999_999_999, min(999_999_999, d.nanos))
    sign = -1 if total < 0 else 1
    d.seconds, d.nanos = sign * (abs(total) // 10**9), sign * (abs(total) % 10**9)


# Decoded well-known types must also be valid for the proto3 JSON mapping.
WELL_KNOWN_RANGES: dict[str, Callable[[Any], None]] = {
    "google.protobuf.Timestamp": _fix_timestamp,
    "google.protobuf.Duration": _fix_duration,
}


class Codec:
    def __init__(self, plan: TupleNode, descriptor: Descriptor):
        self.plan = plan
        self.pool = descriptor.file.pool
        self.root_class = message_factory.GetMessageClass(descriptor)
        self._classes: dict[str, type[Message]] = {}
        self.string_nodes: dict[str, list[StringNode]] = {}
        for node in walk(plan):
            if isinstance(node, StringNode):
                self.string_nodes.setdefault(node.module, []).append(node)

    def message_class(self, full_name: str) -> Callable[[], Any]:
        if full_name not in self._classes:
            self._classes[full_name] = message_factory.GetMessageClass(
                self.pool.FindMessageTypeByName(full_name))
        return self._classes[full_name]

    # -- records -> Batch ---------------------------------------------------------------
    def encode(self, messages: list[Message]) -> Batch:
        batch = Batch(len(messages))
        errors: list[Violation] = []
        self._extract(self.plan, list(messages), np.arange(len(messages)), batch, errors)
        if errors:
            raise DataError(f"{len(errors)} value(s) do not fit the model", errors[:20],
                            total=len(errors))
        for module, nodes in self.string_nodes.items():
            batch.strings[module] = pack_strings({n.path: batch.nodes[n.path].values for n in nodes})
        return batch

    def _extract(self, node: Node, values: list, root: np.ndarray, batch: Batch, errors) -> None:
        data = NodeData(len(values), root)
        batch.nodes[node.path] = data
        where = lambda i: f"record[{root[i]}].{node.path}"  # noqa: E731
        if isinstance(node, TupleNode):
            for child in node.children:
                self._extract(child, [_read(child, v) for v in values], root, batch, errors)
        elif isinstance(node, ScalarsNode):
            data.values = np.asarray(values, dtype=np.float64).reshape(len(values), len(node.fields))
            bad = ~np.isfinite(data.values).all(1)
            errors += [Violation(where(i), "non-finite float (NaN or inf) cannot be modelled")
                       for i in np.nonzero(bad)[0]]
        elif isinstance(node, NumberNode):
            data.values = np.asarray([float(v) for v in values], dtype=np.float64)
            errors += [Violation(where(i), "non-finite float (NaN or inf) cannot be modelled")
                       for i in np.nonzero(~np.isfinite(data.values))[0]]
        elif isinstance(node, StringNode):
            data.values = [v if isinstance(v, bytes) else v.encode("utf-8") for v in values]
        elif isinstance(node, CategoricalNode):
            index = {c: i for i, c in enumerate(node.classes)}
            idx = np.empty(len(values), dtype=np.int64)
            for i, v in enumerate(values):
                if v not in index:
                    errors.append(Violation(where(i), f"value {v!r} is not one of the model's "
                                  f"{len(index)} known values; retrain with it, or model the field as a number"))
                idx[i] = index.get(v, 0)
            data.values = idx
        elif isinstance(node, PresenceNode):
            data.present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
            self._extract(node.child, [v for v in values if v is not None], root[data.present], batch, errors)
        elif isinstance(node, SequenceNode):
            data.lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
            flat = [e for v in values for e in v]
            self._extract(node.element, flat, np.repeat(root, data.lengths), batch, errors)
        elif isinstance(node, OneofNode):
            data.case = np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))
            for k, child in enumerate(node.children):
                rows = np.nonzero(data.case == k)[0]
                self._extract(child, [values[i][1] for i in rows], root[rows], batch, errors)
        elif isinstance(node, TruncatedNode):
            errors += [Violation(where(i), "nesting exceeds max_recursion; raise max_recursion "
                                 "in the model config") for i, v in enumerate(values) if v]

    # -- Batch -> records ---------------------------------------------------------------
    def decode(self, batch: Batch) -> list[Message]:
        return self._build(self.plan, batch)

    def _build(self, node: Node, batch: Batch) -> list:
        data = batch.nodes.get(node.path)
        if isinstance(node, TupleNode):
            n = data.n
            children = [(c, self._build(c, batch)) for c in node.children]
            factory = MapEntry if node.map_entry else self.message_class(node.full_name)
            fix = WELL_KNOWN_RANGES.get(node.full_name)
            out = []
            for i in range(n):
                obj = factory()
                for child, vals in children:
                    _write(child, obj, vals[i])
                if fix:
                    fix(obj)
                out.append(obj)
            return out
        if isinstance(node, ScalarsNode):
            return [tuple(clamp_number(f, float(x)) for f, x in zip(node.fields, row)) for row in data.values]
        if isinstance(node, NumberNode):
            return [clamp_number(node.field, float(x)) for x in data.values]
        if isinstance(node, StringNode):
            if node.binary:
                return [bytes(v) for v in data.values]
            return [bytes(v).decode("utf-8", errors="ignore") for v in data.values]
        if isinstance(node, CategoricalNode):
            return [node.classes[int(i)] for i in data.values]
        if isinstance(node, PresenceNode):
            child = iter(self._build(node.child, batch))
            return [next(child) if p else None for p in data.present]
        if isinstance(node, SequenceNode):
            flat = self._build(node.element, batch)
            ends = np.cumsum(data.lengths)
            return [flat[e - l: e] for l, e in zip(data.lengths, ends)]
        if isinstance(node, OneofNode):
            built = [iter(self._build(c, batch)) for c in node.children]
            return [(int(k), next(built[k]) if k >= 0 else None) for k in data.case]
        if isinstance(node, TruncatedNode):
            return [None] * data.n
        raise TypeError(type(node))
