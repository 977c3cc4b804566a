"""Standard deviation network (appendix B.4): sigma(mu) from the embedding.

The encoder only produces an embedding, read as mu; sigma comes from 3 FC layers
and a sigmoid layer with zero weights and bias -5, so that sigma starts small
(~0.0067) and training begins close to a plain autoencoder. Multiscale VAE
(section 6) uses n of these, one per beta level.
"""
from __future__ import annotations

import torch
from torch import nn

from synth.nn.init import celu_linear


class StdNet(nn.Module):
    def __init__(self, dim: int = 128, layers: int = 3, bias_init: float = -5.0, alpha: float = 3.0):
        super().__init__()
        self.hidden = nn.Sequential(*[celu_linear(dim, dim, alpha) for _ in range(layers)])
        self.out = nn.Linear(dim, dim)
        self.bias_init = bias_init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, self.bias_init)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.hidden(mu)))  # (n, dim), in (0, 1)
