"""Bounded work per request: oversized strings, non-finite or far-off numbers and huge temperatures
get a 4xx naming the field, fast, before any model work, on both transports."""
from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from conftest_server import servers  # noqa: F401 - pytest fixture
from conftest_server import MODEL, place_records
from synth.errors import InvalidArgument
from synth.service import Limits, ModelRegistry, SynthService


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def clients(servers):  # noqa: F811
    rest, grpc_ = servers.rest(), servers.grpc()
    yield {"rest": rest, "grpc": grpc_}
    rest.close()
    grpc_.close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_10kb_where_string_is_refused_fast(clients, transport):
    before, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(InvalidArgument) as e:
        clients[transport].sample(MODEL, 1, where={"city": "9" * 10_000})
    assert time.perf_counter() - t0 < 1.0
    assert [v.path for v in e.value.violations] == ["where.city"]
    assert _rss_mb() - before < 50


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_1mb_record_string_is_refused_fast(clients, transport):
    record = {**place_records(1)[0], "city": "x" * (1 << 20)}
    before, t0 = _rss_mb(), time.perf_counter()
    with pytest.raises(InvalidArgument) as e:
        clients[transport].encode(MODEL, [record])
    assert time.perf_counter() - t0 < 1.0
    assert e.value.violations[0].path == "records[0].city"
    assert "at most" in e.value.violations[0].message
    assert len(str(e.value)) < 1000  # the error names the size, it does not echo the value
    assert _rss_mb() - before < 50


def test_numbers_must_be_finite_and_near_the_training_data(servers):  # noqa: F811
    service = servers.service
    for bad in (999.0, -1e300):
        with pytest.raises(InvalidArgument) as e:
            service.sample(MODEL, 1, where={"lat": bad})
        assert e.value.violations[0].path == "where.lat"
    with pytest.raises(InvalidArgument):
        service.encode(MODEL, [{**place_records(1)[0], "lon": "Infinity"}])  # proto3 JSON spelling
    # values inside the range pass: a real training record, and a where near the data
    assert len(service.encode(MODEL, place_records(2))) == 2
    assert len(service.sample(MODEL, 2, seed=0, where={"lat": 44.0})) == 2


def test_temperature_has_a_ceiling(servers):  # noqa: F811
    with pytest.raises(InvalidArgument) as e:
        servers.service.sample(MODEL, 1, temperature=1e308)
    assert [v.path for v in e.value.violations] == ["temperature"]


def test_caps_follow_the_field_and_the_configured_maximum(servers):  # noqa: F811
    tight = SynthService(ModelRegistry(servers.models_dir, include_bundled=False), Limits(max_string_bytes=16))
    with pytest.raises(InvalidArgument):
        tight.sample(MODEL, 1, where={"city": "y" * 17})
    # the default: a small multiple of what the model generates for that field, far below 4 KiB
    with pytest.raises(InvalidArgument) as e:
        servers.service.sample(MODEL, 1, where={"city": "z" * 300})
    assert "at most" in e.value.violations[0].message


def test_the_server_setting_sets_the_encodings_gradient_steps(servers):  # noqa: F811
    """`encode_refine_steps` = 0: encode, interpolate and reconstruct use the encoder alone
    (fast); unset, each model refines as its config says."""
    fast = SynthService(ModelRegistry(servers.models_dir, include_bundled=False), Limits(encode_refine_steps=0))
    rows = place_records(3)
    model = fast.registry.model(MODEL)
    quick = np.array([l.mean for l in fast.encode(MODEL, rows)])
    np.testing.assert_allclose(quick, model.encode(rows, refine_steps=0)[0].numpy(), atol=1e-5)
    refined = np.array([l.mean for l in servers.service.encode(MODEL, rows)])
    np.testing.assert_allclose(refined, model.encode(rows)[0].numpy(), atol=1e-5)
    assert np.abs(refined - quick).max() > 1e-3  # the default does refine
    path = fast.interpolate(MODEL, rows[0], rows[1], steps=2)
    np.testing.assert_allclose(np.array(path.latents[0]), quick[0], atol=1e-5)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_error_replies_never_echo_a_large_input(clients, transport):
    # a 2 MB value where an object is expected: the error says so in a few hundred bytes
    with pytest.raises(Exception) as e:
        clients[transport].encode(MODEL, ["{" + "x" * (2 << 20)])
    assert len(str(e.value)) < 2000, len(str(e.value))


def test_error_texts_hide_server_paths():
    from synth.errors import ArtifactError
    from synth.server.errors import classify, error_json

    error, wire = classify(ArtifactError("cannot read /work/srv/models/m1/manifest.json", file="/tmp/x/y.csv"))
    body = str(error_json(error))
    assert "/work/" not in body and "/tmp/" not in body and "manifest.json" in body
    assert wire.http == 500


def test_a_refining_encode_takes_at_most_max_refined_records(servers):  # noqa: F811
    """Refinement costs gradient steps per record: past `max_refined_records` an encode or
    reconstruct is too large (413 / RESOURCE_EXHAUSTED) before any model work, with a hint,
    over both transports; the encoder alone (steps 0) still takes up to `max_records`."""
    from conftest_server import start_servers

    from synth.errors import TooLarge

    rows = place_records(4)
    capped = start_servers(servers.models_dir, Limits(max_records=500, max_refined_records=3))
    try:
        for client in (capped.rest(), capped.grpc()):
            for call in (client.encode, client.reconstruct):
                with pytest.raises(TooLarge) as e:
                    call(MODEL, rows)
                assert "--encode-refine-steps 0" in str(e.value)
            assert len(client.encode(MODEL, rows[:3])) == 3
    finally:
        capped.stop()
    fast = SynthService(ModelRegistry(servers.models_dir, include_bundled=False),
                        Limits(max_refined_records=3, encode_refine_steps=0))
    assert len(fast.encode(MODEL, rows)) == 4
