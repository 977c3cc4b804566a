"""Memorization: how much of the generated output is copied from the training data.

Why: a generator that replays its training rows scores perfectly on the p-value
(BENCHMARK.md) while being useless, and a privacy risk, as a synthesizer. So the
benchmark also reports the share of generated street names seen in training (good
when high, but not 1) and the share of generated rows that copy a training row
exactly (good when small).

Values are compared in a canonical, hashable form that is exact: floats by their
bit pattern (`float.hex`, so 0.0 and -0.0 differ and NaN equals NaN), and types are
kept apart (1, 1.0, True and "1" are four different values). Repeated fields (lists)
become tuples and nested messages (dicts) become sorted item tuples.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from synth.errors import InvalidArgument

_MISSING = ("missing",)
"""Canonical form of an absent field; no canonical value has this shape."""


def canonical(value: Any) -> Hashable:
    """An exact, hashable, type-tagged form of a decoded field value."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", float.hex(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, Mapping):
        return ("msg", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(v) for v in value))
    if hasattr(value, "item"):  # numpy scalar -> the Python scalar it stores
        return canonical(value.item())
    raise InvalidArgument(f"cannot compare values of type {type(value).__name__}: {value!r}")


def _record_key(record: Mapping[str, Any], fields: Sequence[str] | None) -> Hashable:
    if fields is None:  # all keys present; two records match only with the same key set
        return canonical(record)
    return tuple(canonical(record[f]) if f in record else _MISSING for f in fields)


def copied_share(generated_values: Iterable[Any], training_values: Iterable[Any]) -> float:
    """Share of generated values that occur in the training values; NaN for none."""
    seen = {canonical(v) for v in training_values}
    generated = [canonical(v) for v in generated_values]
    if not generated:
        return math.nan
    return sum(g in seen for g in generated) / len(generated)


def record_copy_share(
    generated_records: Iterable[Mapping[str, Any]],
    training_records: Iterable[Mapping[str, Any]],
    fields: Sequence[str] | None = None,
) -> float:
    """Share of generated records equal to some training record on `fields`; NaN for none.

    With `fields=None` records are compared on all their keys (the union of both
    records' keys: a key present in one and absent in the other is a difference).
    With `fields` given, a field absent from both records counts as equal.
    """
    fields = None if fields is None else tuple(fields)
    seen = {_record_key(r, fields) for r in training_records}
    generated = [_record_key(r, fields) for r in generated_records]
    if not generated:
        return math.nan
    return sum(g in seen for g in generated) / len(generated)
