"""Categorical leaf: bool, enum and low-cardinality integer fields (softmax)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn.draws import softmax_draw
from synth.nn.init import linear


def draw(logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
    """Argmax, or a draw from softmax(logits / temperature): (n, K) -> (n,) (synth.nn.draws)."""
    return softmax_draw(logits, temperature, greedy, generator)


class Categorical(nn.Module):
    def __init__(self, n_classes: int, dim: int = 128):
        super().__init__()
        self.n_classes = n_classes
        self.enc = nn.Embedding(n_classes, dim)
        self.dec = linear(dim, n_classes)

    def encode(self, idx: torch.Tensor) -> torch.Tensor:
        return self.enc(idx)  # (n, dim)

    def loss(self, emb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.dec(emb), idx, reduction="none")  # (n,)

    @torch.no_grad()
    def decode(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return draw(self.dec(emb), temperature, greedy, generator)
