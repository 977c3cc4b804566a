"""The wire contract package: one error table, one set of result types, current stubs, one version.

The server and the torch-free client both import `synth_contract`; these tests
check that nothing else defines the contract, that the dependency floors follow
the generated code, and that a fresh virtualenv with only the client (no torch)
talks to a real server.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import venv
from importlib import metadata
from pathlib import Path

import grpc
import pytest

import synth
import synth_client
import synth_contract
from conftest_server import MODEL, ROOT, servers  # noqa: F401 - pytest fixture
from synth import errors
from synth_contract import errors as contract_errors
from synth_contract.results import Job, JobError, job_from_json, model_detail_from_json, to_json

CONTRACT = ROOT / "contract" / "synth_contract"


def _domain_errors() -> list[type[errors.SynthError]]:
    return [c for c in vars(contract_errors).values()
            if isinstance(c, type) and issubclass(c, errors.SynthError) and c is not errors.SynthError]


def test_every_error_class_has_a_wire_row_and_a_code():
    for cls in _domain_errors():
        wire = contract_errors.wire_for(cls)
        assert grpc.StatusCode[wire.grpc]  # a real gRPC code name
        assert contract_errors.BY_CODE[cls.code] is cls
    assert contract_errors.wire_for(errors.InvalidArgument) == (400, "INVALID_ARGUMENT")
    assert contract_errors.wire_for(errors.VersionError) == (500, "INTERNAL")  # inherits ArtifactError's row
    assert contract_errors.wire_for(KeyError) == (500, "INTERNAL")


def test_library_server_and_client_raise_the_same_classes():
    assert errors.NotFound is contract_errors.NotFound is synth_client.NotFound
    from synth.service import ModelDetail

    assert synth_client.ModelDetail is ModelDetail  # results too
    err = contract_errors.error_from_wire("not_found", "no model x", {"violations": [{"path": "name",
                                                                                       "message": "unknown"}]})
    assert type(err) is errors.NotFound and err.violations == [errors.Violation("name", "unknown")]
    # a reply without a code falls back on the transport status
    assert type(contract_errors.error_from_wire(None, "x", http_status=413)) is errors.TooLarge
    assert type(contract_errors.error_from_wire(None, "x", grpc_code="DEADLINE_EXCEEDED")) is errors.Unavailable


def test_result_json_round_trips():
    job = Job("j1", "m", "failed", 3, 10, {"loss": 1.5}, {"step": 3.0}, JobError("invalid_data", "bad", {"a": 1}),
              created_at=1.0, started_at=2.0, finished_at=3.0)
    assert job_from_json(json.loads(json.dumps(to_json(job)))) == job
    detail = synth_client.ModelDetail("m", "pkg.M", [synth_client.Field("a", "a", "string", False)], 8, "local",
                                      None, proto="syntax", file_descriptor_set=b"\x00\xff")
    assert model_detail_from_json(json.loads(json.dumps(to_json(detail)))) == detail


def test_committed_stubs_are_current_and_the_only_copy():
    proc = subprocess.run([sys.executable, "-m", "synth_contract.gen_proto", "--check", "--package", str(CONTRACT)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"run `python -m synth_contract.gen_proto`:\n{proc.stdout}{proc.stderr}"
    stubs = sorted(p.relative_to(ROOT) for p in ROOT.rglob("synthesizer_pb2*.py")
                   if ".venv" not in p.parts and "build" not in p.parts)
    assert stubs == [Path("contract/synth_contract/_proto/synthesizer_pb2.py"),
                     Path("contract/synth_contract/_proto/synthesizer_pb2_grpc.py")]


def test_installed_contract_matches_the_source_tree():
    """pip installs the contract as a copy; `make install` refreshes it when the source changes."""
    installed = Path(synth_contract.__file__).parent
    for src in CONTRACT.rglob("*.py"):
        assert (installed / src.relative_to(CONTRACT)).read_text() == src.read_text(), \
            f"{src} differs from the installed copy: run `make install`"


def test_dependency_floors_follow_the_generated_stubs():
    pb2 = (CONTRACT / "_proto" / "synthesizer_pb2.py").read_text()
    grpc_py = (CONTRACT / "_proto" / "synthesizer_pb2_grpc.py").read_text()
    protobuf_gen = re.search(r"Protobuf Python Version: ([\d.]+)", pb2).group(1)
    grpc_gen = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_py).group(1)
    for pyproject in (ROOT / "pyproject.toml", ROOT / "contract" / "pyproject.toml",
                      ROOT / "clients" / "python" / "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        reqs = project.get("dependencies", []) + sum(project.get("optional-dependencies", {}).values(), [])
        for req in reqs:
            name = re.match(r"[A-Za-z0-9_.-]+", req).group(0).lower()
            floor = re.search(r">=([\d.]+)", req)
            if name == "protobuf":
                assert floor and floor.group(1) == protobuf_gen, (pyproject, req)
            if name.startswith("grpcio") and name != "grpcio-tools" or name == "grpcio-tools":
                assert floor and floor.group(1) == grpc_gen, (pyproject, req)


def test_one_version_everywhere():
    version = synth.__version__
    assert metadata.version("protosynth") == version
    assert metadata.version("protosynth-contract") == version == synth_contract.__version__
    assert metadata.version("protosynth-client") == version == synth_client.__version__
    out = subprocess.run([sys.executable, "-m", "synth.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"protosynth {version}"


def _imports(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def test_layering_server_never_imports_the_client_and_rest_needs_no_grpc():
    server = _imports("import synth.server.main, synth.server.rest.app, synth.server.grpc.server")
    assert not any(m == "synth_client" or m.startswith("synth_client.") for m in server)
    rest = _imports("import synth.server.rest.app")
    assert not any(m == "grpc" or m.startswith("grpc.") for m in rest)
    library = _imports("import synth.model, synth.train, synth.service, synth.eval.report")
    assert not any(m.startswith(("synth.server", "synth.cli", "fastapi", "grpc")) for m in library)


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    """A fresh virtualenv holding only `pip install ./clients/python[rest,grpc]`: no torch, no protosynth."""
    where = tmp_path_factory.mktemp("client-venv")
    venv.create(where, with_pip=True)
    py = where / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", f"{ROOT / 'clients' / 'python'}[rest,grpc]"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return py


def test_the_client_alone_in_a_fresh_virtualenv_talks_to_a_server(client_venv, servers):  # noqa: F811
    code = (f"import sys, json; from synth_client import SynthClient, NotFound\n"
            f"assert 'torch' not in sys.modules\n"
            f"r = SynthClient.rest({servers.http_url!r}).sample({MODEL!r}, 3, seed=1)\n"
            f"g = SynthClient.grpc({servers.grpc_target!r}).sample({MODEL!r}, 3, seed=1)\n"
            f"assert r == g and len(r) == 3, (r, g)\n"
            f"try:\n    SynthClient.rest({servers.http_url!r}).get_model('nope')\n"
            f"except NotFound:\n    print('ok')\n"
            f"import importlib.util; assert importlib.util.find_spec('torch') is None\n")
    proc = subprocess.run([str(client_venv), "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
