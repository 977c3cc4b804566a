"""ScalarTuple (appendix B.2): the float fields of a message, modelled jointly.

PCA whitening with a moving mean and covariance (decay 0.999, eps 1e-5) handles
strongly correlated fields (lat/lon) where batch norm would overestimate the
variances. The statistics live in float64 buffers: coordinates need more than
float32's 7 digits to survive whitening and un-whitening. Also used with k=1 as the
scalar leaf for integers modelled as numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from synth.nn.init import linear


WHITE_CAP = 1e4  # whitened values are clamped to +-1e4 standard deviations


@dataclass(frozen=True)
class ScalarTupleConfig:
    dim: int = 128
    decay: float = 0.999  # moving-average decay of the whitening statistics
    eps: float = 1e-5  # added to the covariance before the eigendecomposition


class ScalarTuple(nn.Module):
    def __init__(self, k: int, cfg: ScalarTupleConfig = ScalarTupleConfig(),
                 mean: list[float] | None = None, cov: list[list[float]] | None = None):
        super().__init__()
        self.k, self.cfg = k, cfg
        # Initialised from the training data (FitStats) when known: the paper starts
        # from scratch, which costs thousands of steps of moving-average warm-up.
        m = torch.tensor(mean, dtype=torch.float64) if mean is not None else torch.zeros(k, dtype=torch.float64)
        c = torch.tensor(cov, dtype=torch.float64) if cov is not None else torch.eye(k, dtype=torch.float64)
        self.register_buffer("mean", m.reshape(k))
        self.register_buffer("cov", c.reshape(k, k))
        self.enc = linear(k, cfg.dim)
        self.dec = linear(cfg.dim, k)

    def _basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.k, dtype=torch.float64, device=self.cov.device)
        d, u = torch.linalg.eigh(self.cov + self.cfg.eps * eye)
        return u, d.clamp_min(self.cfg.eps).sqrt()

    @torch.no_grad()
    def update_stats(self, x: torch.Tensor) -> None:
        """One moving-average step on a batch (n, k) of raw values (training only)."""
        if x.shape[0] < 2:
            return
        x = x.to(torch.float64)
        a = self.cfg.decay
        self.mean.mul_(a).add_((1 - a) * x.mean(0))
        self.cov.mul_(a).add_((1 - a) * torch.cov(x.T).reshape(self.k, self.k))

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        u, s = self._basis()
        w = ((x.to(torch.float64) - self.mean) @ u) / s
        # values far outside the training range (or beyond float32) must not poison the network
        return w.clamp(-WHITE_CAP, WHITE_CAP).to(torch.float32)  # (n, k)

    def unwhiten(self, w: torch.Tensor) -> torch.Tensor:
        u, s = self._basis()
        return (w.to(torch.float64) * s) @ u.T + self.mean  # (n, k) float64

    def encode(self, xw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.enc(xw))  # (n, dim)

    def loss(self, emb: torch.Tensor, xw: torch.Tensor) -> torch.Tensor:
        # Summed, not averaged, squared error: all k fields together weigh 1 (B.2).
        return ((self.dec(emb) - xw) ** 2).sum(1)  # (n,)

    @torch.no_grad()
    def decode(self, emb: torch.Tensor) -> torch.Tensor:
        return self.unwhiten(self.dec(emb))
