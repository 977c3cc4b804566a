"""Leaf temperatures fitted on held-out records: temperature scaling of decoder heads.

A head trained on a small dataset learns to be as sure of a training row as the latent
lets it be, and the latent of a row it never saw carries less. Flights (2,600 training
rows): on the validation split the delays' Gaussian head is 3-4x too narrow and the
scheduled-time softmaxes are too sharp, so sampled delays bunch around their median (KS
0.21 against the real marginal). One number per head, fitted by the held-out likelihood
(temperature scaling, Guo et al. 2017), widens what the data says is too narrow. Heads
that held-out rows find too wide are left alone: sharpening is the global
`sample_temperature`'s job, which the tuner chooses by detection AUC (synth/train/tune.py).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

MAX_TEMPERATURE = 64.0  # a head more than 8x too narrow (in standard deviations) is clamped
GRID = 97  # log-spaced candidates in [1, MAX_TEMPERATURE] for the softmax heads


def softmax_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The t >= 1 of softmax(logits / t) that fits held-out class indices `target` best."""
    logits = logits.float()
    return _grid_minimum(lambda t: float(F.cross_entropy(logits / t, target)))


def sigmoid_temperature(logit: torch.Tensor, target: torch.Tensor) -> float:
    """The t >= 1 of sigmoid(logit / t) that fits held-out bits `target` best."""
    logit, target = logit.float(), target.float()
    return _grid_minimum(lambda t: float(F.binary_cross_entropy_with_logits(logit / t, target)))


def _grid_minimum(nll: Callable[[float], float]) -> float:
    """The t >= 1 minimising nll(t) over a log-spaced grid (the held-out negative
    log-likelihood is unimodal in t in practice, and the grid's step of 4.4% is finer
    than its noise on a few hundred rows)."""
    grid = torch.exp(torch.linspace(0.0, math.log(MAX_TEMPERATURE), GRID)).tolist()
    scores = [nll(t) for t in grid]
    return float(grid[min(range(len(grid)), key=scores.__getitem__)])


def gaussian_temperature(white: torch.Tensor) -> float:
    """The variance multiplier t >= 1 of a Gaussian head from its held-out residuals
    standardised by the head's own Cholesky factor (n, k): the likelihood of
    N(mean, t L L^T) peaks at the mean squared standardised residual."""
    if not white.numel():
        return 1.0
    return float(min(max(float(white.double().pow(2).mean()), 1.0), MAX_TEMPERATURE))


def tail_temperature(nll: Callable[[float], float]) -> float:
    """The variance multiplier t >= 1 of a Gaussian head mixed with a fixed broad component,
    given the held-out mean NLL as a function of t (no closed form: a grid, as for softmaxes)."""
    return _grid_minimum(nll)
