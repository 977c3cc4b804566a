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
    # "mse": the paper's point prediction (squared error; decoding is deterministic).
    # "gaussian": the decoder also predicts a full covariance (Cholesky factor) in whitened
    # space; the loss is the Gaussian NLL and generation samples from it, so the spread of
    # generated values given the latent and the preceding fields is learned, not zero.
    likelihood: str = "mse"


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
        if cfg.likelihood == "gaussian":
            self.scale = linear(cfg.dim, k * (k + 1) // 2)  # Cholesky factor: diagonal, then below
            nn.init.zeros_(self.scale.weight)
            with torch.no_grad():  # softplus(0.5413) = 1: unit spread in whitened space at first
                self.scale.bias[:k].fill_(0.5413)
        elif cfg.likelihood != "mse":
            raise ValueError(f"likelihood must be 'mse' or 'gaussian', not {cfg.likelihood!r}")

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

    def cholesky(self, emb: torch.Tensor) -> torch.Tensor:
        """Lower-triangular factor (n, k, k) of the predicted covariance (gaussian likelihood)."""
        k = self.k
        raw = self.scale(emb)  # (n, k(k+1)/2)
        chol = emb.new_zeros(emb.shape[0], k, k)
        idx = torch.arange(k)
        chol[:, idx, idx] = nn.functional.softplus(raw[:, :k]) + 1e-3
        if k > 1:
            rows, cols = torch.tril_indices(k, k, offset=-1)
            chol[:, rows, cols] = raw[:, k:]
        return chol

    def loss(self, emb: torch.Tensor, xw: torch.Tensor) -> torch.Tensor:
        if self.cfg.likelihood == "mse":
            # Summed, not averaged, squared error: all k fields together weigh 1 (B.2).
            return ((self.dec(emb) - xw) ** 2).sum(1)  # (n,)
        chol = self.cholesky(emb)
        resid = (xw - self.dec(emb)).unsqueeze(-1)  # (n, k, 1)
        white = torch.linalg.solve_triangular(chol, resid, upper=False)[..., 0]  # (n, k)
        logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        return 0.5 * (white**2).sum(1) + logdet  # Gaussian NLL, constant dropped

    @torch.no_grad()
    def decode(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw values (n, k) float64: the prediction, or a draw from it (gaussian likelihood)."""
        w = self.dec(emb)
        if self.cfg.likelihood == "gaussian" and not greedy and w.shape[0]:
            eps = torch.randn(w.shape, generator=generator, device=w.device) * temperature**0.5
            w = w + (self.cholesky(emb) @ eps.unsqueeze(-1))[..., 0]
        return self.unwhiten(w)
