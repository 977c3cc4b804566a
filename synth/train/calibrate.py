"""Leaf temperatures: each decoder head widened to what the validation split supports.

After training, the validation records go through the model once in the regime the run
ended in (scheduled sampling's fed-back draws, latents drawn from the posteriors), and
every categorical, number, presence and oneof head fits one temperature to their
likelihood (synth.nn.calibration): the t in softmax(logits / t) of a softmax or sigmoid,
the variance multiplier of a Gaussian. Only widening is kept (t >= 1). The result goes
into `ModelConfig.leaf_temperatures`, which multiplies `sample_temperature` for that
module's draws; the global temperatures are then chosen on top of it (synth/train/tune.py).
The sequence stop bits and the character RNNs are not calibrated: they decide inside
their step loops.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import torch

from synth.train.config import TrainConfig
from synth.train.schedules import p_truth
from synth.vae import DecodeOptions

MIN_ROWS = 20  # a head seen fewer times on the validation split keeps temperature 1


class Regime(NamedTuple):
    """P(feed the truth) of each decoder at the end of a run: what it was last trained on."""

    p_truth_tuple: float
    p_truth_string: float
    p_truth_leaf: float | None = None  # a Tuple's leaf children; None: p_truth_tuple's


def end_regime(cfg: TrainConfig, reencodes: bool = False) -> Regime:
    """The regime at the end of a run of `cfg` (scheduled sampling has finished its warm-up
    by then); `reencodes`: the model's generation feeds back re-encoded leaf values."""
    return Regime(p_truth(cfg.tuple_sampling, 1.0, 1.0), p_truth(cfg.string_sampling, 1.0, 1.0),
                  p_truth(cfg.leaf_mode(reencodes), 1.0, 1.0))


@torch.no_grad()
def calibrate_leaves(model: Any, val: Sequence[Any], regime: Regime, seed: int) -> dict[str, Any]:
    """Fit the leaf temperatures on the validation messages `val`; update `model`; return the record."""
    heads: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    g = torch.Generator(device=model.device).manual_seed(seed)
    opts = DecodeOptions(regime.p_truth_tuple, regime.p_truth_string, p_truth_leaf=regime.p_truth_leaf,
                         sample_latent=True, generator=g, heads=heads)
    was_training = model.vae.training
    model.vae.eval()
    try:
        for i in range(0, len(val), model.chunk):
            model.vae(model.codec.encode(list(val[i: i + model.chunk])), opts)
    finally:
        model.vae.train(was_training)
    fitted: dict[str, float] = {}
    for key, pairs in heads.items():
        emb, target = torch.cat([e for e, _ in pairs]), torch.cat([t for _, t in pairs])
        if len(target) >= MIN_ROWS:
            fitted[key] = round(model.vae.nodes[key].calibrated_temperature(emb, target), 4)
    chosen = {k: t for k, t in sorted(fitted.items()) if t > 1.0}
    model.config = dataclasses.replace(model.config, leaf_temperatures=chosen)
    return {"chosen": chosen, "fitted": dict(sorted(fitted.items())), "heads": len(fitted),
            "regime": regime._asdict(),
            "criterion": "validation likelihood per head (temperature scaling), widening only (t >= 1)"}
