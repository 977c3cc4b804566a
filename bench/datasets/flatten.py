"""One flat table from a nested message, and back, for peers that take only tables.

The flattening (documented in bench/README.md):

- a scalar field is one column, named by its path with `__` between parts
  (`plane__seats`); a proto3 field without presence that is unset gets its default
  (0, "", the zero enum's name), since proto3 cannot tell the two apart; a field with
  presence (proto3 `optional`, oneof members) is None when unset;
- an enum is a categorical column holding the value's name; strings and bools are
  categorical; integers and floats are numerical;
- a singular message field `m` adds `m__present` (0/1) and its own fields' columns
  (`m__x`), None when the message is absent;
- a repeated field `r` becomes `r__n` (the count) plus `max_len` slots `r__0__x`,
  `r__1__x`, ... (a repeated scalar: `r__0`, `r__1`, ...), None past the count;
  `max_len` is the longest list in the training and validation records, so a peer can
  never make a longer one;
- maps are not supported (none of the benchmark's datasets has one).

Un-flattening reverses it: counts are rounded and clipped to [0, max_len], presence is
`> 0.5`, integers are rounded and clipped to their type's range, None/NaN means unset,
and defaults are left out as proto3 JSON does. A peer's row therefore always maps to a
well-formed record; whether it is a plausible one is what the report measures.

Pure Python: it runs in the peers' virtualenv too. `layout_of` takes the
schema tree (synth.schema.tree.MessageNode) and is only called on the project side.
"""
from __future__ import annotations

import math
from typing import Any

SEP = "__"
FLOATS = {"double", "float"}
INTS = {"int32": (-(2**31), 2**31 - 1), "sint32": (-(2**31), 2**31 - 1), "sfixed32": (-(2**31), 2**31 - 1),
        "int64": (-(2**63), 2**63 - 1), "sint64": (-(2**63), 2**63 - 1), "sfixed64": (-(2**63), 2**63 - 1),
        "uint32": (0, 2**32 - 1), "fixed32": (0, 2**32 - 1), "uint64": (0, 2**64 - 1), "fixed64": (0, 2**64 - 1)}


def _scalar_spec(f) -> dict:
    if f.type in FLOATS:
        dtype, default = "numerical", 0.0
    elif f.type in INTS:
        dtype, default = "numerical", 0
    elif f.type == "bool":
        dtype, default = "bool", False
    elif f.type == "enum":
        dtype = "categorical"
        zero = [n for n, v in zip(f.enum.names, f.enum.numbers) if v == (f.default or 0)]
        default = zero[0] if zero else f.enum.names[0]
    elif f.type == "string":
        dtype, default = "categorical", ""
    else:  # bytes
        raise NotImplementedError(f"flattening a {f.type} field ({f.path}) is not supported")
    return {"dtype": dtype, "type": f.type, "default": default,
            "presence": bool(f.has_presence or f.oneof)}


def layout_of(tree, records: list[dict], geo: tuple[str, list[str]] | None = None) -> dict:
    """The flat layout of a MessageNode; `records` fix each repeated field's max_len."""

    def node(msg, rows: list[dict]) -> dict:
        fields = []
        for f in msg.fields:
            if f.is_map:
                raise NotImplementedError(f"flattening a map field ({f.path}) is not supported")
            values = [r.get(f.name) for r in rows if isinstance(r, dict)]
            spec: dict[str, Any] = {"name": f.name}
            if f.repeated:
                lists = [v for v in values if v]
                spec["kind"] = "repeated"
                spec["max_len"] = max((len(v) for v in lists), default=0)
                items = [x for v in lists for x in v]
                if f.type == "message":
                    spec["sub"] = node(f.message, items)
                else:
                    spec.update(_scalar_spec(f))
            elif f.type == "message":
                if f.message is None:  # recursion bound: always absent
                    continue
                spec["kind"] = "message"
                spec["sub"] = node(f.message, [v for v in values if v is not None])
            else:
                spec["kind"] = "scalar"
                spec.update(_scalar_spec(f))
            fields.append(spec)
        return {"fields": fields}

    out = node(tree, records)
    out["geo"] = list(geo[1]) if geo else None
    return out


def _to_flat(value: Any, spec: dict) -> Any:
    if value is None:
        return None
    if spec["dtype"] == "numerical":
        return float(value) if spec["type"] in FLOATS else int(value)
    return value


def flatten(record: dict | None, layout: dict, prefix: str = "") -> dict:
    """One record -> one flat row (see the module doc). `record=None`: every column None."""
    row: dict[str, Any] = {}
    for spec in layout["fields"]:
        col = prefix + spec["name"]
        value = None if record is None else record.get(spec["name"])
        if spec["kind"] == "scalar":
            if value is None and record is not None and not spec["presence"]:
                value = spec["default"]
            row[col] = _to_flat(value, spec)
        elif spec["kind"] == "message":
            row[col + SEP + "present"] = None if record is None else int(value is not None)
            row.update(flatten(value, spec["sub"], col + SEP))
        else:
            items = list(value or [])
            row[col + SEP + "n"] = None if record is None else len(items)
            for i in range(spec["max_len"]):
                item = items[i] if i < len(items) else None
                slot = f"{col}{SEP}{i}"
                if "sub" in spec:
                    row.update(flatten(item, spec["sub"], slot + SEP))
                else:
                    row[slot] = _to_flat(item, spec)
    return row


def columns(layout: dict) -> dict[str, str]:
    """Column name -> 'categorical' | 'numerical' | 'bool' | 'count' | 'present', in table order."""
    out: dict[str, str] = {}

    def walk(lay: dict, prefix: str) -> None:
        for spec in lay["fields"]:
            col = prefix + spec["name"]
            if spec["kind"] == "scalar":
                out[col] = spec["dtype"]
            elif spec["kind"] == "message":
                out[col + SEP + "present"] = "present"
                walk(spec["sub"], col + SEP)
            else:
                out[col + SEP + "n"] = "count"
                for i in range(spec["max_len"]):
                    if "sub" in spec:
                        walk(spec["sub"], f"{col}{SEP}{i}{SEP}")
                    else:
                        out[f"{col}{SEP}{i}"] = spec["dtype"]

    walk(layout, "")
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _from_flat(v: Any, spec: dict) -> Any:
    """A generated cell -> a proto3 JSON value, or None for unset."""
    if _missing(v):
        return None
    if spec["dtype"] == "numerical":
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(x):
            return None
        if spec["type"] in INTS:
            lo, hi = INTS[spec["type"]]
            x = int(min(max(round(x), lo), hi))
        return x
    if spec["dtype"] == "bool":
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1", "yes")
        return bool(v)
    return str(v)


def _number(v: Any) -> float:
    if _missing(v):
        return 0.0
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def unflatten(row: dict, layout: dict, prefix: str = "") -> dict:
    """One flat row -> one record in proto3 JSON form (defaults left out)."""
    rec: dict[str, Any] = {}
    for spec in layout["fields"]:
        col = prefix + spec["name"]
        if spec["kind"] == "scalar":
            v = _from_flat(row.get(col), spec)
            if v is not None and (spec["presence"] or v != spec["default"]):
                rec[spec["name"]] = v
        elif spec["kind"] == "message":
            if _number(row.get(col + SEP + "present")) > 0.5:
                rec[spec["name"]] = unflatten(row, spec["sub"], col + SEP)
        else:
            n = int(min(max(round(_number(row.get(col + SEP + "n"))), 0), spec["max_len"]))
            items = []
            for i in range(n):
                slot = f"{col}{SEP}{i}"
                if "sub" in spec:
                    items.append(unflatten(row, spec["sub"], slot + SEP))
                else:
                    v = _from_flat(row.get(slot), spec)
                    items.append(spec["default"] if v is None else v)
            if items:
                rec[spec["name"]] = items
    return rec
