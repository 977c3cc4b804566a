"""Our extensions to the paper's model: Gaussian ScalarTuple, categorical strings, re-encoded feedback."""
from __future__ import annotations

import math

import pytest
import torch

from synth.errors import ConfigError
from synth.model import Model
from synth.model_config import ModelConfig
from synth.nn.scalar_tuple import ScalarTuple, ScalarTupleConfig
from synth.plan import CategoricalNode, walk
from synth.records import to_dict

PROTO = """
syntax = "proto3";
message Place { string city = 1; string zip = 2; string street = 3; double lat = 4; double lon = 5; }
"""
CITIES = {"ALBURGH": ("05440", 44.9, -73.2), "BARRE": ("05641", 44.2, -72.5), "DOVER": ("05356", 42.9, -72.8)}


def places(n: int = 90) -> list[dict]:
    out = []
    for i in range(n):
        city = list(CITIES)[i % 3]
        zip_, lat, lon = CITIES[city]
        out.append({"city": city, "zip": zip_, "street": f"{i % 7} MAIN ST",
                    "lat": lat + 0.01 * ((i * 7) % 5 - 2), "lon": lon + 0.01 * ((i * 3) % 5 - 2)})
    return out


def test_gaussian_scalar_tuple_nll_matches_the_closed_form():
    st = ScalarTuple(1, ScalarTupleConfig(dim=4, likelihood="gaussian"))
    with torch.no_grad():
        st.dec.weight.zero_()
        st.dec.bias.fill_(0.5)
        st.scale.bias.fill_(math.log(math.e**2 - 1))  # softplus -> 2
    emb = torch.zeros(1, 4)
    xw = torch.tensor([[1.5]])
    sigma = 2.0 + 1e-3
    expected = 0.5 * ((1.5 - 0.5) / sigma) ** 2 + math.log(sigma)
    assert st.loss(emb, xw).item() == pytest.approx(expected, rel=1e-5)


def test_gaussian_scalar_tuple_samples_with_the_predicted_covariance():
    st = ScalarTuple(2, ScalarTupleConfig(dim=4, likelihood="gaussian"))
    with torch.no_grad():
        st.dec.weight.zero_()
        st.dec.bias.copy_(torch.tensor([1.0, -1.0]))
        st.scale.bias.copy_(torch.tensor([math.log(math.e**0.5 - 1), math.log(math.e**0.5 - 1), 0.3]))
    emb = torch.zeros(20000, 4)
    g = torch.Generator().manual_seed(0)
    draws = st.decode(emb, generator=g)  # mean 0 / identity whitening: raw == whitened
    chol = st.cholesky(emb[:1])[0].double()
    assert torch.allclose(draws.mean(0), torch.tensor([1.0, -1.0], dtype=torch.float64), atol=0.03)
    assert torch.allclose(torch.cov(draws.T), chol @ chol.T, atol=0.03)
    greedy = st.decode(emb[:3], greedy=True)  # the mean (up to the whitening eps)
    assert torch.allclose(greedy, torch.tensor([[1.0, -1.0]] * 3, dtype=torch.float64), atol=1e-4)


def test_strings_can_be_modelled_as_categories():
    # the overrides alone (no automatic kinds) and no escape: the vocabulary is closed
    cfg = ModelConfig(latent_dim=16, char_dim=8, field_overrides={"city": "categorical", "zip": "categorical"},
                      auto_categorical=False, categorical_escape=False)
    model = Model.create(PROTO, "Place", records=places(), config=cfg)
    cats = {n.path: n for n in walk(model.plan) if isinstance(n, CategoricalNode)}
    assert sorted(cats) == ["city", "zip"]
    assert cats["city"].classes == sorted(CITIES)
    msgs = model.messages(places(6))
    assert [m.SerializeToString() for m in model.codec.decode(model.codec.encode(msgs))] == \
           [m.SerializeToString() for m in msgs]
    samples = [to_dict(r) for r in model.sample(200, seed=0)]
    assert {s["city"] for s in samples} <= set(CITIES)  # only values seen in training
    with pytest.raises(Exception) as e:
        model.encode([{"city": "NOWHERE", "zip": "05440"}])
    assert "city" in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    ({"city": "number"}, "string fields can only be overridden to 'categorical'"),
    ({"lat": "categorical"}, "names no integer or string field"),
    ({"nope": "categorical"}, "names no integer or string field"),
])
def test_bad_overrides_are_refused(overrides, message):
    with pytest.raises(ConfigError) as e:
        Model.create(PROTO, "Place", records=places(), config=ModelConfig(latent_dim=16, field_overrides=overrides))
    assert message in str(e.value)


def test_model_config_is_validated():
    with pytest.raises(ConfigError):
        ModelConfig(scalar_likelihood="laplace")
    with pytest.raises(ConfigError):
        ModelConfig(generation_feedback="sometimes")
    with pytest.raises(ConfigError):
        ModelConfig(string_loss="max")


def test_reencoded_feedback_generates_valid_deterministic_records():
    cfg = ModelConfig(latent_dim=16, char_dim=8, generation_feedback="reencoded", scalar_likelihood="gaussian",
                      field_overrides={"city": "categorical"}, categorical_escape=False)
    model = Model.create(PROTO, "Place", records=places(), config=cfg)
    a = [r.SerializeToString() for r in model.sample(50, seed=3)]
    b = [r.SerializeToString() for r in model.sample(50, seed=3)]
    assert a == b
    assert all(model.message_class.FromString(x).city in CITIES for x in a)
    fixed = model.sample(20, seed=1, where={"city": "BARRE"})
    assert all(r.city == "BARRE" for r in fixed)


def test_mixture_prior_is_fitted_saved_and_used(tmp_path):
    from synth import store
    from synth.latent_prior import fit_mixture, sample_mixture

    # fit_mixture on two well separated clusters recovers them
    g = torch.Generator().manual_seed(0)
    mu = torch.cat([torch.randn(200, 2, generator=g) * 0.1 + 5, torch.randn(100, 2, generator=g) * 0.1 - 5])
    mix = fit_mixture(mu, torch.full_like(mu, 0.2), k=2, generator=g)
    means = mix.latent_means()  # the components are stored in the data's principal axes
    order = means[:, 0].argsort()
    assert torch.allclose(means[order], torch.tensor([[-5.0, -5.0], [5.0, 5.0]]), atol=0.05)
    assert torch.allclose(mix.weights[order], torch.tensor([1 / 3, 2 / 3]), atol=1e-6)
    assert torch.allclose(mix.stds, torch.full_like(mix.stds, (0.01 + 0.04) ** 0.5), atol=0.03)
    z = sample_mixture(mix, 3000, g)
    assert abs((z[:, 0] > 0).float().mean().item() - 2 / 3) < 0.03

    cfg = ModelConfig(latent_dim=16, char_dim=8, latent_prior_components=4)
    model = Model.create(PROTO, "Place", records=places(), config=cfg)
    model.fit_latent_prior(places(), 4)
    assert model.vae.prior_means.shape == (4, 16)
    store.save(model, tmp_path / "m")
    loaded = store.load(tmp_path / "m")
    assert torch.equal(loaded.vae.prior_means, model.vae.prior_means)
    assert store.read_manifest(tmp_path / "m")["latent"]["prior"] == "mixture"
    a = [r.SerializeToString() for r in model.sample(20, seed=5)]
    assert a == [r.SerializeToString() for r in loaded.sample(20, seed=5)]
    # the samples' latents come from the mixture: each near one of the 4 component means
    zs = loaded.sample_latents(500, torch.Generator().manual_seed(0))
    nearest = torch.cdist(zs, loaded.vae.prior().latent_means()).min(1).values
    assert (nearest < 6 * loaded.vae.prior_stds.max() * 16**0.5).all()  # within 6 sigma in 16 dims


def test_training_fits_the_configured_mixture_prior(tmp_path):
    from synth import store
    from synth.train import TrainConfig, Trainer

    cfg = ModelConfig(latent_dim=16, char_dim=8, latent_prior_components=5)
    model = Model.create(PROTO, "Place", records=places(), config=cfg)
    Trainer(model, TrainConfig(steps=3, batch_size=8, eval_every=0, checkpoint_every=0), places(),
            out_dir=tmp_path / "run", progress=False).run()
    loaded = store.load(tmp_path / "run")
    assert loaded.vae.prior_weights.numel() == 5
    assert loaded.vae.prior_weights.sum().item() == pytest.approx(1.0)


def test_generation_defaults_come_from_the_model_config():
    base = dict(latent_dim=16, char_dim=8, field_overrides={"city": "categorical"})
    cold = Model.create(PROTO, "Place", records=places(), config=ModelConfig(**base, sample_temperature=0.3))
    default = [r.SerializeToString() for r in cold.sample(30, seed=2)]
    assert default == [r.SerializeToString() for r in cold.sample(30, seed=2, temperature=0.3)]
    assert default != [r.SerializeToString() for r in cold.sample(30, seed=2, temperature=1.0)]
    flat = Model.create(PROTO, "Place", records=places(), config=ModelConfig(**base, latent_temperature=1e-6))
    z = flat.sample_latents(50, torch.Generator().manual_seed(0))
    assert torch.allclose(z, z[:1].expand_as(z), atol=1e-4)  # no latent noise: every draw at the mean


def _correlated_scalar_tuple() -> ScalarTuple:
    """A 3-member gaussian ScalarTuple with a non-trivial whitening and a correlated output."""
    g = torch.Generator().manual_seed(0)
    st = ScalarTuple(3, ScalarTupleConfig(dim=4, likelihood="gaussian"), mean=[44.0, -72.5, 10.0],
                     cov=[[0.09, 0.05, 0.0], [0.05, 0.16, 0.02], [0.0, 0.02, 4.0]])
    with torch.no_grad():
        for p in (st.dec.weight, st.dec.bias, st.scale.weight, st.scale.bias):
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return st


def test_a_condition_on_some_scalar_tuple_members_draws_the_others_from_their_conditional():
    """where lat=... on (lat, lon, elevation): the textbook Gaussian conditional, computed here in numpy."""
    import numpy as np

    st = _correlated_scalar_tuple()
    emb = torch.full((40000, 4), 0.3)
    with torch.no_grad():
        mean, cov = (t[0].numpy() for t in st.value_distribution(emb[:1]))
    fixed, free = [0], [1, 2]
    value = mean[0] + 0.2  # off the unconditional mean, so the shift is visible
    gain = cov[np.ix_(free, fixed)] @ np.linalg.inv(cov[np.ix_(fixed, fixed)])
    want_mean = mean[free] + gain @ (np.array([value]) - mean[fixed])
    want_cov = cov[np.ix_(free, free)] - gain @ cov[np.ix_(fixed, free)]

    draws = st.decode_given(emb, torch.tensor(fixed), torch.tensor([value]),
                            generator=torch.Generator().manual_seed(1)).numpy()
    assert (draws[:, 0] == value).all()  # the fixed member is exactly the condition
    assert np.allclose(draws[:, free].mean(0), want_mean, atol=4 * np.sqrt(np.diag(want_cov) / len(draws)))
    assert np.allclose(np.cov(draws[:, free].T), want_cov, rtol=0.05, atol=1e-4)
    greedy = st.decode_given(emb[:2], torch.tensor(fixed), torch.tensor([value]), greedy=True).numpy()
    assert np.allclose(greedy[:, free], want_mean, rtol=1e-6)


def test_the_marginal_likelihood_of_some_members_is_the_gaussian_marginal():
    st = _correlated_scalar_tuple()
    emb = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    mean, cov = st.value_distribution(emb)
    values = torch.tensor([44.1, 9.0], dtype=torch.float64)
    fixed = torch.tensor([0, 2])
    ref = torch.distributions.MultivariateNormal(mean[:, fixed], cov[:, fixed][:, :, fixed]).log_prob(values)
    nll = st.marginal_nll(emb, fixed, values).double()
    # the same up to the dropped constant (k/2) log(2 pi), row by row
    torch.testing.assert_close(-nll - ref, torch.full((5,), math.log(2 * math.pi), dtype=torch.float64), atol=1e-3, rtol=0)


@pytest.mark.parametrize("value", ["NOWHERE", ""])
def test_where_on_an_unseen_or_empty_categorical_value_conditions_through_the_escape(value):
    """The default recipe: city is categorical with an escape, so `where` and encode accept any
    value, and the other fields are still generated."""
    model = Model.create(PROTO, "Place", records=places(), config=ModelConfig(latent_dim=16, char_dim=8))
    city = next(n for n in walk(model.plan) if n.path == "city")
    assert isinstance(city, CategoricalNode) and city.other is not None
    out = model.sample(6, seed=0, where={"city": value})
    assert [r.city for r in out] == [value] * 6
    assert all(math.isfinite(r.lat) and math.isfinite(r.lon) for r in out)
    mu, _ = model.encode([{"city": value, "zip": "05440"}])
    assert mu.shape == (1, 16) and torch.isfinite(mu).all()
