"""Presence bit for fields that can be absent (proto2 optional, proto3 `optional`, messages).

Encoder: the child's embedding where present, a learned "absent" embedding elsewhere.
Decoder: a logit for "present"; the child decodes only the rows predicted (or known)
present, from the same embedding the parent emitted.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn import rowwise
from synth.nn.calibration import sigmoid_temperature
from synth.nn.draws import uniform


class Presence(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()
        self.absent = nn.Parameter(torch.zeros(dim))
        self.head = rowwise.Linear(dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def encode(self, present: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
        """present (n,) bool, child (n_present, dim) -> (n, dim)."""
        out = self.absent.expand(present.shape[0], -1).clone()
        out[present] = child.to(out.dtype)  # (dtypes differ under autocast)
        return out

    def loss(self, emb: torch.Tensor, present: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.head(emb)[:, 0] / temperature, present.float(),
                                                  reduction="none")

    @torch.no_grad()
    def calibrated_temperature(self, emb: torch.Tensor, present: torch.Tensor) -> float:
        """The temperature (>= 1) that fits held-out embeddings and presence bits best (synth.nn.calibration)."""
        return sigmoid_temperature(self.head(emb)[:, 0], present)

    @torch.no_grad()
    def decide(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator=None) -> torch.Tensor:
        logit = self.head(emb)[:, 0]
        if greedy:
            return logit > 0
        p = rowwise.pointwise(torch.sigmoid, logit / max(temperature, 1e-6))
        return uniform(generator, p.shape[0], p.device) < p
