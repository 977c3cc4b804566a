"""A mixture prior for generation, fitted to the training latents after training.

The paper samples z ~ N(m, S), one Gaussian fitted to the sampled training latents
(section 2.4). The aggregate posterior of a trained model is far from one Gaussian:
records cluster (by town, by zip code), and a single Gaussian puts much of its mass in
the gaps between clusters, where the decoder has never been trained and decodes
incoherent records (a zip code from one town, coordinates from another). Measured on
the Vermont benchmark, this is most of the gap between reconstruction quality and
generation quality.

So, optionally (`ModelConfig.latent_prior_components = K`), we fit K components by
k-means on the posterior means of (up to 20,000) training records. Each component is
a diagonal Gaussian whose variance is the within-cluster variance of the means plus the
members' mean posterior variance, so samples stay where the decoder was trained: near
the data, with the noise it saw in training. Weights are cluster sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Mixture:
    weights: torch.Tensor  # (K,), sums to 1
    means: torch.Tensor  # (K, D)
    stds: torch.Tensor  # (K, D)


def fit_mixture(mu: torch.Tensor, sigma: torch.Tensor, k: int, iters: int = 15,
                generator: torch.Generator | None = None) -> Mixture:
    """k-means (Lloyd) on posterior means mu (n, D); sigma (n, D) are the posterior stds."""
    n, d = mu.shape
    k = min(k, n)
    mu, var = mu.double(), sigma.double() ** 2
    centers = mu[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(mu, centers).argmin(1)  # (n,)
        counts = torch.bincount(assign, minlength=k).double()
        sums = torch.zeros_like(centers).index_add_(0, assign, mu)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled].unsqueeze(1)
    assign = torch.cdist(mu, centers).argmin(1)
    counts = torch.bincount(assign, minlength=k).double()
    safe = counts.clamp_min(1).unsqueeze(1)
    mean_sq = torch.zeros_like(centers).index_add_(0, assign, mu**2) / safe
    within = (mean_sq - centers**2).clamp_min(0)
    noise = torch.zeros_like(centers).index_add_(0, assign, var) / safe
    stds = (within + noise).sqrt()
    keep = counts > 0
    weights = counts[keep] / counts.sum()
    return Mixture(weights.float(), centers[keep].float(), stds[keep].float())


def sample_mixture(m: Mixture, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    comp = torch.multinomial(m.weights, n, replacement=True, generator=generator)  # (n,)
    eps = torch.randn(n, m.means.shape[1], generator=generator, device=m.means.device)
    return m.means[comp] + m.stds[comp] * eps
