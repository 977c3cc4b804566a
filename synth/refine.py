"""Semi-amortised encoding: the encoder's posterior mean, refined on the record itself.

Why: the encoder is one network for every record, so its mean is only near the latent
that explains a given record best (the amortisation gap; Cremer et al. 2018). Streets
seen once or never in training came back as other streets of the same shape. A few
gradient steps on the record's own reconstruction loss, started from the encoder's mean
(Kim et al. 2018, semi-amortised VAEs), close most of the gap without touching the
weights, the prior or generation (docs/model.md, "Encoding").

The objective is the reconstruction part of the training loss, per field, with each
decoder fed what generation feeds it (RecordVAE.reconstruction_terms). Likelihood alone
lets one field buy another: on flights, a held-out row's delays (Gaussian heads, tens of
nats) were bought with its carrier, which then decoded wrong. So a field whose loss
rises above its value at the encoder's mean costs `guard` times the rise on top
(0: the plain likelihood). Which guard suits a schema is chosen on its validation split
(synth/train/tune_encoding.py).

Each head is scored at its leaf temperature (ModelConfig.leaf_temperatures, fitted on the
validation split: synth/train/calibrate.py), not at the spread it learnt on training rows.
A head that memorised its training rows is too sure of itself on a new record: flights'
delays head is 8x too narrow in standard deviations, so its squared residuals outweighed
every categorical field and the refinement traded the destination for them. At the
calibrated spread the destination's error on 300 validation rows fell from 0.66 to 0.10
per character (guard 0; 0.18 from the encoder's mean), with the other fields as good or
better (docs/benchmarks.md item 23).

Adam is elementwise and the loss is a sum over records, so each latent moves on its own
record's gradient alone: a record's result does not depend on what it is encoded with.
"""
from __future__ import annotations

from typing import Mapping

import torch

from synth.batch import Batch
from synth.vae import RecordVAE


def refine_latents(vae: RecordVAE, batch: Batch, mu: torch.Tensor, enc: dict[str, torch.Tensor],
                   steps: int, lr: float, guard: float,
                   leaf_temperatures: Mapping[str, float] | None = None) -> torch.Tensor:
    """Latents (B, D) after `steps` Adam steps from `mu` on each record's guarded loss, each
    head scored at its leaf temperature (ModelConfig.leaf_temperatures)."""
    if steps <= 0:
        return mu
    enc = {k: v.detach() for k, v in enc.items()}
    z = mu.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    start = None  # each field's loss at the encoder's mean: the first step's
    with torch.enable_grad():
        for _ in range(steps):
            terms = vae.reconstruction_terms(batch, z, enc, leaf_temperatures)  # (fields, B)
            if start is None:
                if not terms.requires_grad:  # nothing in the records depends on the latent
                    return mu
                start = terms.detach()
            loss = (terms + guard * torch.relu(terms - start)).sum() if guard else terms.sum()
            (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
    return z.detach()
