"""Bounded work per request: what a record or a `where` may hold before any model work starts.

A string leaf costs one character-RNN step per byte, and conditioning on it costs
that again per sample, so one long value in a small request could hold a worker
(and its memory) for minutes. Each string field therefore gets a cap of a small
multiple of the longest value the model generates (itself derived from the longest
value seen in training), never more than `Limits.max_string_bytes`. Numbers must be
finite and lie within `Limits.number_range_sigmas` standard deviations of the
training data (the ScalarTuple's raw moments: its running whitening statistics, paper
appendix B.1, or the training data's under the number transform).
A value out of bounds is InvalidArgument (400 / INVALID_ARGUMENT) naming its field.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from synth.errors import InvalidArgument, Violation
from synth.plan import NumberNode, ScalarsNode, StringNode, walk

STRING_CAP_MULTIPLE = 4  # x the generation cap (1.5 x the longest training value)
MIN_STRING_CAP = 64  # bytes: short-valued fields still take any reasonable value
MIN_HALF_WIDTH = 1.0  # numbers: the range never shrinks below +-1 around the mean


@dataclass(frozen=True)
class InputBounds:
    """Per field path (dotted, as in `where`): the byte cap of strings and the range of numbers."""

    string_caps: dict[str, int]
    number_ranges: dict[str, tuple[float, float]]
    default_string_cap: int

    @classmethod
    def of(cls, model: Any, max_string_bytes: int, sigmas: float) -> "InputBounds":
        caps: dict[str, int] = {}
        ranges: dict[str, tuple[float, float]] = {}
        for node in walk(model.vae.plan):
            if isinstance(node, StringNode):
                cap = max(MIN_STRING_CAP, STRING_CAP_MULTIPLE * node.max_len)
                caps[_clean(node.path)] = min(max_string_bytes, cap)
            elif isinstance(node, (ScalarsNode, NumberNode)):
                ranges.update(_ranges(model, node, sigmas))
        return cls(caps, ranges, max_string_bytes)

    def check_where(self, where: Mapping[str, Any]) -> None:
        problems = [v for path, value in where.items() for v in self._check(f"where.{path}", _clean(path), value)]
        _raise(problems, "where")

    def check_record(self, record: Mapping[str, Any], where: str) -> None:
        problems = [v for path, value in _leaves(record, "") for v in self._check(f"{where}.{path}", path, value)]
        _raise(problems, where)

    def _check(self, label: str, path: str, value: Any) -> list[Violation]:
        if isinstance(value, str) and path in self.number_ranges:
            try:  # proto3 JSON writes NaN and infinities as strings
                value = float(value)
            except ValueError:
                return [Violation(label, "expected a number")]
        if isinstance(value, str):
            cap = self.string_caps.get(path, self.default_string_cap)
            size = len(value.encode("utf-8", "surrogatepass"))
            if size > cap:
                return [Violation(label, f"{size} bytes; at most {cap} for this field")]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            x = float(value)
            if not math.isfinite(x):
                return [Violation(label, "must be a finite number")]
            lo, hi = self.number_ranges.get(path, (-math.inf, math.inf))
            if not lo <= x <= hi:
                return [Violation(label, f"{x:g} is outside the range this model knows, [{lo:.6g}, {hi:.6g}]")]
        return []


def _ranges(model: Any, node: Any, sigmas: float) -> dict[str, tuple[float, float]]:
    module = model.vae.module_for(node)
    if not hasattr(module, "raw_moments"):
        return {}
    mean, cov = module.raw_moments()
    if isinstance(node, ScalarsNode):  # path `<message>.#floats`: the fields are its members
        parent = _clean(node.path)
        keys = [f"{parent}.{f.name}" if parent else f.name for f in node.fields]
    else:
        keys = [_clean(node.path)]
    mean, cov = mean.reshape(-1), cov.reshape(len(keys), len(keys))
    out = {}
    for i, key in enumerate(keys):
        half = max(MIN_HALF_WIDTH, sigmas * math.sqrt(max(float(cov[i, i]), 0.0)))
        out[key] = (float(mean[i]) - half, float(mean[i]) + half)
    return out


def _clean(path: str) -> str:
    """Plan paths carry markers (`#floats`, `city#other`, `[]`); `where` and records use plain dotted
    field paths."""
    parts = (p.split("#", 1)[0].replace("[]", "") for p in path.split("."))
    return ".".join(p for p in parts if p)


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v, path)
    else:
        yield path, value


def _raise(problems: list[Violation], where: str) -> None:
    if problems:
        raise InvalidArgument(f"{where}: {len(problems)} value(s) out of bounds for this model", problems[:20])
