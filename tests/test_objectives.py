"""Hand-checked tests of the latent objectives (synth/train/objectives.py).

Reference numbers come from the closed forms in the module docstring, worked out by
hand on tiny cases (B = 2, D = 1 or 2) and written here as plain math expressions.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from synth.errors import ArtifactError, ConfigError, InvalidArgument
from synth.train.objectives import (AMIM_SIGMA_FLOOR, KINDS, ObjectiveConfig, PIController,
                                    ae_pretraining, latent_terms)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _t(rows, grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


# ---------------------------------------------------------------------------
# plain KL (elbo / controlvae)
# ---------------------------------------------------------------------------

def test_kl_closed_form_simple_cases():
    mu = _t([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    sigma = _t([[1.0, 1.0], [1.0, 1.0], [0.5, 1.0]])
    out = latent_terms(ObjectiveConfig(), mu, sigma, mu.clone())
    # mu=0,s=1: 0; mu=1,s=1: 1/2; s=1/2: (0.25 - 1)/2 - ln 0.5 = ln 2 - 0.375, averaged with 0
    expected = [0.0, 0.5, (math.log(2) - 0.375) / 2]
    assert out["kl"].tolist() == pytest.approx(expected, abs=1e-12)
    assert set(out) == {"kl", "latent"}
    assert torch.equal(out["latent"], out["kl"])


def test_controlvae_latent_is_plain_kl_and_differentiable():
    mu, sigma = _t([[1.0], [2.0]], grad=True), _t([[1.0], [1.0]], grad=True)
    out = latent_terms(ObjectiveConfig(kind="controlvae"), mu, sigma, mu.detach())
    assert torch.equal(out["latent"], out["kl"])
    out["latent"].sum().backward()
    assert mu.grad.flatten().tolist() == pytest.approx([1.0, 2.0])  # d/dmu mu^2/2
    assert sigma.grad.flatten().tolist() == pytest.approx([0.0, 0.0])  # sigma - 1/sigma at 1


# ---------------------------------------------------------------------------
# free bits
# ---------------------------------------------------------------------------

def test_free_bits_clamps_inactive_dims_and_keeps_active_ones():
    lam = 0.1
    # dim 0: KL 2 for both records (active); dim 1: KL 0.005 (inactive, below lambda)
    mu = _t([[2.0, 0.1], [2.0, 0.1]], grad=True)
    sigma = _t([[1.0, 1.0], [1.0, 1.0]], grad=True)
    out = latent_terms(ObjectiveConfig(kind="free_bits", free_bits=lam), mu, sigma, mu.detach())
    assert out["latent"].tolist() == pytest.approx([(2.0 + lam) / 2] * 2)
    assert out["kl"].tolist() == pytest.approx([(2.0 + 0.005) / 2] * 2)
    out["latent"].sum().backward()
    # active dim: d/dmu (mu^2/2)/D = mu/2 = 1; inactive dim: constant, no gradient
    assert mu.grad[:, 0].tolist() == pytest.approx([1.0, 1.0])
    assert mu.grad[:, 1].tolist() == [0.0, 0.0]
    assert sigma.grad[:, 1].tolist() == [0.0, 0.0]


def test_free_bits_decides_on_the_batch_mean_per_dim():
    lam = 0.1
    # one dim; record KLs 0 and 0.5 -> batch mean 0.25 > lambda: both keep their own KL,
    # including the record below lambda (Kingma et al. clamp E_x[KL], not each record)
    mu = _t([[0.0], [1.0]], grad=True)
    sigma = _t([[1.0], [1.0]])
    out = latent_terms(ObjectiveConfig(kind="free_bits", free_bits=lam), mu, sigma, mu.detach())
    assert out["latent"].tolist() == pytest.approx([0.0, 0.5])
    out["latent"].sum().backward()
    assert mu.grad.flatten().tolist() == pytest.approx([0.0, 1.0])


def test_free_bits_batch_mean_is_mean_of_max_lambda_and_dim_kl():
    torch.manual_seed(0)
    mu = torch.randn(16, 8, dtype=torch.float64) * 0.5
    sigma = torch.rand(16, 8, dtype=torch.float64) * 0.8 + 0.1
    lam = 0.3
    out = latent_terms(ObjectiveConfig(kind="free_bits", free_bits=lam), mu, sigma, mu)
    dim_kl = (0.5 * (mu**2 + sigma**2 - 1) - sigma.log()).mean(0)
    assert float(out["latent"].mean()) == pytest.approx(float(dim_kl.clamp_min(lam).mean()), rel=1e-12)


# ---------------------------------------------------------------------------
# density gap (Zhang et al. 2022) and A-MIM (Livne 2020)
# ---------------------------------------------------------------------------

# B = 2, D = 1: posteriors N(0, 1) and N(1, 0.5^2), samples z = 0.5 and z = 2
MU, SIGMA, Z = [[0.0], [1.0]], [[1.0], [0.5]], [[0.5], [2.0]]


def _dg_case(weight: float = 1.0):
    mu, sigma = _t(MU, grad=True), _t(SIGMA, grad=True)
    z = mu + sigma * _t([[0.5], [2.0]])  # eps chosen so that z = 0.5 and 2.0
    cfg = ObjectiveConfig(kind="density_gap", density_gap_weight=weight)
    return mu, sigma, z, latent_terms(cfg, mu, sigma, z)


def test_density_gap_hand_computed():
    mu, sigma, z, out = _dg_case(weight=2.0)
    assert z.detach().flatten().tolist() == [0.5, 2.0]
    # record 0, z = 0.5: N(.5;1,.5)/N(.5;0,1) = 2 exp(-1/2 + 1/8), so the gap is
    #   log((N(.5;0,1) + N(.5;1,.5)) / 2) - log N(.5;0,1) = log((1 + 2 exp(-0.375)) / 2)
    # record 1, z = 2: N(2;1,.5) = 2 N(2;0,1), so the gap is log((1 + 2) / 2) = log 1.5
    gap = [math.log((1 + 2 * math.exp(-0.375)) / 2), math.log(1.5)]
    assert out["density_gap"].tolist() == pytest.approx([2 * g for g in gap], abs=1e-12)
    assert out["latent"].tolist() == [0.0, 0.0]  # DG replaces the KL term
    assert out["kl"].tolist() == pytest.approx([0.0, (1.25 - 1) / 2 + math.log(2)])


def test_density_gap_gradients_finite_and_reach_every_posterior():
    mu, sigma, z, out = _dg_case()
    out["density_gap"].sum().backward()
    for g in (mu.grad, sigma.grad):
        assert torch.isfinite(g).all() and (g != 0).all()


def test_density_gap_of_one_record_is_the_single_sample_kl():
    # with |B| = 1 the aggregated posterior is the posterior: log q(z|x) - log p(z)
    mu, sigma, z = _t([[1.0]]), _t([[0.5]]), _t([[2.0]])
    out = latent_terms(ObjectiveConfig(kind="density_gap"), mu, sigma, z)
    log_q = -HALF_LOG_2PI - math.log(0.5) - 0.5 * 2.0**2
    log_p = -HALF_LOG_2PI - 0.5 * 2.0**2
    assert out["density_gap"].item() == pytest.approx(log_q - log_p)


def test_density_gap_no_underflow_for_far_apart_posteriors():
    mu, sigma = _t([[0.0], [60.0]], grad=True), _t([[0.01], [0.01]], grad=True)
    out = latent_terms(ObjectiveConfig(kind="density_gap"), mu, sigma, mu + sigma * 0.3)
    out["density_gap"].sum().backward()
    assert torch.isfinite(out["density_gap"]).all() and torch.isfinite(mu.grad).all()


def test_amim_hand_computed():
    mu, sigma = _t(MU, grad=True), _t(SIGMA, grad=True)
    z = mu + sigma * _t([[0.5], [2.0]])
    out = latent_terms(ObjectiveConfig(kind="amim", amim_weight=3.0), mu, sigma, z)
    # -1/2 [log N(z; mu, s^2) + log N(z; 0, 1)]
    # record 0: both densities are N(0.5; 0, 1) = -(1/2)ln 2pi - 1/8  ->  (1/2)ln 2pi + 1/8
    # record 1: log N(2;1,.5) = -(1/2)ln 2pi + ln 2 - 2, log N(2;0,1) = -(1/2)ln 2pi - 2
    amim0 = HALF_LOG_2PI + 0.125
    amim1 = -0.5 * ((-HALF_LOG_2PI + math.log(2) - 2) + (-HALF_LOG_2PI - 2))
    assert out["amim"].tolist() == pytest.approx([3 * amim0, 3 * amim1], abs=1e-12)
    assert out["latent"].tolist() == [0.0, 0.0]  # A-MIM replaces the KL term
    out["amim"].sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(sigma.grad).all()
    # d/dsigma at fixed eps: 1/2 (1/sigma + z eps) per dim, times the weight
    assert sigma.grad.flatten().tolist() == pytest.approx(
        [3 * 0.5 * (1 / 1.0 + 0.5 * 0.5), 3 * 0.5 * (1 / 0.5 + 2.0 * 2.0)])


def test_amim_sigma_floor_keeps_tiny_sigma_finite():
    mu = _t([[0.0]])
    sigma = _t([[1e-30]], grad=True)
    out = latent_terms(ObjectiveConfig(kind="amim"), mu, sigma, mu.detach())
    expected = -0.5 * ((-HALF_LOG_2PI - math.log(AMIM_SIGMA_FLOOR)) + (-HALF_LOG_2PI))
    assert out["amim"].item() == pytest.approx(expected)
    out["amim"].sum().backward()
    assert sigma.grad.item() == 0.0


def test_shape_mismatch_is_invalid_argument():
    with pytest.raises(InvalidArgument):
        latent_terms(ObjectiveConfig(), torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3, 2))
    with pytest.raises(InvalidArgument):
        latent_terms(ObjectiveConfig(), torch.zeros(3), torch.ones(3), torch.zeros(3))


# ---------------------------------------------------------------------------
# ControlVAE PI controller
# ---------------------------------------------------------------------------

def test_pi_controller_first_step_by_hand():
    cfg = ObjectiveConfig(kind="controlvae", target_kl=0.5, kp=0.01, ki=0.001)
    pi = PIController(cfg)
    assert pi.beta == 0.0
    # e = 0.5 - 1.5 = -1; P = 0.01 / (1 + e^-1); I = 0 - 0.001 * (-1) = 0.001
    assert pi.update(1.5) == pytest.approx(0.01 / (1 + math.exp(-1)) + 0.001)


def test_pi_controller_kl_above_target_raises_beta_up_to_max():
    cfg = ObjectiveConfig(kind="controlvae", target_kl=0.5, kp=0.01, ki=0.01, beta_min=0.1, beta_max=0.8)
    pi = PIController(cfg)
    betas = [pi.update(2.0) for _ in range(200)]
    assert all(b2 >= b1 for b1, b2 in zip(betas, betas[1:]))
    assert betas[0] > cfg.beta_min and betas[-1] == cfg.beta_max
    assert all(cfg.beta_min <= b <= cfg.beta_max for b in betas)


def test_pi_controller_kl_below_target_lowers_beta_down_to_min():
    cfg = ObjectiveConfig(kind="controlvae", target_kl=0.5, kp=0.01, ki=0.01, beta_min=0.1, beta_max=0.8)
    pi = PIController(cfg)
    for _ in range(100):
        pi.update(2.0)
    high = pi.beta
    betas = [pi.update(0.0) for _ in range(300)]
    assert betas[5] < high  # the one-step overshoot above beta_max unwinds first
    assert all(b2 <= b1 for b1, b2 in zip(betas, betas[1:]))
    assert betas[-1] == cfg.beta_min
    assert all(cfg.beta_min <= b <= cfg.beta_max for b in betas)


def test_pi_controller_anti_windup():
    # a long saturated stretch must not wind the integrator up: once KL drops below
    # the target, beta leaves beta_max within a few steps
    cfg = ObjectiveConfig(kind="controlvae", target_kl=0.5, kp=0.01, ki=0.01, beta_max=0.5)
    pi = PIController(cfg)
    for _ in range(10_000):
        pi.update(5.0)
    assert pi.beta == 0.5
    assert pi.i_term < 0.5 + 0.05  # at most one step of overshoot (ki * |e| = 0.045)
    steps = 0
    while pi.update(0.0) == 0.5:
        steps += 1
    assert steps <= 10


def test_pi_controller_ignores_non_finite_kl():
    pi = PIController(ObjectiveConfig(kind="controlvae"))
    pi.update(3.0)
    before = pi.state_dict()
    assert pi.update(float("nan")) == before["beta"]
    assert pi.state_dict() == before


def test_pi_controller_state_dict_round_trips_exactly():
    cfg = ObjectiveConfig(kind="controlvae", ki=0.003)
    a = PIController(cfg)
    for kl in (0.9, 1.7, 0.2, 0.61, 3.3):
        a.update(kl)
    state = json.loads(json.dumps(a.state_dict()))
    assert state == a.state_dict()
    b = PIController(cfg)
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict() and b.beta == a.beta
    for kl in (0.4, 2.2, 0.01):
        assert a.update(kl) == b.update(kl)


def test_pi_controller_rejects_broken_state():
    pi = PIController(ObjectiveConfig(kind="controlvae"))
    with pytest.raises(ArtifactError):
        pi.load_state_dict({"i_term": 0.0})


# ---------------------------------------------------------------------------
# AE pretraining and config validation
# ---------------------------------------------------------------------------

def test_ae_pretraining_window():
    cfg = ObjectiveConfig(kind="free_bits", ae_pretrain_steps=3)
    assert [ae_pretraining(cfg, s) for s in range(5)] == [True, True, True, False, False]
    assert not ae_pretraining(ObjectiveConfig(), 0)


def test_defaults_valid_for_every_kind():
    for kind in KINDS:
        assert ObjectiveConfig(kind=kind).kind == kind


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ConfigError) as e:
        ObjectiveConfig(kind="vamp")
    for kind in KINDS:
        assert kind in str(e.value)


@pytest.mark.parametrize("kwargs", [
    {"free_bits": -0.1},
    {"free_bits": float("nan")},
    {"ae_pretrain_steps": -1},
    {"ae_pretrain_steps": 1.5},
    {"target_kl": -1.0},
    {"kp": -0.01},
    {"ki": float("inf")},
    {"beta_min": -0.1},
    {"beta_min": 0.9, "beta_max": 0.5},
    {"density_gap_weight": -1.0},
    {"amim_weight": "1"},
    {"kp": True},
])
def test_invalid_values_raise_config_error(kwargs):
    with pytest.raises(ConfigError) as e:
        ObjectiveConfig(**kwargs)
    names = {v.path for v in e.value.violations}
    assert names & set(kwargs)


def test_from_dict_builds_and_validates():
    from synth.configs import from_dict
    cfg = from_dict(ObjectiveConfig, {"kind": "controlvae", "target_kl": 0.3})
    assert cfg.target_kl == 0.3
    with pytest.raises(ConfigError):
        from_dict(ObjectiveConfig, {"kind": "controlvae", "beta_max": -1})
