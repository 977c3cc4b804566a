"""The CELU-capped GRU cell of appendix B.1.

Identical to `torch.nn.GRUCell` (same parameter layout: `weight_ih` (3H, in), gates
r|z|n, and the same placement of the reset gate) except that the candidate
activation is min(celu(x, 3), 6) instead of tanh: CELU matches the Gaussian latent
better, and the cap stops the state from blowing up. The update gate starts with
zero weights and bias 1 so that the cell is not forgetful from the beginning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn.init import in_degree_


@dataclass(frozen=True)
class GRUConfig:
    alpha: float = 3.0  # CELU alpha
    cap: float = 6.0  # candidate activation is capped like ReLU6
    candidate: str = "celu"  # "celu" (paper) or "tanh" (plain GRU; used by the twin test)


class CeluGRUCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, cfg: GRUConfig = GRUConfig()):
        super().__init__()
        self.input_size, self.hidden_size, self.cfg = input_size, hidden_size, cfg
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        fan_in = self.input_size + H  # the gates see [x; h]
        with torch.no_grad():
            in_degree_(self.weight_ih, fan_in)
            in_degree_(self.weight_hh, fan_in)
            self.bias_ih.zero_()
            self.bias_hh.zero_()
            # update gate z (the middle third): zero weights, bias 1
            self.weight_ih[H : 2 * H].zero_()
            self.weight_hh[H : 2 * H].zero_()
            self.bias_ih[H : 2 * H].fill_(1.0)

    def candidate(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.candidate == "tanh":
            return torch.tanh(x)
        return F.celu(x, self.cfg.alpha).clamp(max=self.cfg.cap)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi = F.linear(x, self.weight_ih, self.bias_ih)  # (n, 3H)
        gh = F.linear(h, self.weight_hh, self.bias_hh)  # (n, 3H)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = self.candidate(i_n + r * h_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h
