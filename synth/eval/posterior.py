"""Posterior health: active units, a mutual-information estimate, and KL.

Active units (Burda et al. 2016): dimension d is active when Cov_x(E_q[z_d | x])
exceeds 0.01. Mutual information I(x; z) under q (Hoffman & Johnson 2016; the
estimator of He et al. 2019): E_x E_q(z|x)[log q(z|x) - log q(z)], with the
aggregate posterior q(z) approximated by the mixture of the batch's posteriors.
These take torch tensors of posterior means and standard deviations (n, D).
"""
from __future__ import annotations

import math

import torch


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    if mu.shape[0] < 2:
        return 0
    return int((mu.double().var(0) > threshold).sum())


def posterior_draws(mu: torch.Tensor, sigma: torch.Tensor, draws: int = 1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """`draws` latents from each Gaussian posterior N(mu, sigma^2), stacked: (draws * n, D)."""
    return torch.cat([mu + sigma * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
                      for _ in range(draws)])


def mutual_information(mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """Estimate in nats, from one z per record drawn from its own posterior."""
    mu, sigma = mu.double(), sigma.double()
    n, d = mu.shape
    if n < 2:
        return 0.0
    z = posterior_draws(mu, sigma, generator=generator)
    log_sigma = sigma.log()
    # E log q(z|x): the Gaussian's negative entropy, analytic
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - log_sigma.sum(1) - 0.5 * d).mean()
    # log q(z_i) ~ log mean_j N(z_i; mu_j, sigma_j)
    diff = (z.unsqueeze(1) - mu.unsqueeze(0)) / sigma.unsqueeze(0)  # (n, n, d)
    log_dens = -0.5 * (diff**2).sum(-1) - log_sigma.sum(1).unsqueeze(0) - 0.5 * d * math.log(2 * math.pi)
    log_qz = torch.logsumexp(log_dens, dim=1) - math.log(n)
    return float(neg_entropy - log_qz.mean())


def kl_per_dim(mu: torch.Tensor, sigma: torch.Tensor) -> float:
    kl = 0.5 * (mu.double() ** 2 + sigma.double() ** 2 - 1.0) - sigma.double().log()
    return float(kl.mean())
