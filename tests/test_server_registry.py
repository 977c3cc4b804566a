"""The service layer without a transport: model registry, limits, the error table, committed stubs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from conftest_server import MODEL, ROOT, build_models_dir, place_records
from synth import errors, store
from synth.service import Limits, ModelRegistry, SynthService, check_name, geo_fields, FieldInfo


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return build_models_dir(tmp_path_factory.mktemp("registry"))


@pytest.mark.parametrize("name", ["..", "../x", "a/b", ".hidden", "", "x" * 101, "a\\b", "na me", "a..b"])
def test_names_that_could_escape_are_refused(name):
    with pytest.raises(errors.InvalidArgument):
        check_name(name)


def test_lazy_load_cache_and_reload(models_dir, tmp_path):
    shutil.copytree(models_dir, tmp_path / "m")
    reg = ModelRegistry(tmp_path / "m", include_bundled=False)
    assert reg.names() == [MODEL]
    info = reg.info(MODEL)
    assert info.source == "local" and info.geo is not None
    assert reg._entries[MODEL].model is None  # listing does not load weights
    m1 = reg.model(MODEL)
    assert reg.model(MODEL) is m1
    # retrained under the same name: picked up without a restart
    manifest = tmp_path / "m" / MODEL / store.MANIFEST
    st = manifest.stat()
    os.utime(manifest, (st.st_atime, st.st_mtime + 5))
    assert reg.model(MODEL) is not m1
    with pytest.raises(errors.NotFound) as e:
        reg.model("absent")
    assert e.value.details["available"] == [MODEL]


def test_bundled_models_are_listed_and_local_ones_win(models_dir, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    shutil.copytree(models_dir / MODEL, bundled / "vermont-address")
    shutil.copytree(models_dir / MODEL, bundled / MODEL)
    monkeypatch.setattr(store, "bundled_models", lambda: {p.name: p for p in bundled.iterdir()})
    reg = ModelRegistry(models_dir)
    assert reg.names() == [MODEL, "vermont-address"]
    assert reg.info("vermont-address").source == "bundled"
    assert reg.info(MODEL).source == "local"
    assert ModelRegistry(None).names() == [MODEL, "vermont-address"]


def test_a_broken_artifact_is_skipped_in_listings_and_a_500_when_used(models_dir, tmp_path):
    shutil.copytree(models_dir, tmp_path / "m")
    broken = tmp_path / "m" / "broken"
    shutil.copytree(models_dir / MODEL, broken)
    manifest = json.loads((broken / store.MANIFEST).read_text())
    manifest["format_version"] = 999
    (broken / store.MANIFEST).write_text(json.dumps(manifest))
    service = SynthService(ModelRegistry(tmp_path / "m", include_bundled=False))
    assert [m.name for m in service.list_models()] == [MODEL]
    with pytest.raises(errors.VersionError):
        service.get_model("broken")
    from synth_contract.errors import wire_for

    assert wire_for(errors.VersionError).http == 500
    assert service.health() == ([MODEL], ["broken"])  # /healthz counts only the healthy one


def test_limits_raise_too_large(models_dir):
    service = SynthService(ModelRegistry(models_dir, include_bundled=False),
                           Limits(max_sample=5, max_records=2, max_interpolate_steps=4))
    with pytest.raises(errors.TooLarge):
        service.sample(MODEL, 6)
    with pytest.raises(errors.TooLarge):
        service.encode(MODEL, place_records(3))
    with pytest.raises(errors.TooLarge):
        service.interpolate(MODEL, {}, {}, steps=5)
    with pytest.raises(errors.InvalidArgument):
        service.sample(MODEL, 2, temperature=0)
    with pytest.raises(errors.InvalidArgument):
        service.sample(MODEL, 2, seed=-1)
    assert len(list(service.sample_chunks(MODEL, 0))) == 0


def test_geo_fields_are_detected_by_name():
    f = lambda name, path=None, t="double": FieldInfo(name, path or name, t, False)  # noqa: E731
    assert geo_fields([f("Latitude"), f("lng")]).lat == "Latitude"
    assert geo_fields([f("lat", "a.lat"), f("lon", "b.lon")]) is None  # different parents
    assert geo_fields([f("lat", t="string"), f("lon")]) is None
    pair = geo_fields([f("lat", "geo.lat"), f("longitude", "geo.longitude")])
    assert (pair.lat, pair.lon) == ("geo.lat", "geo.longitude")


