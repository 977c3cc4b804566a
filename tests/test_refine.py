"""Semi-amortised encoding (synth/refine.py): `encode` refines the encoder's mean on each
record's own reconstruction loss; the guard keeps fields from paying for others; the
settings validate, and the paper's config and old manifests read them as documented."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from schemas import ADDRESS_PROTO, NESTED_PROTO, address_records, nested_records, tiny
from synth import store
from synth.errors import ConfigError, InvalidArgument
from synth.model import Model
from synth.model_config import LEGACY, PAPER, ModelConfig
from synth.refine import refine_latents
from synth.train.config import TuneConfig


@pytest.fixture(scope="module")
def nested() -> Model:
    torch.manual_seed(0)
    return Model.create(NESTED_PROTO, "Customer", records=nested_records(), config=tiny())


def _terms(model: Model, records, z=None, steps=0, guard=0.0, temperatures=None):
    """Per-field reconstruction losses (fields, B) at the encoder's mean refined by `steps`."""
    batch = model.codec.encode(model.messages(records))
    model.vae.eval()
    with torch.no_grad():
        mu, enc = model.vae.encode(batch)
    z = refine_latents(model.vae, batch, mu, enc, steps, 0.05, guard, temperatures)
    with torch.no_grad():
        return model.vae.reconstruction_terms(batch, z, enc, temperatures), z, mu


def test_refinement_lowers_every_records_reconstruction_loss(nested):
    records = nested_records()
    start, _, mu = _terms(nested, records)
    refined, z, _ = _terms(nested, records, steps=30)
    assert (refined.sum(0) < start.sum(0)).all()  # each record's loss, not only the mean
    assert not torch.equal(z, mu)
    # encode's default is the configured refinement; refine_steps=0 is the encoder's mean itself
    assert nested.config.encode_refine_steps > 0
    torch.testing.assert_close(nested.encode(records, refine_steps=0)[0], mu)
    with pytest.raises(InvalidArgument):
        nested.encode(records, refine_steps=-1)


def test_the_guard_stops_fields_paying_for_others(nested):
    records = nested_records()
    start, _, _ = _terms(nested, records)
    rise = {g: float(torch.relu(_terms(nested, records, steps=30, guard=g)[0] - start).sum())
            for g in (0.0, 100.0)}
    assert rise[0.0] > 0  # plain likelihood does let some field get worse ...
    assert rise[100.0] < 0.5 * rise[0.0]  # ... the guard much less


def test_each_head_is_scored_at_the_models_leaf_temperature(nested):
    """A head widened by calibration weighs in the refinement as the widened head: its
    residuals count 1/t as much, and encode uses the temperatures the model stores."""
    records = nested_records()
    widened = {"shop:Geo#floats": 40.0, "shop:Customer:status": 3.0}
    plain, z_plain, _ = _terms(nested, records)
    tempered, _, _ = _terms(nested, records, temperatures=widened)
    assert plain.shape == tempered.shape and not torch.allclose(plain, tempered)
    assert torch.equal(_terms(nested, records, temperatures={})[0], plain)  # no temperature: as trained
    _, z_tempered, _ = _terms(nested, records, steps=30, temperatures=widened)
    _, z_raw, _ = _terms(nested, records, steps=30)
    assert not torch.allclose(z_tempered, z_raw)
    before = nested.config
    try:
        nested.config = dataclasses.replace(before, leaf_temperatures=widened, encode_refine_steps=30,
                                            encode_refine_lr=0.05, encode_refine_guard=0.0)
        torch.testing.assert_close(nested.encode(records)[0], z_tempered)
    finally:
        nested.config = before


def test_records_with_nothing_to_refine_come_back_unchanged():
    from schemas import schema

    m = Model.create(schema('syntax = "proto3"; message E {}', "E"), records=[{}] * 3, config=tiny())
    mu, sigma = m.encode([{}, {}])
    torch.testing.assert_close(mu, m.encode([{}, {}], refine_steps=0)[0])


def test_settings_validate_and_read_as_documented(tmp_path):
    with pytest.raises(ConfigError):
        ModelConfig(encode_refine_steps=-1)
    with pytest.raises(ConfigError):
        ModelConfig(encode_refine_lr=0.0)
    with pytest.raises(ConfigError):
        ModelConfig(encode_refine_guard=float("inf"))
    with pytest.raises(ConfigError):
        TuneConfig(encoding_guards=(-1.0,))
    with pytest.raises(ConfigError):
        TuneConfig(encoding_records=0)
    assert PAPER["encode_refine_steps"] == 0  # the paper's encoder alone
    # An artifact from before refinement: the weights are what they were, and it encodes with
    # today's refinement (LEGACY leaves the setting out)
    assert "encode_refine_steps" not in LEGACY
    m = Model.create(ADDRESS_PROTO, "Address", records=address_records(16), config=tiny())
    d = store.save(m, tmp_path / "m")
    manifest = json.loads((d / store.MANIFEST).read_text())
    for key in ("encode_refine_steps", "encode_refine_lr", "encode_refine_guard"):
        del manifest["model_config"][key]
    (d / store.MANIFEST).write_text(json.dumps(manifest))
    loaded = store.load(d)
    assert loaded.config.encode_refine_steps == ModelConfig().encode_refine_steps > 0
