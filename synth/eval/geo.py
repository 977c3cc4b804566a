"""The paper's p-value for a (group field, numeric fields) triple, with its calibration.

Why: Chou & Hathi 2019 (section 2.2) score coordinates by their plausibility for the
record's zip code (pvalue.py). Its mean alone rewards coordinates with too little
spread (every point at the zip's centre gets p = 1), so next to it we report the
calibration against real rows: P(p < 0.05), which is about 0.05 for real held-out
rows (0.063 on Vermont, /work/shared/docs/BENCHMARK.md), and the KS distance between
the generated p-values and the held-out rows' p-values (0 = calibrated like real
data). The triple is configurable (`--geo postcode,lat,lon`); it is chosen
automatically for the address schema. Field names may be dotted paths (`home.lat`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from synth.errors import InvalidArgument
from synth.eval.fidelity import ks_statistic
from synth.eval.pvalue import ADDRESS_CATEGORY, ADDRESS_NUMERIC, fit_group_stats, pvalues
from synth.schema.tree import FLOAT_TYPES, INT_TYPES, MessageNode

Geo = tuple[str, list[str]]
HIST_BINS = 20


def parse_geo(text: str) -> Geo:
    """`postcode,lat,lon` -> ("postcode", ["lat", "lon"])."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) < 2:
        raise InvalidArgument(f"--geo needs a group field and at least one numeric field, e.g. "
                              f"'postcode,lat,lon'; got {text!r}")
    return parts[0], parts[1:]


def _field_at(tree: MessageNode, path: str):
    node, f = tree, None
    for part in path.split("."):
        if node is None:
            return None
        try:
            f = node.field(part)
        except KeyError:
            return None
        node = f.message
    return f


def check_geo(tree: MessageNode, geo: Geo) -> Geo:
    """The triple, after checking the fields exist with usable types (singular)."""
    group, numeric = geo
    g = _field_at(tree, group)
    if g is None or g.repeated or g.type not in ("string", "enum", *INT_TYPES):
        raise InvalidArgument(f"geo group field {group!r} must be a singular string, enum or integer "
                              f"field of {tree.full_name}")
    for name in numeric:
        f = _field_at(tree, name)
        if f is None or f.repeated or f.type not in FLOAT_TYPES | INT_TYPES:
            raise InvalidArgument(f"geo numeric field {name!r} must be a singular number field of "
                                  f"{tree.full_name}")
    return group, list(numeric)


def default_geo(tree: MessageNode) -> Geo | None:
    """(postcode, [lat, lon]) when the schema has those top-level fields, else None."""
    try:
        return check_geo(tree, (ADDRESS_CATEGORY, list(ADDRESS_NUMERIC)))
    except InvalidArgument:
        return None


def _pluck(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> Any:
    if isinstance(value, str):  # 64-bit ints are strings in the JSON mapping
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _flat(records: Sequence[Mapping[str, Any]], group: str, numeric: list[str]) -> list[dict]:
    return [{"g": _pluck(r, group), **{f"x{i}": _number(_pluck(r, n)) for i, n in enumerate(numeric)}}
            for r in records]


def pvalue_arrays(reference: Sequence[Mapping[str, Any]], tables: list[Sequence[Mapping[str, Any]]],
                  geo: Geo) -> tuple[list[np.ndarray], list[dict]]:
    """p-values of each record set against per-group Gaussians fitted on `reference`."""
    group, numeric = geo
    keys = [f"x{i}" for i in range(len(numeric))]
    stats = fit_group_stats(_flat(reference, group, numeric), "g", keys)
    reports = [pvalues(_flat(t, group, numeric), stats) for t in tables]
    return [r.values for r in reports], [r.to_dict() for r in reports]


def _summary(values: np.ndarray, base: dict) -> dict[str, Any]:
    hist, _ = np.histogram(values, bins=HIST_BINS, range=(0.0, 1.0))
    return {**base, "p_below_0_05": float(np.mean(values < 0.05)) if len(values) else math.nan,
            "histogram": hist.tolist()}


def geo_section(reference: Sequence[Mapping[str, Any]], generated: Sequence[Mapping[str, Any]],
                real: Sequence[Mapping[str, Any]], geo: Geo, fitted_on: str) -> dict[str, Any]:
    """p-value summary of generated and real rows, P(p < 0.05) and the KS distance between them.

    `reference` is what the per-group Gaussians are fitted on: the training rows when
    given (`fitted_on="train"`), else the held-out rows themselves (`"data"`, and then
    the real rows' figures are in-sample, so slightly optimistic).
    """
    (pg, pr), (sg, sr) = pvalue_arrays(reference, [generated, real], geo)
    return {
        "category": geo[0], "numeric": list(geo[1]), "fitted_on": fitted_on,
        "generated": _summary(pg, sg),
        "real": _summary(pr, sr),
        "ks_vs_real": ks_statistic(pg, pr),
    }
