"""CLI client mode: `synth sample|encode|decode|interpolate --server URL` against real servers,
with the same output formats as local mode."""
from __future__ import annotations

import json

import pytest

from conftest_server import servers  # noqa: F401 - pytest fixture
from conftest_server import MODEL, place_records
from synth.cli import main
from synth.io import read_records
from synth import store


def run(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture(params=["rest", "grpc"])
def target(request, servers):  # noqa: F811
    return servers.http_url if request.param == "rest" else servers.grpc_target


def test_sample_over_the_wire_equals_local_sampling(capsys, servers, target):  # noqa: F811
    local = run(capsys, "sample", str(servers.models_dir / MODEL), "-n", "5", "--seed", "3")
    remote = run(capsys, "sample", MODEL, "--server", target, "-n", "5", "--seed", "3")
    assert [json.loads(x) for x in remote.splitlines()] == [json.loads(x) for x in local.splitlines()]


@pytest.mark.parametrize("fmt", ["csv", "binpb", "jsonl"])
def test_sample_formats_over_the_wire(tmp_path, capsys, servers, target, fmt):  # noqa: F811
    out = tmp_path / f"fake.{fmt}"
    run(capsys, "sample", MODEL, "--server", target, "-n", "7", "--seed", "1", "--format", fmt, "-o", str(out))
    cls = store.load(servers.models_dir / MODEL).message_class
    assert len(read_records(out, cls).records) == 7


def test_encode_decode_interpolate_over_the_wire(tmp_path, capsys, servers, target):  # noqa: F811
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in place_records(2)))
    latents = tmp_path / "latents.jsonl"
    run(capsys, "encode", MODEL, "--server", target, "-i", str(records), "-o", str(latents))
    rows = [json.loads(x) for x in latents.read_text().splitlines()]
    assert len(rows) == 2 and len(rows[0]["mean"]) == 16 and len(rows[0]["std"]) == 16
    decoded = run(capsys, "decode", MODEL, "--server", target, "-i", str(latents), "--greedy")
    local = run(capsys, "decode", str(servers.models_dir / MODEL), "-i", str(latents), "--greedy")
    assert [json.loads(x) for x in decoded.splitlines()] == [json.loads(x) for x in local.splitlines()]
    path = run(capsys, "interpolate", MODEL, "--server", target, "-i", str(records), "--steps", "4")
    assert len(path.splitlines()) == 4


def test_server_errors_are_printed_not_raised(capsys, target):
    assert main(["sample", "no-such-model", "--server", target, "-n", "1"]) == 2
    assert "error:" in capsys.readouterr().err
