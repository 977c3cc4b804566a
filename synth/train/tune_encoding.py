"""How `encode` refines its latents, chosen on the validation split (docs/training.md).

Refinement (synth/refine.py) takes gradient steps on each record's reconstruction
loss. Plain likelihood suits a schema whose fields are all worth spending the latent
on (Vermont: held-out streets 0.36 -> 0.13 Levenshtein per character); where noisy
numbers dominate the loss it trades categories away (flights: carriers wrong in 3.5%
-> 11% of held-out rows), and the guard that stops any field's loss from rising fixes
that but holds Vermont's streets back (0.23). So the choice is the data's:

Candidates: no refinement (the encoder's mean), then the configured step count at
each of `tune.encoding_guards`. Each encodes, and greedily decodes, the same
`tune.encoding_records` validation records; the lowest mean reconstruction error over
the schema's leaf columns wins (synth/eval/reconstruction.py), earlier candidates
winning ties within ERROR_TIE. The winner is written into the model config, so the
artifact's `encode` uses it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from synth.train.candidates import score_in_turn
from synth.train.config import TuneConfig

ERROR_TIE = 1e-3  # mean errors closer than this are a tie (the cheaper candidate wins)


def choose_encoding(model: Any, val: Sequence[Any], cfg: TuneConfig, deadline: float) -> dict[str, Any]:
    """Choose `encode_refine_steps` (0 or the configured count) and `encode_refine_guard`."""
    from synth.eval.reconstruction import mean_error, reconstruction_by_column
    from synth.records import to_dict

    original = model.config
    if original.encode_refine_steps == 0:
        return {"skipped": "encode_refine_steps is 0 (refinement off)"}
    rows = list(val[: cfg.encoding_records])
    real = [to_dict(m) for m in rows]
    grid = [{"encode_refine_steps": 0, "encode_refine_guard": original.encode_refine_guard}] + [
        {"encode_refine_steps": original.encode_refine_steps, "encode_refine_guard": g} for g in cfg.encoding_guards]

    def score() -> dict[str, Any]:
        decoded = [to_dict(m) for m in model.reconstruct(rows)]
        return {"mean_error": round(mean_error(reconstruction_by_column(model.tree, real, decoded)), 5)}

    scored, skipped = score_in_turn(model, grid, deadline, score)
    best = scored[0]
    for r in scored[1:]:
        if r["mean_error"] < best["mean_error"] - ERROR_TIE:
            best = r
    chosen = {k: best[k] for k in ("encode_refine_steps", "encode_refine_guard")}
    model.config = dataclasses.replace(original, **chosen)
    return {"chosen": chosen,
            "objective": "min mean reconstruction error over leaf columns (synth/eval/reconstruction.py); "
                         f"ties within {ERROR_TIE} to the earlier candidate",
            "records": len(rows), "candidates": scored, "not_evaluated_budget": skipped}
