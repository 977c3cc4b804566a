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

from synth.nn import rowwise
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

    def input_table(self, embedding: torch.Tensor) -> torch.Tensor:
        """The input projection of every row of an embedding table (V, 3H): generation looks
        a symbol's projection up instead of multiplying its embedding again at every step.
        Kept until a weight changes (training steps bump the parameters' versions)."""
        key = tuple((t.data_ptr(), t._version) for t in (embedding, self.weight_ih, self.bias_ih))
        cached = getattr(self, "_table", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, F.linear(embedding, self.weight_ih, self.bias_ih))
            self._table = cached
        return cached[1]

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input projection (n, 3H) that `forward` takes as `gi`."""
        return rowwise.linear(x, self.weight_ih, self.bias_ih)

    def candidate(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.candidate == "tanh":
            return rowwise.pointwise(torch.tanh, x)
        return rowwise.pointwise(lambda v: F.celu(v, self.cfg.alpha), x).clamp(max=self.cfg.cap)

    def forward(self, x: torch.Tensor | None, h: torch.Tensor, gi: torch.Tensor | None = None) -> torch.Tensor:
        """gi: the input projection (n, 3H), when the caller has it already (a lookup table
        of projected symbol embeddings, `input_table`); x is then unused."""
        if gi is None:
            gi = self.project_input(x)  # (n, 3H)
        gh = rowwise.linear(h, self.weight_hh, self.bias_hh)  # (n, 3H)
        H = self.hidden_size
        # split, not slices: a slice's backward allocates and zeroes the whole (n, 3H)
        # gradient for each part, a split's concatenates the parts' gradients once
        gi_rz, gi_n = gi.split([2 * H, H], 1)
        gh_rz, gh_n = gh.split([2 * H, H], 1)
        # r and z in one kernel call: fewer passes over the batch than two sigmoids
        r, z = rowwise.pointwise(torch.sigmoid, gi_rz + gh_rz).split(H, 1)
        n = self.candidate(gi_n + r * gh_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h
