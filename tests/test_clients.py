"""The Python clients: torch-free, the same methods and results over REST and gRPC.

Each operation is called over both transports and the answers compared: the
same seed must give the same records whichever way they travel.
"""
from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from conftest_server import servers  # noqa: F401,F811 - pytest fixtures
from conftest_server import CLIENT_DIR, MODEL, place_records


def test_importing_the_client_loads_no_torch():
    code = ("import sys; import synth_client; from synth_client import SynthClient; "
            "import synth_client.rest_client, synth_client.grpc_client; "
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'synth.')) "
            "or m == 'synth'); print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(CLIENT_DIR)},
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def both(servers):
    rest, grpc_ = servers.rest(), servers.grpc()
    yield rest, grpc_
    rest.close()
    grpc_.close()


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(x)) for x, y in zip(a, b))


def test_models_agree(both):
    rest, grpc_ = both
    assert rest.list_models() == grpc_.list_models()
    a, b = rest.get_model(MODEL), grpc_.get_model(MODEL)
    assert a == b
    assert a.message == "test.geo.Place" and a.geo is not None and a.geo.lat == "lat"
    assert a.message_class()(city="x").city == "x"  # the FileDescriptorSet builds the record class


def test_sample_agrees_for_the_same_seed(both):
    rest, grpc_ = both
    a = rest.sample(MODEL, 40, seed=21, temperature=0.8)
    assert a == grpc_.sample(MODEL, 40, seed=21, temperature=0.8)
    assert a == list(rest.iter_sample(MODEL, 40, seed=21, temperature=0.8))
    assert a != rest.sample(MODEL, 40, seed=22, temperature=0.8)
    assert rest.sample(MODEL, 5, greedy=True, seed=1) == grpc_.sample(MODEL, 5, greedy=True, seed=1)


def test_encode_decode_interpolate_reconstruct_agree(both):
    rest, grpc_ = both
    records = place_records(4, seed=5)
    la, lb = rest.encode(MODEL, records), grpc_.encode(MODEL, records)
    assert len(la) == 4 and len(la[0].mean) == 16 and len(la[0].std) == 16
    assert all(_close(x.mean, y.mean) and _close(x.std, y.std) for x, y in zip(la, lb))

    z = [l.mean for l in la]
    assert rest.decode(MODEL, z, greedy=True) == grpc_.decode(MODEL, z, greedy=True)
    assert rest.decode(MODEL, z, seed=3) == grpc_.decode(MODEL, z, seed=3)

    ia = rest.interpolate(MODEL, records[0], records[1], steps=5, method="slerp")
    ib = grpc_.interpolate(MODEL, records[0], records[1], steps=5, method="slerp")
    assert ia.records == ib.records and len(ia.records) == 5
    assert all(_close(x, y) for x, y in zip(ia.latents, ib.latents))
    assert _close(ia.latents[0], la[0].mean, 1e-4)  # the path starts at the first record's mean

    assert rest.reconstruct(MODEL, records) == grpc_.reconstruct(MODEL, records)


def test_errors_raise_the_same_exceptions(both):
    import synth_client as sc

    for c in both:
        with pytest.raises(sc.NotFound) as e:
            c.sample("no-such-model", 1)
        assert e.value.code == "not_found" and e.value.violations[0].path == "name"
        with pytest.raises(sc.InvalidArgument) as e:
            c.decode(MODEL, [[0.0] * 3])
        assert "16" in e.value.message and e.value.violations[0].path == "latents[0]"
        with pytest.raises(sc.DataError):
            c.encode(MODEL, [{"lat": "north"}])
        with pytest.raises(sc.InvalidArgument):
            c.sample(MODEL, 2, where={"nope": 1})
        with pytest.raises(sc.TooLarge):
            list(c.iter_sample(MODEL, 10**8))
        with pytest.raises(sc.NotFound):
            c.get_job("feedface")
    assert issubclass(sc.VersionError, sc.ArtifactError) and issubclass(sc.NotFound, sc.SynthError)


def test_unreachable_server_is_unavailable():
    import synth_client as sc

    with sc.SynthClient.rest("http://127.0.0.1:9", timeout=2) as c, pytest.raises(sc.Unavailable):
        c.list_models()
    with sc.SynthClient.grpc("127.0.0.1:9", timeout=2) as c, pytest.raises(sc.Unavailable):
        c.list_models()


def test_grpc_binary_records_parse_with_the_model_class(both):
    rest, grpc_ = both
    cls = grpc_.get_model(MODEL).message_class()
    blobs = grpc_.sample(MODEL, 6, seed=8, binary=True)
    from google.protobuf import json_format

    parsed = [json_format.MessageToDict(cls.FromString(b), preserving_proto_field_name=True) for b in blobs]
    assert parsed == rest.sample(MODEL, 6, seed=8)
    # bytes go in too, and give the same latents as JSON
    assert _close(grpc_.encode(MODEL, [blobs[0]])[0].mean, rest.encode(MODEL, [parsed[0]])[0].mean)


def test_config_dicts_become_toml():
    from synth_client.base import to_toml

    cfg = {"model": {"latent_dim": 16, "field_overrides": {"a.b": "categorical"}},
           "train": {"steps": 20, "lr": 1e-3, "tuple_sampling": "SS", "beta": {"kind": "constant"}, "x": None}}
    assert tomllib.loads(to_toml(cfg)) == {
        "model": {"latent_dim": 16, "field_overrides": {"a.b": "categorical"}},
        "train": {"steps": 20, "lr": 1e-3, "tuple_sampling": "SS", "beta": {"kind": "constant"}}}
