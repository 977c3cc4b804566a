"""Tuple (appendix B.3): a message, over its children's embeddings.

Encoder: a bidirectional GRU over the children, one distinct cell per child and
direction (the children are different things), a shared trainable initial state,
and FC 256 -> 128 over the two final states.

Decoder: FC 128 -> 128 gives the initial state; each child has its own GRU cell
and FC that emits the child's embedding. The emitted embedding is fed back
autoregressively; under scheduled sampling the child encoder's embedding (the
"ground truth") is fed instead with probability p_truth. Fixed children (conditional
sampling) are always fed their true embedding. The skew loss (emitted vs encoder
embedding) is computed by the caller, which knows the child's loss weight.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from synth.nn.gru import CeluGRUCell, GRUConfig
from synth.nn.init import celu_linear


def mix(emitted: torch.Tensor, truth: torch.Tensor | None, p_truth: float,
        generator: torch.Generator | None) -> torch.Tensor:
    """Scheduled sampling for embeddings: per row, the truth with probability p_truth."""
    if truth is None or p_truth <= 0.0:
        return emitted
    if p_truth >= 1.0:
        return truth
    keep = torch.rand(emitted.shape[0], 1, generator=generator, device=emitted.device) < p_truth
    return torch.where(keep, truth, emitted)


class Tuple(nn.Module):
    def __init__(self, n_children: int, dim: int = 128, gru: GRUConfig = GRUConfig()):
        super().__init__()
        self.n_children, self.dim = n_children, dim
        self.h0 = nn.Parameter(torch.zeros(dim))
        self.fwd = nn.ModuleList(CeluGRUCell(dim, dim, gru) for _ in range(n_children))
        self.bwd = nn.ModuleList(CeluGRUCell(dim, dim, gru) for _ in range(n_children))
        self.enc_out = celu_linear(2 * dim, dim, gru.alpha)
        self.dec_init = celu_linear(dim, dim, gru.alpha)
        self.dec_cells = nn.ModuleList(CeluGRUCell(dim, dim, gru) for _ in range(n_children))
        self.emit = nn.ModuleList(celu_linear(dim, dim, gru.alpha) for _ in range(n_children))

    def encode(self, children: list[torch.Tensor], n: int) -> torch.Tensor:
        """children: C tensors (n, dim) -> (n, dim). n is explicit: a message may have no fields."""
        hf = hb = self.h0.expand(n, -1)
        for i in range(self.n_children):
            hf = self.fwd[i](children[i], hf)
        for i in reversed(range(self.n_children)):
            hb = self.bwd[i](children[i], hb)
        return self.enc_out(torch.cat([hf, hb], dim=1))

    def start(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder state and first input for a batch of embeddings (n, dim)."""
        h = self.dec_init(emb)
        return h, torch.zeros_like(h)

    def step(self, i: int, x: torch.Tensor | None, h: torch.Tensor,
             gi: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance to child i given the previous child's embedding x, or its input projection
        gi for cell i -> (state, emitted child embedding)."""
        h = self.dec_cells[i](x, h, gi=gi)
        return h, self.emit[i](h)

    def decode(self, emb: torch.Tensor, truth: list[torch.Tensor | None] | None = None,
               p_truth: Sequence[float] | None = None, fixed: dict[int, torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """emb (n, dim) -> the C emitted child embeddings (n, dim).

        truth: encoder embeddings per child (training); p_truth: per child, the probability
        of feeding its truth (None: never); fixed: child index -> embedding that is always
        fed back (conditioning), whatever p_truth is.
        """
        p = p_truth if p_truth is not None else [0.0] * self.n_children
        h, x = self.start(emb)
        out = []
        for i in range(self.n_children):
            h, e = self.step(i, x, h)
            out.append(e)
            if fixed and i in fixed:
                x = fixed[i]
            else:
                x = mix(e, truth[i] if truth else None, p[i], generator)
        return out
