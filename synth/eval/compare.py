"""Compare generated records with real ones, for any schema and any generator (docs/evaluation.md).

Why: `compare_records` is the model-free half of `synth evaluate`. It needs only the
schema tree and plain records, so the benchmark scores peer systems (SDV,
mostlyai) with exactly the figures it scores protosynth with. Every figure comes
with its floor when training rows are given: the same figure for held-out real rows,
which is what a perfect generator would score on this much data.

Record sets: `real` is held-out real data (never trained on), `generated` the
synthesizer's output, `train` the rows it was trained on. Without `train`, the
sections that need it (copies, DCR, pairs found, the floor) say so instead.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from synth.eval.binning import fit_binning
from synth.eval.detection import detection_auc, detection_floor
from synth.eval.features import LeafTable, flatten
from synth.eval.fidelity import association, marginals, summarize_marginals
from synth.eval.geo import check_geo, default_geo, geo_section
from synth.eval.pairs import choose_pairs, pairs_section
from synth.eval.privacy import dcr_floor, dcr_paired, dcr_share, exact_copy_share
from synth.schema.tree import MessageNode

NEEDS_TRAIN = {"needs": "--train (the training rows)"}

TOP_LEVEL_KEYS = ("rows", "columns", "summary", "marginals", "fidelity", "association", "detection",
                  "privacy", "pairs", "geo", "floor", "seed", "wall_s")
"""The keys of compare_records' result, in order (the contract bench/quality.py reads)."""


def _clean(x: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python: strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def compare_records(tree: MessageNode, real: Sequence[dict], generated: Sequence[dict],
                    train: Sequence[dict] | None = None, *, seed: int = 0,
                    geo: tuple[str, list[str]] | None = None) -> dict:
    """Fidelity, detection, privacy and geo figures of `generated` against real records, as JSON-able dict.

    tree: the schema (synth.schema.tree.build_tree of the message descriptor).
    real: held-out real records; generated: synthetic records; train: the training
    records (for copies, DCR, pairs found and the floor). Records are dicts in the
    proto3 JSON mapping with proto field names. geo: (group field, numeric fields)
    for the paper's p-value; default: (postcode, [lat, lon]) when the schema has them.
    Deterministic given `seed`. Top-level keys: TOP_LEVEL_KEYS.
    """
    t0 = time.time()
    timings: dict[str, float] = {}

    def lap(name: str, start: float) -> float:
        now = time.time()
        timings[name] = round(now - start, 2)
        return now

    geo = check_geo(tree, (geo[0], list(geo[1]))) if geo else default_geo(tree)
    t = time.time()
    rt, gt = flatten(tree, real), flatten(tree, generated)
    tt: LeafTable | None = flatten(tree, train) if train is not None else None
    t = lap("flatten", t)

    out: dict[str, Any] = {
        "rows": {"real": rt.n_rows, "generated": gt.n_rows, "train": tt.n_rows if tt else None},
        "columns": [{"name": c.name, "kind": c.kind} for c in rt.columns],
    }
    entries = marginals(rt, gt)
    out["marginals"] = entries
    out["fidelity"] = summarize_marginals(entries)
    assoc = association(rt, gt, [fit_binning(c) for c in rt.columns])
    out["association"] = assoc
    t = lap("fidelity", t)
    out["detection"] = detection_auc(rt, gt, seed=seed)
    t = lap("detection", t)

    floor: dict[str, Any] = dict(NEEDS_TRAIN)
    if tt is not None and tt.n_rows:
        out["privacy"] = {"copies": exact_copy_share(gt, tt), "dcr": dcr_share(gt, tt, rt, seed=seed)}
        t = lap("privacy", t)
        pairs = choose_pairs(rt, assoc, geo[0] if geo else None)
        out["pairs"] = pairs_section(tt, gt, rt, pairs)
        floor = {"detection": detection_floor(tt, rt, seed=seed),
                 "privacy": {"copies": exact_copy_share(rt, tt), "dcr": dcr_floor(tt, rt, seed=seed)}}
        t = lap("floor", t)
        out["privacy"]["dcr_paired"] = dcr_paired(gt, tt, rt, seed=seed, shares=[out["privacy"]["dcr"]],
                                                  floors=[floor["privacy"]["dcr"]["share"]])
        t = lap("dcr_paired", t)
    else:
        out["privacy"] = dict(NEEDS_TRAIN)
        out["pairs"] = dict(NEEDS_TRAIN)
    if geo:
        reference = train if tt is not None and tt.n_rows else real
        out["geo"] = geo_section(reference, generated, real, geo, "train" if reference is train else "data")
        t = lap("geo", t)
    else:
        out["geo"] = None
    out["floor"] = floor
    out["summary"] = summary(out)
    out["seed"] = seed
    timings["total"] = round(time.time() - t0, 2)
    out["wall_s"] = timings
    return _clean({k: out[k] for k in TOP_LEVEL_KEYS})


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def summary(r: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a comparison, flat, each next to its ideal or floor."""
    f = r["fidelity"]
    return {
        "detection_auc": _get(r, "detection", "auc"),
        "detection_auc_floor": _get(r, "floor", "detection", "auc"),
        "mean_tv": _get(f, "tv", "mean"),
        "max_tv": _get(f, "tv", "max"),
        "worst_tv_column": _get(f, "tv", "worst_column"),
        "mean_ks": _get(f, "ks", "mean"),
        "max_ks": _get(f, "ks", "max"),
        "worst_ks_column": _get(f, "ks", "worst_column"),
        "association_mean_abs_diff": _get(r, "association", "mean_abs_diff"),
        "copies": _get(r, "privacy", "copies"),
        "copies_floor": _get(r, "floor", "privacy", "copies"),
        "dcr_share": _get(r, "privacy", "dcr", "share"),
        "dcr_share_floor": _get(r, "floor", "privacy", "dcr", "share"),
        "dcr_excess": _get(r, "privacy", "dcr_paired", "excess_mean"),
        "dcr_excess_sd": _get(r, "privacy", "dcr_paired", "excess_sd"),
        "p_mean": _get(r, "geo", "generated", "mean"),
        "p_mean_real": _get(r, "geo", "real", "mean"),
        "p_median": _get(r, "geo", "generated", "median"),
        "p_below_0_05": _get(r, "geo", "generated", "p_below_0_05"),
        "p_below_0_05_real": _get(r, "geo", "real", "p_below_0_05"),
        "p_ks_vs_real": _get(r, "geo", "ks_vs_real"),
    }
