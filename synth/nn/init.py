"""The paper's initialisation (appendix B): in-degree scaled truncated normal, zero bias."""
from __future__ import annotations

import math

import torch
from torch import nn

from synth.nn import rowwise


def in_degree_(weight: torch.Tensor, fan_in: int | None = None) -> torch.Tensor:
    """N(0, 1/sqrt(fan_in)) truncated at 2 std, like tf.variance_scaling_initializer(scale=1)."""
    fan_in = fan_in or weight.shape[1]
    std = 1.0 / math.sqrt(fan_in)
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def linear(n_in: int, n_out: int) -> nn.Linear:
    layer = rowwise.Linear(n_in, n_out)
    in_degree_(layer.weight.data)
    nn.init.zeros_(layer.bias)
    return layer


class Celu(nn.Module):
    """CELU(alpha=3): its image covers 99.865% of the unit Gaussian (appendix B)."""

    def __init__(self, alpha: float = 3.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rowwise.pointwise(lambda v: nn.functional.celu(v, self.alpha), x)


def celu_linear(n_in: int, n_out: int, alpha: float = 3.0) -> nn.Sequential:
    """The default fully-connected layer of every module: linear then CELU(3)."""
    return nn.Sequential(linear(n_in, n_out), Celu(alpha))
