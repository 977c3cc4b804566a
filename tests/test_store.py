"""Artifacts: save -> load gives identical outputs; corrupt or foreign artifacts are refused."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from schemas import (ADDRESS_PROTO, PROTO2, RECURSIVE_PROTO, address_records, proto2_records, schema,
                     tiny, tree_records, wire)
from synth import store
from synth.errors import ArtifactError, NotFound, VersionError
from synth.model import Model

CASES = {
    "address": (lambda: schema(ADDRESS_PROTO.read_text(), "Address"), address_records),
    "proto2": (lambda: schema(PROTO2, "Order"), proto2_records),
    "recursive": (lambda: schema(RECURSIVE_PROTO, "TreeNode"), tree_records),
}


def make(name: str) -> Model:
    torch.manual_seed(1)
    s, records = CASES[name]
    model = Model.create(s(), records=records(), config=tiny(field_overrides={}))
    # non-trivial buffers: moving latent statistics and whitening statistics
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        model.vae.update_latent_stats(torch.randn(32, 16, generator=g) * 0.5 + 0.1)
    model.metadata["note"] = {"made by": "test_store", "n": 3}
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (model, artifact dir); every test that corrupts an artifact copies it first."""
    root = tmp_path_factory.mktemp("artifacts")
    return {name: (m := make(name), store.save(m, root / name)) for name in CASES}


def copy_artifact(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


# -- save -> load twin --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_gives_identical_outputs(saved, name):
    model, path = saved[name]
    loaded = store.load(path)
    records = CASES[name][1]()
    mu, sigma = model.encode(records)
    mu2, sigma2 = loaded.encode(records)
    assert torch.equal(mu, mu2) and torch.equal(sigma, sigma2)
    z = model.sample_latents(8, torch.Generator().manual_seed(0))
    assert wire(model.decode(z, greedy=True)) == wire(loaded.decode(z, greedy=True))
    assert wire(model.decode(z, seed=5)) == wire(loaded.decode(z, seed=5))
    assert wire(model.sample(16, seed=3)) == wire(loaded.sample(16, seed=3))
    assert model.loss(records).terms == loaded.loss(records).terms
    # everything that shapes the model came back
    assert loaded.config == model.config
    assert loaded.stats == model.stats
    assert loaded.schema.message_name == model.schema.message_name
    assert loaded.metadata == {"note": {"made by": "test_store", "n": 3}}
    for (k, v), (k2, v2) in zip(model.vae.state_dict().items(), loaded.vae.state_dict().items()):
        assert k == k2 and v.dtype == v2.dtype and torch.equal(v, v2), k


def test_saved_records_class_is_rebuilt_from_the_manifest(saved):
    model, path = saved["proto2"]
    loaded = store.load(path)
    assert loaded.message_class is not model.message_class  # its own pool: no clash
    m = loaded.sample(1, seed=0)[0]
    assert model.message_class.FromString(m.SerializeToString()).IsInitialized()


def test_artifact_is_safetensors_and_json_never_pickle(saved, monkeypatch):
    _, path = saved["address"]
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "weights.safetensors"]
    assert not list(path.rglob("*.pt")) and not list(path.rglob("*.pkl"))
    assert not list(path.parent.glob(".address.*"))  # no temporary directories left behind
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert manifest["message"] == "synth.examples.Address"
    assert manifest["model_config"]["latent_dim"] == 16
    assert len(manifest["weights_sha256"]) == 64

    def refuse(*a, **k):
        raise AssertionError("pickle used while loading an artifact")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    store.load(path)


def test_save_overwrites_atomically(saved, tmp_path):
    model, _ = saved["address"]
    target = tmp_path / "m"
    store.save(model, target)
    other = make("address")
    with torch.no_grad():
        next(other.vae.parameters()).add_(1.0)
    store.save(other, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    loaded = store.load(target)
    assert torch.equal(next(loaded.vae.parameters()), next(other.vae.parameters()))


# -- corrupt artifacts ---------------------------------------------------------------------------
def test_truncated_weights_are_refused(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    w = d / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ArtifactError):
        store.load(d)
    # and without a checksum to catch it, the safetensors reader's error is still an ArtifactError
    m = json.loads((d / "manifest.json").read_text())
    del m["weights_sha256"]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError):
        store.load(d)
    w.write_bytes(b"")
    with pytest.raises(ArtifactError):
        store.load(d)


def test_edited_weights_fail_the_checksum(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    w = d / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as e:
        store.load(d)
    assert "checksum" in str(e.value)


def test_missing_manifest(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    (d / "manifest.json").unlink()
    with pytest.raises(ArtifactError) as e:
        store.load(d)
    assert "manifest.json" in str(e.value)


def test_manifest_that_is_not_json(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    (d / "manifest.json").write_text("{this is not json")
    with pytest.raises(ArtifactError):
        store.load(d)
    (d / "manifest.json").write_text("[1, 2, 3]")
    with pytest.raises(ArtifactError):
        store.load(d)
    (d / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArtifactError):
        store.load(d)


def test_manifest_missing_fields_or_foreign(saved, tmp_path):
    src = saved["address"][1]
    for i, edit in enumerate([lambda m: m.pop("model_config"), lambda m: m.pop("file_descriptor_set"),
                              lambda m: m.update(file_descriptor_set="!!!"),
                              lambda m: m.update(format="someone-else"),
                              lambda m: m.update(model_config={"latent_dim": 16, "bogus": 1})]):
        d = copy_artifact(src, tmp_path / f"a{i}")
        m = json.loads((d / "manifest.json").read_text())
        edit(m)
        (d / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ArtifactError):
            store.load(d)


def test_generation_order_is_stored_and_wins_over_the_current_rule(saved, tmp_path):
    """The order the decoder was trained with is part of the artifact: a protosynth whose
    ordering rule differs (here: the config edited to the declared order) still rebuilds it."""
    model, src = saved["address"]
    d = copy_artifact(src, tmp_path / "a")
    m = json.loads((d / "manifest.json").read_text())
    order = m["fit_stats"]["field_order"]["synth.examples.Address"]
    assert order != sorted(order), "the automatic order should differ from the declared one here"
    m["model_config"]["field_order"] = "declared"
    (d / "manifest.json").write_text(json.dumps(m))
    loaded = store.load(d)
    z = model.sample_latents(8, torch.Generator().manual_seed(0))
    assert wire(loaded.decode(z, greedy=True)) == wire(model.decode(z, greedy=True))
    assert [c.path for c in loaded.plan.children] == [c.path for c in model.plan.children]


@pytest.mark.parametrize("order", [[0, 1], [0] * 8, list(range(1, 9)) + [0, 0]])
def test_stored_order_that_does_not_fit_the_schema_is_refused(saved, tmp_path, order):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    m = json.loads((d / "manifest.json").read_text())
    m["fit_stats"]["field_order"]["synth.examples.Address"] = order
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="field order"):
        store.load(d)


def test_artifact_from_before_rotated_priors_still_loads(saved, tmp_path):
    """Artifacts written before the mixture prior had a basis (axis-aligned components,
    no prior_basis / prior_center tensors) load and sample as they did."""
    from safetensors.torch import load_file, save_file

    from synth.latent_prior import fit_mixture

    model, _ = saved["address"]
    mu, sigma = model.encode(CASES["address"][1]())
    model = Model(model.schema, model.config, model.stats)
    model.vae.load_state_dict(saved["address"][0].vae.state_dict())
    model.vae.set_prior(fit_mixture(mu, sigma, 3, generator=torch.Generator().manual_seed(0), rotate=False))
    d = store.save(model, tmp_path / "old")
    state = load_file(str(d / "weights.safetensors"))
    assert state.pop("prior_basis").numel() == 0 and state.pop("prior_center").numel() == 0
    save_file(state, str(d / "weights.safetensors"))
    m = json.loads((d / "manifest.json").read_text())
    m["weights_sha256"] = store._sha256(d / "weights.safetensors")
    (d / "manifest.json").write_text(json.dumps(m))
    loaded = store.load(d)
    assert loaded.vae.prior() is not None and loaded.vae.prior().basis is None
    assert wire(loaded.sample(10, seed=4)) == wire(model.sample(10, seed=4))


def test_missing_weights(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    (d / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError) as e:
        store.load(d)
    assert "weights.safetensors" in str(e.value)


def test_weights_of_another_model_are_refused(saved, tmp_path):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    foreign = saved["proto2"][1] / "weights.safetensors"
    (d / "weights.safetensors").write_bytes(foreign.read_bytes())
    m = json.loads((d / "manifest.json").read_text())
    m["weights_sha256"] = store._sha256(d / "weights.safetensors")  # a consistent but wrong artifact
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError):
        store.load(d)


@pytest.mark.parametrize("version", [0, 2, 999, "1", None])
def test_other_format_version_is_a_version_error(saved, tmp_path, version):
    d = copy_artifact(saved["address"][1], tmp_path / "a")
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = version
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(VersionError) as e:
        store.load(d)
    assert isinstance(e.value, ArtifactError)
    text = str(e.value)
    assert str(version) in text and f"format {store.FORMAT_VERSION}" in text
    assert e.value.details == {"found": version, "expected": store.FORMAT_VERSION}


def test_unknown_model_dir_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        store.load(tmp_path / "does-not-exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError):
        store.load(tmp_path / "empty")
