"""Categorical leaf: bool, enum and closed-vocabulary string and integer fields (softmax).

A categorical int may also know its classes' numbers (`values`). Then each class's
embedding and logit get a smooth function of the value as well: Fourier features of its
place in the value range, mapped by a learnt linear layer. Why: an HHMM time, a distance
or a flight number has hundreds of classes, each seen a few times, and with independent
classes the decoder cannot learn that an arrival comes about two hours after its
departure, or that a carrier's flight numbers lie in one range (docs/benchmarks.md,
flights). With the features, neighbouring values share what is learnt, while draws still
come from the vocabulary. The escape class ("other") has no value: its features are 0.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn import rowwise
from synth.nn.calibration import softmax_temperature
from synth.nn.draws import softmax_draw
from synth.nn.init import in_degree_, linear

# Frequencies of the value features: the finest resolves about 1/(2 * FREQUENCIES) of the range
FREQUENCIES = 32


def value_features(values: Sequence[float], n_classes: int, frequencies: int = FREQUENCIES) -> torch.Tensor:
    """(n_classes, 1 + 2 * frequencies): the position u in [0, 1] of each class's value in
    the range (centred), then cos and sin of pi * k * u for k = 1..frequencies, scaled by
    1/sqrt(width); zero rows for classes without a value (the escape)."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    span = float(v.max() - v.min()) if len(v) else 0.0
    u = (v - v.min()) / span if span > 0 else torch.zeros_like(v)
    k = torch.arange(1, frequencies + 1, dtype=torch.float64)
    angle = math.pi * u.unsqueeze(1) * k
    rows = torch.cat([(u - 0.5).unsqueeze(1), torch.cos(angle), torch.sin(angle)], 1)
    out = torch.zeros(n_classes, rows.shape[1], dtype=torch.float64)
    out[: len(v)] = rows / math.sqrt(rows.shape[1])  # rows of norm ~1: the value terms start small
    return out.float()


def draw(logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
    """Argmax, or a draw from softmax(logits / temperature): (n, K) -> (n,) (synth.nn.draws)."""
    return softmax_draw(logits, temperature, greedy, generator)


class Categorical(nn.Module):
    def __init__(self, n_classes: int, dim: int = 128, values: Sequence[float] | None = None):
        super().__init__()
        self.n_classes = n_classes
        self.enc = nn.Embedding(n_classes, dim)
        self.dec = linear(dim, n_classes)
        self.numeric = values is not None
        if self.numeric:
            # derived from the values (in the plan), so not part of the state dict
            self.register_buffer("features", value_features(values, n_classes), persistent=False)
            n_features = self.features.shape[1]
            self.enc_value = nn.Linear(n_features, dim, bias=False)
            in_degree_(self.enc_value.weight.data)
            self.dec_value = linear(dim, n_features)

    def _table(self) -> torch.Tensor:
        """The class embeddings (n_classes, dim)."""
        if not self.numeric:
            return self.enc.weight
        return self.enc.weight + self.enc_value(self.features)

    def _logits(self, emb: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The class logits times `scale` (n, n_classes)."""
        if not self.numeric:
            if scale == 1.0:
                return self.dec(emb)
            weight, bias = self.dec.weight, self.dec.bias
        else:
            # the value term folded into the output layer: one product per call, as without it
            weight = self.dec.weight + self.features @ self.dec_value.weight
            bias = self.dec.bias + self.features @ self.dec_value.bias
        if scale != 1.0:
            # scaling the (n, dim) input, not the (n, n_classes) output: a street head's
            # logits are 4,564 wide, a pass over them cost 4% of sampling
            emb, bias = emb * scale, bias * scale
        return rowwise.linear(emb, weight, bias)

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.numeric:
            return self.enc(idx)  # (n, dim)
        return F.embedding(idx, self._table())

    def loss(self, emb: torch.Tensor, idx: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return F.cross_entropy(self._logits(emb, 1.0 / temperature), idx, reduction="none")  # (n,)

    @torch.no_grad()
    def calibrated_temperature(self, emb: torch.Tensor, idx: torch.Tensor) -> float:
        """The temperature (>= 1) that fits held-out embeddings and targets best (synth.nn.calibration)."""
        return softmax_temperature(self._logits(emb), idx)

    @torch.no_grad()
    def decode(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator: torch.Generator | None = None, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Class indices (n,); `allowed`: (n, n_classes) bool, the classes each row may take."""
        logits = self._logits(emb) if greedy else self._logits(emb, 1.0 / max(temperature, 1e-6))
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        return draw(logits, 1.0, greedy, generator)
