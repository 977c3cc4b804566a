"""Records -> a table of leaf columns, derived from the schema tree alone (docs/evaluation.md).

Why: the fidelity, detection and privacy metrics must work for *any* message, not
only the address of Chou & Hathi 2019, and must score records that another system
produced (a peer synthesizer hands us plain dicts, no model). So the columns are
read off the `MessageNode` tree, never off the data: two record sets of the same
schema always give tables with the same columns, in the same order.

Records are dicts in the proto3 JSON mapping with proto field names, as
`json_format.MessageToDict(m, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)` writes them. A missing key reads as the
field's default (peers may leave defaults out); 64-bit integers may be strings.

One column per leaf concept, with a kind that tells the metrics how to treat it:

* `number`   float64, NaN where absent: numeric scalars, Timestamp/Duration (seconds).
* `category` str: bools, enums, oneof cases (`pick#case`), map keys; "<absent>" where absent.
* `string`   str or None (absent): strings and bytes; `string_features` derives numbers from it.
* `count`    float64: repeat count of a repeated field or map (`items#count`).
* `presence` float64 0/1: explicit presence (optional scalars, singular messages: `home#present`).

Repeated fields become their count plus the first element (`items[0].sku`,
`tags[0]`) and, for repeated numbers, the mean (`ints#mean`). Recursive schemas
are unrolled by the tree already; MAX_COLUMNS bounds the table for deep ones.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from synth.schema.tree import FLOAT_TYPES, INT_TYPES, FieldNode, MessageNode

NUMBER, CATEGORY, STRING, COUNT, PRESENCE = "number", "category", "string", "count", "presence"
KINDS = (NUMBER, CATEGORY, STRING, COUNT, PRESENCE)
NUMERIC_KINDS = frozenset({NUMBER, COUNT, PRESENCE})
ABSENT = "<absent>"
MAX_COLUMNS = 256
"""Bound on the number of columns; deep recursive schemas stop adding leaves past it."""

_WRAPPERS = {
    "google.protobuf.DoubleValue": "double", "google.protobuf.FloatValue": "float",
    "google.protobuf.Int64Value": "int64", "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int32", "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.BoolValue": "bool", "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "bytes",
}
_TIMES = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration"})
_JSONISH = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
                      "google.protobuf.FieldMask", "google.protobuf.Any"})

Getter = Callable[[Any], Any]
"""Reads a value out of one record; returns _MISSING when the leaf is not there."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING = _Missing()


@dataclass(frozen=True)
class Column:
    """One leaf column: `name` is its path (`home.lat`, `items#count`), `kind` one of KINDS."""

    name: str
    kind: str
    values: np.ndarray  # float64 for numeric kinds; object (str / None) for category and string


@dataclass(frozen=True)
class LeafTable:
    """Named leaf columns of equal length; the same schema always gives the same names."""

    columns: tuple[Column, ...]
    n_rows: int

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def take(self, rows: np.ndarray) -> LeafTable:
        """The table restricted to `rows` (an index array), e.g. a seeded subsample."""
        rows = np.asarray(rows, dtype=np.int64)
        return LeafTable(tuple(Column(c.name, c.kind, c.values[rows]) for c in self.columns), len(rows))

    def row_keys(self) -> list[tuple]:
        """Each row as a hashable tuple of all its leaf values (NaN-safe), for exact-copy checks."""
        parts = []
        for c in self.columns:
            if c.kind in NUMERIC_KINDS:
                parts.append([None if math.isnan(v) else float(v) for v in c.values.tolist()])
            else:
                parts.append(c.values.tolist())
        return list(zip(*parts)) if parts else [() for _ in range(self.n_rows)]


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str
    get: Callable[[Mapping[str, Any]], Any]


# ---------------------------------------------------------------------------
# Reading values
# ---------------------------------------------------------------------------


def _to_float(value: Any) -> float:
    if value is _MISSING or value is None or isinstance(value, bool):
        return math.nan if not isinstance(value, bool) else float(value)
    try:
        return float(value)  # ints, floats, "123" (64-bit ints), "NaN", "Infinity"
    except (TypeError, ValueError):
        return math.nan


def _time_seconds(value: Any) -> float:
    """Timestamp (RFC 3339) or Duration ("1.5s") JSON text -> seconds; NaN when unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):  # a peer may hand the message form
        return _to_float(value.get("seconds", 0)) + _to_float(value.get("nanos", 0)) * 1e-9
    if not isinstance(value, str):
        return math.nan
    if value.endswith("s") and not value.endswith("Z"):
        return _to_float(value[:-1])
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.nan


def _category(value: Any) -> str:
    if value is _MISSING or value is None:
        return ABSENT
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _child(get: Getter, name: str) -> Getter:
    def read(record: Any) -> Any:
        parent = get(record)
        if not isinstance(parent, Mapping):
            return _MISSING
        return parent.get(name, _MISSING)
    return read


def _first(get: Getter) -> Getter:
    def read(record: Any) -> Any:
        items = get(record)
        if isinstance(items, Mapping):  # a map: its first entry by sorted key
            if not items:
                return _MISSING
            key = sorted(items, key=str)[0]
            return {"key": key, "value": items[key]}
        if isinstance(items, (list, tuple)) and items:
            return items[0]
        return _MISSING
    return read


def _count(get: Getter) -> Callable[[Any], float]:
    def read(record: Any) -> float:
        items = get(record)
        return float(len(items)) if isinstance(items, (list, tuple, Mapping)) else 0.0
    return read


def _mean(get: Getter) -> Callable[[Any], float]:
    def read(record: Any) -> float:
        items = get(record)
        if not isinstance(items, (list, tuple)) or not items:
            return math.nan
        values = [_to_float(v) for v in items]
        return float(np.mean(values))
    return read


def _default_of(f: FieldNode) -> Any:
    """What a missing key means for a field without presence (proto3 default)."""
    if f.type in FLOAT_TYPES or f.type in INT_TYPES:
        return 0
    if f.type == "bool":
        return False
    if f.type == "enum" and f.enum is not None:
        return f.enum.names[f.enum.numbers.index(0)] if 0 in f.enum.numbers else f.enum.names[0]
    if f.type in ("string", "bytes"):
        return ""
    return _MISSING


def _defaulted(get: Getter, default: Any, parent: Getter) -> Getter:
    """A missing key reads as `default`, but only when the enclosing message is there."""
    def read(record: Any) -> Any:
        value = get(record)
        if value is _MISSING and isinstance(parent(record), Mapping):
            return default
        return value
    return read


# ---------------------------------------------------------------------------
# Column specs from the tree
# ---------------------------------------------------------------------------


def _scalar_specs(name: str, ftype: str, get: Getter) -> list[_Spec]:
    if ftype in FLOAT_TYPES or ftype in INT_TYPES:
        return [_Spec(name, NUMBER, lambda r: _to_float(get(r)))]
    if ftype in ("bool", "enum"):
        return [_Spec(name, CATEGORY, lambda r: _category(get(r)))]
    if ftype in ("string", "bytes"):
        return [_Spec(name, STRING, lambda r: None if (v := get(r)) is _MISSING or v is None else str(v))]
    return []


def _field_specs(f: FieldNode, prefix: str, parent: Getter, out: list[_Spec]) -> None:
    if f.truncated or len(out) >= MAX_COLUMNS:
        return
    path = f"{prefix}.{f.name}" if prefix else f.name
    raw = _child(parent, f.name)
    if f.is_map:
        out.append(_Spec(f"{path}#count", COUNT, _count(raw)))
        entry = _first(raw)
        out.append(_Spec(f"{path}[0].key", CATEGORY, lambda r: _category(_child(entry, "key")(r))))
        _value_specs(f.map_value, f"{path}[0].value", _child(entry, "value"), out)
        return
    if f.repeated:
        out.append(_Spec(f"{path}#count", COUNT, _count(raw)))
        if f.type in FLOAT_TYPES or f.type in INT_TYPES:
            out.append(_Spec(f"{path}#mean", NUMBER, _mean(raw)))
        _value_specs(f, f"{path}[0]", _first(raw), out)
        return
    if f.has_presence and f.type != "message":
        out.append(_Spec(f"{path}#present", PRESENCE,
                         lambda r: 0.0 if raw(r) is _MISSING or raw(r) is None else 1.0))
        get = raw
    elif f.oneof is not None or f.type == "message":
        get = raw  # presence is the oneof case, or the message's own #present column
    else:
        get = _defaulted(raw, _default_of(f), parent)
    _value_specs(f, path, get, out)


def _value_specs(f: FieldNode, path: str, get: Getter, out: list[_Spec]) -> None:
    """Columns of one (non-repeated) value of field f, read by `get`."""
    if f.type != "message":
        out.extend(_scalar_specs(path, f.type, get))
        return
    name = f.type_name
    is_element = path.endswith("]") or path.endswith(".value")
    if not is_element and f.oneof is None:
        out.append(_Spec(f"{path}#present", PRESENCE,
                         lambda r: 0.0 if get(r) is _MISSING or get(r) is None else 1.0))
    if name in _WRAPPERS:
        out.extend(_scalar_specs(path, _WRAPPERS[name], get))
    elif name in _TIMES:
        out.append(_Spec(path, NUMBER, lambda r: math.nan if (v := get(r)) is _MISSING else _time_seconds(v)))
    elif name in _JSONISH:
        out.append(_Spec(path, STRING, lambda r: None if (v := get(r)) is _MISSING
                         else json.dumps(v, sort_keys=True, ensure_ascii=False)))
    elif f.message is not None:
        _message_specs(f.message, path, get, out)


def _message_specs(node: MessageNode, prefix: str, get: Getter, out: list[_Spec]) -> None:
    for oneof in node.oneofs:
        members = oneof.fields
        path = f"{prefix}.{oneof.name}#case" if prefix else f"{oneof.name}#case"

        def case(r: Any, members=members) -> str:
            msg = get(r)
            if not isinstance(msg, Mapping):
                return ABSENT
            for m in members:
                if msg.get(m) is not None:
                    return m
            return "<none>"
        out.append(_Spec(path, CATEGORY, case))
    for f in node.fields:
        _field_specs(f, prefix, get, out)


def column_specs(tree: MessageNode) -> list[_Spec]:
    """The leaf columns of a schema, in tree order (at most MAX_COLUMNS)."""
    out: list[_Spec] = []
    _message_specs(tree, "", lambda r: r, out)
    return out[:MAX_COLUMNS]


def flatten(tree: MessageNode, records: Sequence[Mapping[str, Any]]) -> LeafTable:
    """Records -> LeafTable with the columns of `column_specs(tree)`."""
    columns = []
    for spec in column_specs(tree):
        values = [spec.get(r) for r in records]
        if spec.kind in NUMERIC_KINDS:
            arr = np.asarray(values, dtype=np.float64).reshape(len(records))
        else:
            arr = np.empty(len(records), dtype=object)
            arr[:] = values
        columns.append(Column(spec.name, spec.kind, arr))
    return LeafTable(tuple(columns), len(records))


# ---------------------------------------------------------------------------
# Derived string features (for the detector)
# ---------------------------------------------------------------------------

STRING_FEATURES = ("len", "digits", "letters", "upper", "spaces", "punct")


def string_features(values: np.ndarray) -> dict[str, np.ndarray]:
    """Length and the share of digits, letters, upper case, spaces and punctuation, per string.

    Why: a detector cannot use raw high-cardinality strings, but their shape (a
    street name's length, a house number's digits) is where a generator's strings
    give themselves away. Absent strings give NaN in every feature.
    """
    n = len(values)
    out = {k: np.full(n, np.nan) for k in STRING_FEATURES}
    for i, s in enumerate(values.tolist()):
        if s is None:
            continue
        length = len(s)
        out["len"][i] = length
        if length:
            out["digits"][i] = sum(ch.isdigit() for ch in s) / length
            out["letters"][i] = sum(ch.isalpha() for ch in s) / length
            out["upper"][i] = sum(ch.isupper() for ch in s) / length
            out["spaces"][i] = sum(ch.isspace() for ch in s) / length
            out["punct"][i] = sum(not ch.isalnum() and not ch.isspace() for ch in s) / length
        else:
            for k in STRING_FEATURES[1:]:
                out[k][i] = 0.0
    return out
