"""Oneof: a categorical case selector plus the chosen case's child.

Encoder: a learned embedding of the case (K cases + "none") plus the chosen child's
embedding. Decoder: a softmax over the cases and, per case, an FC that emits that
child's embedding (compared with the child encoder's by a skew loss, as in Tuple).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn.calibration import softmax_temperature
from synth.nn.categorical import draw
from synth.nn.init import celu_linear, linear


class Oneof(nn.Module):
    def __init__(self, n_cases: int, dim: int = 128, alpha: float = 3.0):
        super().__init__()
        self.n_cases = n_cases
        self.case_embed = nn.Embedding(n_cases + 1, dim)  # index 0 = not set
        self.selector = linear(dim, n_cases + 1)
        self.emit = nn.ModuleList(celu_linear(dim, dim, alpha) for _ in range(n_cases))

    def encode(self, case: torch.Tensor, children: list[torch.Tensor]) -> torch.Tensor:
        """case (n,) in -1..K-1; children[k] (n_k, dim) for the rows with case k."""
        out = self.case_embed(case + 1)
        for k, child in enumerate(children):
            rows = (case == k).nonzero()[:, 0]
            out = out.index_add(0, rows, child.to(out.dtype))  # (dtypes differ under autocast)
        return out

    def loss(self, emb: torch.Tensor, case: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return F.cross_entropy(self.selector(emb) / temperature, case + 1, reduction="none")

    @torch.no_grad()
    def calibrated_temperature(self, emb: torch.Tensor, case: torch.Tensor) -> float:
        """The temperature (>= 1) that fits held-out embeddings and cases best (synth.nn.calibration)."""
        return softmax_temperature(self.selector(emb), case + 1)

    @torch.no_grad()
    def choose(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator: torch.Generator | None = None, blocked: list[int] = ()) -> torch.Tensor:
        """Case per row (-1 = unset); `blocked` cases (past the recursion bound) are never chosen."""
        logits = self.selector(emb)
        if blocked:
            logits = logits.index_fill(1, torch.tensor([k + 1 for k in blocked], device=emb.device), float("-inf"))
        return draw(logits, temperature, greedy, generator) - 1
