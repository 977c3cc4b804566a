"""Scoring settings candidates in turn within a wall-time cap (the tuner's grids)."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence


def score_in_turn(model: Any, candidates: Sequence[dict[str, Any]], deadline: float,
                  score: Callable[[], dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score each candidate (model config fields -> values) with the model's config set to it.

    The config is restored after each. Once a candidate as slow as the slowest so far
    would pass `deadline`, the rest are skipped; the first is always scored, so the
    configured values (put first by the callers) are never left unscored.
    -> (rows: the candidate, its scores and `wall_s`; the skipped candidates).
    """
    original = model.config
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for values in candidates:
        cost = max((r["wall_s"] for r in rows), default=0.0)
        if rows and time.time() + cost > deadline:
            skipped.append(dict(values))
            continue
        t = time.time()
        model.config = dataclasses.replace(original, **values)
        try:
            scores = score()
        finally:
            model.config = original
        rows.append({**values, **scores, "wall_s": round(time.time() - t, 2)})
    return rows, skipped
