"""Leaf temperatures (synth/nn/calibration.py, synth/train/calibrate.py): each decoder head's
spread fitted on held-out records, widening only, stored in the model config and used by
every draw of that head."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from synth.errors import ConfigError
from synth.model import Model
from synth.model_config import ModelConfig
from synth.nn.categorical import Categorical
from synth.nn.oneof import Oneof
from synth.nn.presence import Presence
from synth.nn.scalar_tuple import ScalarTuple, ScalarTupleConfig
from synth.plan import walk
from synth.train.calibrate import calibrate_leaves, end_regime
from synth.train.config import TrainConfig

PROTO = """
syntax = "proto3";
package calib_test;
message Row { string name = 1; double x = 2; double y = 3; }
"""


def rows(n: int = 300, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"name": ["ann", "bob", "cy"][i % 3], "x": rng.gauss(0, 1), "y": rng.expovariate(1.0)} for i in range(n)]


def test_gaussian_head_is_widened_by_its_held_out_residuals():
    torch.manual_seed(0)
    head = ScalarTuple(2, ScalarTupleConfig(dim=16, likelihood="gaussian"))
    emb = torch.randn(4000, 16)
    with torch.no_grad():
        mean, chol = head.dec(emb), head.cholesky(emb)
        eps = torch.randn(4000, 2, 1)
        too_wide = mean + 3.0 * (chol @ eps)[..., 0]  # held-out values 3x further out than the head says
        too_narrow = mean + 0.5 * (chol @ eps)[..., 0]
    assert head.calibrated_temperature(emb, too_wide) == pytest.approx(9.0, rel=0.1)  # a variance multiplier
    assert head.calibrated_temperature(emb, too_narrow) == 1.0  # widening only
    assert ScalarTuple(2, ScalarTupleConfig(dim=16)).calibrated_temperature(emb, too_wide) == 1.0  # MSE: no spread


def test_softmax_head_is_widened_to_the_temperature_its_targets_were_drawn_at():
    torch.manual_seed(0)
    head = Categorical(6, dim=16)
    emb = torch.randn(6000, 16) * 3
    with torch.no_grad():
        logits = head._logits(emb)
    hot = torch.multinomial(torch.softmax(logits / 3.0, -1), 1)[:, 0]
    cold = torch.multinomial(torch.softmax(logits / 0.5, -1), 1)[:, 0]
    assert head.calibrated_temperature(emb, hot) == pytest.approx(3.0, rel=0.15)
    assert head.calibrated_temperature(emb, cold) == 1.0


def test_calibration_fits_every_head_and_stores_the_widened_ones_in_the_config():
    torch.manual_seed(0)
    model = Model.create(PROTO, "Row", records=rows(), config=ModelConfig(latent_dim=8, char_dim=4))
    rec = calibrate_leaves(model, model.messages(rows(200, seed=5)), end_regime(TrainConfig(), model.reencode),
                           seed=1)
    drawn_by = {n.module for n in walk(model.plan)}  # the keys generation looks temperatures up by
    assert rec["heads"] == len(rec["fitted"]) >= 2  # the name softmax and the floats' Gaussian at least
    assert set(rec["fitted"]) <= drawn_by
    assert rec["chosen"] == {k: t for k, t in rec["fitted"].items() if t > 1.0}
    assert model.config.leaf_temperatures == rec["chosen"]
    # SS ends with a Tuple fed its own emitted embeddings, but its leaves (all the children
    # here) teacher-forced, since generation feeds them the re-encoded draws
    assert rec["regime"] == {"p_truth_tuple": 0.0, "p_truth_string": 1.0, "p_truth_leaf": 1.0}


def test_a_leaf_temperature_widens_that_heads_draws_only():
    torch.manual_seed(0)
    model = Model.create(PROTO, "Row", records=rows(), config=ModelConfig(latent_dim=8, char_dim=4))
    floats = next(k for k, m in model.vae.nodes.items() if isinstance(m, ScalarTuple) and m.k == 2)

    def spread(leaf: dict[str, float]) -> tuple[float, list[str]]:
        model.config = dataclasses.replace(model.config, leaf_temperatures=leaf)
        out = model.sample(400, seed=3)
        x = torch.tensor([r.x for r in out])
        return float(x.std()), [r.name for r in out]

    base_std, base_names = spread({})
    wide_std, wide_names = spread({floats: 64.0})
    assert wide_std > 1.3 * base_std
    assert wide_names == base_names  # the name head's draws did not change (same seed, same temperature)


def test_leaf_temperatures_are_validated():
    with pytest.raises(ConfigError):
        ModelConfig(leaf_temperatures={"m": 0.0})
    with pytest.raises(ConfigError):
        ModelConfig(leaf_temperatures={"m": float("inf")})
    with pytest.raises(ConfigError, match="leaf_temperatures.no:such:module"):
        Model.create(PROTO, "Row", records=rows(), config=ModelConfig(leaf_temperatures={"no:such:module": 2.0}))


def test_presence_head_is_widened_like_a_softmax():
    torch.manual_seed(0)
    head = Presence(dim=16)
    with torch.no_grad():
        head.head.weight.normal_()
    emb = torch.randn(6000, 16) * 2
    with torch.no_grad():
        logit = head.head(emb)[:, 0]
    hot = torch.rand(6000) < torch.sigmoid(logit / 3.0)
    cold = torch.rand(6000) < torch.sigmoid(logit / 0.5)
    assert head.calibrated_temperature(emb, hot) == pytest.approx(3.0, rel=0.15)
    assert head.calibrated_temperature(emb, cold) == 1.0


NESTED = """
syntax = "proto3";
package calib_nested;
message Inner { string a = 1; }
message Row { Inner inner = 1; oneof pick { int32 n = 2; string s = 3; } double x = 4; }
"""


def test_presence_and_oneof_heads_are_fitted_and_drawn_with_their_temperatures():
    rng = random.Random(1)
    records = [{"inner": {"a": "q"}} if i % 3 else {} for i in range(240)]
    for i, r in enumerate(records):
        r.update({"n": i % 5} if i % 2 else {"s": "z"})
        r["x"] = rng.random()
    torch.manual_seed(0)
    model = Model.create(NESTED, "Row", records=records, config=ModelConfig(latent_dim=8, char_dim=4))
    rec = calibrate_leaves(model, model.messages(records[:200]), end_regime(TrainConfig()), seed=1)
    kinds = {type(model.vae.nodes[k]) for k in rec["fitted"]}
    assert {Presence, Oneof} <= kinds
    presence = next(k for k in rec["fitted"] if isinstance(model.vae.nodes[k], Presence))

    def inner_share(leaf: dict[str, float]) -> float:
        model.config = dataclasses.replace(model.config, leaf_temperatures=leaf)
        return sum(r.HasField("inner") for r in model.sample(600, seed=2)) / 600

    # an untrained head's logit is 0 (p = 1/2) whatever the temperature: push it first
    with torch.no_grad():
        model.vae.nodes[presence].head.bias.fill_(3.0)
    sure, widened = inner_share({}), inner_share({presence: 1e6})
    assert sure > 0.85 and abs(widened - 0.5) < 0.08


def test_each_heads_loss_at_a_temperature_is_the_likelihood_of_the_widened_head():
    torch.manual_seed(0)
    emb = torch.randn(50, 16)
    gauss = ScalarTuple(2, ScalarTupleConfig(dim=16, likelihood="gaussian"))
    x = torch.randn(50, 2)
    with torch.no_grad():
        mean, chol = gauss.dec(emb), gauss.cholesky(emb)
        cov = chol @ chol.transpose(1, 2)
        for t in (1.0, 4.0, 30.0):
            widened = torch.distributions.MultivariateNormal(mean, covariance_matrix=t * cov)
            # the loss drops the same constant (k/2 log 2 pi) at every temperature
            torch.testing.assert_close(gauss.loss(emb, x, t) - gauss.loss(emb, x),
                                       -(widened.log_prob(x) - torch.distributions.MultivariateNormal(
                                           mean, covariance_matrix=cov).log_prob(x)), rtol=1e-4, atol=1e-4)
    # (head, its logits, targets, where a target sits among the logits)
    cat, oneof = Categorical(5, dim=16), Oneof(3, dim=16)
    softmaxes = ((cat, cat._logits, torch.arange(50) % 5, 0), (oneof, oneof.selector, torch.arange(50) % 4 - 1, 1))
    for head, logits, idx, shift in softmaxes:
        with torch.no_grad():
            want = -torch.log_softmax(logits(emb) / 3.0, 1)[torch.arange(50), idx + shift]
            torch.testing.assert_close(head.loss(emb, idx, 3.0), want)
            assert not torch.allclose(head.loss(emb, idx, 3.0), head.loss(emb, idx))
    pres = Presence(dim=16)
    bits = torch.arange(50) % 2 == 0
    with torch.no_grad():
        p = torch.sigmoid(pres.head(emb)[:, 0] / 3.0)
        torch.testing.assert_close(pres.loss(emb, bits, 3.0), -torch.where(bits, p, 1 - p).log())
