"""Latent-loss objectives: which term beta multiplies, extra regularisers, beta control.

The VAE returns per-record reconstruction terms; this module turns the posterior
(mu, sigma, z = mu + sigma * eps, each (B, D)) into per-record (B,) latent terms. All
of them are on the paper's scale, "KL-divergence per latent dimension" (Chou & Hathi
2019, section 2.3): a sum over the D latent dimensions divided by D, so that beta and
the weights below keep the meaning they have for the plain beta-VAE.

The trainer's loss per record is

    recon + beta * terms["latent"] + sum(terms[k] for the extra keys)

where the extra keys ("density_gap", "amim") already carry their own weight and are
not multiplied by beta. terms["kl"] is always the plain KL, for logging and for the
ControlVAE controller.

Objectives (N(x; m, s^2) is the Gaussian density, KL_d the closed-form KL of dim d):

elbo -- beta-VAE (Chou & Hathi 2019, eq. 2 and section 2.3):
    latent[b] = kl[b] = 1/D * sum_d [ (mu^2 + sigma^2 - 1) / 2 - log sigma ]

free_bits -- Kingma et al. 2016, "free bits", as used by Li et al. 2019 (slides
"A Surprisingly Effective Fix", FB objective): sum_j max(lambda, E_x[KL_j]) with one
group j per latent dimension and E_x the batch mean. To stay per record, a dimension
whose batch-mean KL exceeds lambda keeps every record's own KL_d (unchanged value
and gradient); a dimension at or below lambda contributes the constant lambda for
every record (no gradient):
    latent[b] = 1/D * sum_d ( KL_bd if mean_b' KL_b'd > lambda else lambda )
so mean_b latent[b] = 1/D * sum_d max(lambda, mean_b KL_bd) exactly (Kingma's form,
per dimension). Li et al.'s code masks per record and dimension instead; we follow
Kingma's batch-averaged form. The test on the batch mean is unweighted, even when
the trainer weighs records (multiscale levels, augmented variants).

controlvae -- Shao et al. 2020, ControlVAE PI controller (slides, Algorithm 1):
    e(t) = KL_target - KL(t);  P(t) = Kp / (1 + exp(e(t)))
    I(t) = I(t-1) - Ki * e(t)  (anti-windup: frozen while saturated, see below)
    beta(t) = clamp(P(t) + I(t) + beta_min, beta_min, beta_max)
KL(t) is the batch-mean KL per dimension of step t, and beta(t) weighs the plain KL
of the next step; latent = kl. Units: the paper feeds total KL (nats summed over
the latent) with its gains; ours is per dimension, so the same Kp, Ki act on an
error D times smaller (the integrator moves D times slower).

density_gap -- Zhang et al. 2022, "Improving VAEs with Density Gap-based
Regularization" (slides: "marginal regularization", sum_i KL(q(z_i) || p(z_i)) with
q(z) the aggregated posterior of the mini-batch; estimated from the density gap
log q(z) - log p(z) at samples of q(z), as in the authors' DGBasedGaussianKLD).
The objective replaces the KL term (ELBO + I(n; z) = recon - KL(q(z) || p(z))), so
latent = 0 and
    density_gap[b] = w/D * sum_d [ log(1/B * sum_m N(z_bd; mu_md, sigma_md^2))
                                   - log N(z_bd; 0, 1) ]
with one sample per record (the z the decoder used; the authors draw 32) and the
whole batch as aggregation set (their default |b| = |B|). The batch mean estimates
1/D * sum_d KL(q(z_d) || p(z_d)); single records can be negative. Cost O(B^2 D).

amim -- Livne 2020 (thesis ch. 6, eq. 6.14 and Algorithm 4), asymmetric MIM with
the aggregated-posterior latent marginal bounded by the record's own posterior:
    L = -1/N sum_i [ log p(x_i|z_i) + 1/2 (log q(z_i|x_i) + log P(z_i)) ]
The reconstruction term is the trainer's; the rest replaces the KL, so latent = 0 and
    amim[b] = w/D * sum_d -1/2 [ log N(z_bd; mu_bd, s_bd^2) + log N(z_bd; 0, 1) ]
with the single reparameterised joint sample z of the thesis. It rewards small
posterior variance without bound (-log q grows as sigma -> 0), so s = max(sigma,
AMIM_SIGMA_FLOOR) to keep a sigmoid std network from drifting to sigma = 0 (log 0).

AE pretraining (any kind) -- Li et al. 2019 (slides: "pretraining encoder using AE
objective", then VAE training): for the first `ae_pretrain_steps` steps beta = 0 and
z = mu; the extra terms are meant to be off too (the trainer drops them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch

from synth.errors import ArtifactError, ConfigError, InvalidArgument, Violation

KINDS = ("elbo", "free_bits", "controlvae", "density_gap", "amim")
AMIM_SIGMA_FLOOR = 1e-4  # below this the A-MIM term gives sigma no more gradient
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class ObjectiveConfig:
    """Which latent objective to train with, and its knobs (see the module docstring).

    Defaults: free_bits 0.1 nats/dim (Li et al. use lambda = 6..9 nats over 32 dims,
    ~0.2-0.28/dim, for sentences; 0.1 * D = 12.8 nats/record is about ln N for the
    33k-record Vermont benchmark, i.e. enough to tell records apart); ControlVAE
    Kp = 0.01, Ki = 1e-4, beta in [0, 1] (Shao et al.'s language-modelling settings);
    weights 1 (the authors' objectives, which put these terms in place of the KL).
    """

    kind: str = "elbo"  # elbo | free_bits | controlvae | density_gap | amim
    free_bits: float = 0.1  # lambda, nats per latent dimension, on the batch-mean KL
    ae_pretrain_steps: int = 0  # steps with beta = 0 and z = mu before the objective starts
    target_kl: float = 0.5  # controlvae: KL per dimension to hold
    kp: float = 0.01
    ki: float = 0.0001
    beta_min: float = 0.0
    beta_max: float = 1.0
    density_gap_weight: float = 1.0
    amim_weight: float = 1.0

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError("invalid objective config", problems)

    def _problems(self) -> list[Violation]:
        if self.kind not in KINDS:
            return [Violation("kind", f"unknown objective {self.kind!r}; valid: {', '.join(KINDS)}")]
        out = []
        if not isinstance(self.ae_pretrain_steps, int) or isinstance(self.ae_pretrain_steps, bool) \
                or self.ae_pretrain_steps < 0:
            out.append(Violation("ae_pretrain_steps", "must be an integer >= 0"))
        for name in ("free_bits", "target_kl", "kp", "ki", "beta_min", "beta_max",
                     "density_gap_weight", "amim_weight"):
            value = getattr(self, name)
            if not _nonneg_number(value):
                out.append(Violation(name, f"must be a finite number >= 0, not {value!r}"))
        if not out and self.beta_min > self.beta_max:
            out.append(Violation("beta_max", f"must be >= beta_min ({self.beta_min}), not {self.beta_max}"))
        return out


def _nonneg_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def ae_pretraining(cfg: ObjectiveConfig, step: int) -> bool:
    """True while the run is still a plain autoencoder (Li et al. 2019): beta 0, z = mu."""
    return step < cfg.ae_pretrain_steps


# -- latent terms ------------------------------------------------------------------------

def latent_terms(cfg: ObjectiveConfig, mu: torch.Tensor, sigma: torch.Tensor,
                 z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-record (B,) latent terms before beta: "kl", "latent" and the kind's extras.

    Differentiable w.r.t. mu, sigma (and z, which carries them by reparameterisation).
    """
    _check_shapes(mu, sigma, z)
    kl_dims = kl_per_dim_matrix(mu, sigma)
    kl = kl_dims.mean(1)
    if cfg.kind in ("elbo", "controlvae"):
        return {"kl": kl, "latent": kl}
    if cfg.kind == "free_bits":
        return {"kl": kl, "latent": free_bits_kl(kl_dims, cfg.free_bits)}
    zero = torch.zeros_like(kl)
    if cfg.kind == "density_gap":
        return {"kl": kl, "latent": zero, "density_gap": cfg.density_gap_weight * density_gap(mu, sigma, z)}
    return {"kl": kl, "latent": zero, "amim": cfg.amim_weight * amim_latent(mu, sigma, z)}


def _check_shapes(mu: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> None:
    if mu.dim() != 2 or mu.shape[0] < 1 or sigma.shape != mu.shape or z.shape != mu.shape:
        raise InvalidArgument(f"mu, sigma and z must share one (B, D) shape with B >= 1; got "
                              f"{tuple(mu.shape)}, {tuple(sigma.shape)}, {tuple(z.shape)}")


def kl_per_dim_matrix(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for every record and dimension, (B, D)."""
    return 0.5 * (mu**2 + sigma**2 - 1.0) - torch.log(sigma)


def free_bits_kl(kl_dims: torch.Tensor, lam: float) -> torch.Tensor:
    """(B,) per-dim mean of KL with dims whose batch-mean KL <= lam replaced by lam.

    Kingma et al.'s max(lam, E_x KL_d) per dimension, spread over records so the batch
    mean is exact: active dims keep each record's KL, inactive dims give a constant.
    """
    active = kl_dims.detach().mean(0) > lam  # (D,)
    return torch.where(active, kl_dims, torch.full_like(kl_dims, lam)).mean(1)


def _log_normal(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * _LOG_2PI - torch.log(std) - 0.5 * ((x - mean) / std) ** 2


def density_gap(mu: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B,) density gap log q(z_bd) - log p(z_bd) averaged over dims (Zhang et al. 2022).

    q is the batch's aggregated posterior per dimension, 1/B sum_m N(., mu_md, sigma_md^2);
    computed with logsumexp so far-apart posteriors do not underflow.
    """
    pair = _log_normal(z.unsqueeze(1), mu.unsqueeze(0), sigma.unsqueeze(0))  # (B_z, B_q, D)
    log_q = torch.logsumexp(pair, dim=1) - math.log(mu.shape[0])
    log_p = _log_normal(z, torch.zeros_like(z), torch.ones_like(z))
    return (log_q - log_p).mean(1)


def amim_latent(mu: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B,) -1/2 (log q(z|x) + log P(z)) per dim at the sampled z (Livne 2020, Alg. 4)."""
    log_q = _log_normal(z, mu, sigma.clamp_min(AMIM_SIGMA_FLOOR))
    log_p = _log_normal(z, torch.zeros_like(z), torch.ones_like(z))
    return (-0.5 * (log_q + log_p)).mean(1)


# -- ControlVAE ---------------------------------------------------------------------------

class PIController:
    """ControlVAE's non-linear PI controller for beta (Shao et al. 2020, Algorithm 1).

    Call `update(kl)` once per training step with that step's batch-mean KL per
    dimension; the returned beta (also `.beta`) weighs the KL of the next step. Starts
    at beta_min (the paper's beta(0) = 0 with beta_min = 0).

    Anti-windup: the paper freezes I while beta(t-1) lies outside [beta_min, beta_max]
    (its code tests the clamped value, so never). We keep the unclamped value and
    freeze I only when it is saturated AND this step's error would push it further
    out; integrating back towards the range is allowed, otherwise an integrator that
    overshot by one step could never leave saturation.
    """

    def __init__(self, cfg: ObjectiveConfig):
        self.cfg = cfg
        self.i_term = 0.0
        self.raw = cfg.beta_min  # unclamped P + I + beta_min of the last update
        self.beta = cfg.beta_min
        self.steps = 0

    def update(self, kl_value: float) -> float:
        """Advance one step with the observed KL; a non-finite KL leaves beta as it was."""
        kl = float(kl_value)
        if not math.isfinite(kl):
            return self.beta
        c = self.cfg
        e = c.target_kl - kl
        step_i = -c.ki * e
        pushing_out = (self.raw > c.beta_max and step_i > 0) or (self.raw < c.beta_min and step_i < 0)
        if not pushing_out:
            self.i_term += step_i
        self.raw = c.kp * _sigmoid(-e) + self.i_term + c.beta_min
        self.beta = min(max(self.raw, c.beta_min), c.beta_max)
        self.steps += 1
        return self.beta

    def state_dict(self) -> dict[str, float | int]:
        """Plain JSON-able values; floats survive a JSON round trip exactly."""
        return {"i_term": self.i_term, "raw": self.raw, "beta": self.beta, "steps": self.steps}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        try:
            i_term, raw, beta = float(d["i_term"]), float(d["raw"]), float(d["beta"])
            steps = int(d["steps"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"invalid PI controller state: {e!r}") from e
        self.i_term, self.raw, self.beta, self.steps = i_term, raw, beta, steps


def _sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    ex = math.exp(x)
    return ex / (1.0 + ex)
