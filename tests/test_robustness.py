"""Issue 9: odd-but-valid inputs and faults get a mapped 4xx (or the documented 5xx), on the wire.

Each case goes through a real socket: REST with httpx, gRPC with a real channel and
the generated stubs, so what is checked is what clients see (docs/reliability.md
lists every case and its answer).
"""
from __future__ import annotations

import logging
import shutil
import time

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest_server import servers  # noqa: F401 - pytest fixture
from conftest_server import MODEL, BrokenService, place_records, start_http
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc

NAN, INF = float("nan"), float("inf")


def stub_at(target: str) -> pb_grpc.SynthesizerStub:
    return pb_grpc.SynthesizerStub(grpc.insecure_channel(target))


def struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def grpc_error(call) -> tuple[grpc.StatusCode, str, list[str]]:
    """(code, ErrorInfo reason, violation paths) of a failed call."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    status = rpc_status.from_call(info.value)
    reason, paths = "", []
    for d in status.details if status else []:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            d.Unpack(ei)
            reason = ei.reason
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            paths = [v.field for v in br.field_violations]
    return info.value.code(), reason, paths


# ----------------------------------------------------------------------------- NaN and infinity

@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("field", ["lat", "city"])
def test_non_finite_numbers_in_a_grpc_struct_are_invalid_argument(servers, value, field):
    stub = stub_at(servers.grpc_target)
    record = {**place_records(1)[0], field: value}
    code, reason, paths = grpc_error(lambda: stub.Encode(
        pb.EncodeRequest(model=MODEL, records=[pb.Record(json=struct(record))]), timeout=30))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_data")
    assert paths == ["records[0]"]
    code, reason, paths = grpc_error(lambda: list(stub.Sample(
        pb.SampleRequest(model=MODEL, n=2, where=struct({field: value})), timeout=30)))
    assert (code, reason, paths) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", [f"where.{field}"])


def test_non_finite_numbers_in_rest_json_are_4xx(servers):
    # Python's json (and so FastAPI) reads the NaN / Infinity literals: they must not reach the model.
    url = f"{servers.http_url}/v1/models/{MODEL}"
    headers = {"content-type": "application/json"}
    r = httpx.post(url + ":sample", content=b'{"n": 1, "where": {"lat": NaN}}', headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["details"]["violations"][0]["path"] == "where.lat"
    body = b'{"records": [{"city": "a", "lat": Infinity}]}'
    r = httpx.post(url + ":encode", content=body, headers=headers, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_data"


# ----------------------------------------------------------------------------- huge uploaded schemas

def _upload(servers, proto: str, message: str) -> httpx.Response:
    files = {"proto": ("big.proto", proto.encode()), "data": ("d.jsonl", b'{"s": "a"}\n')}
    return httpx.post(servers.http_url + "/v1/jobs", data={"message": message}, files=files, timeout=60)


WIDE = 'syntax = "proto3";\nmessage Wide {\n' + "".join(f"  string f{i} = {i + 1};\n" for i in range(5000)) + "}\n"
CHAIN = ('syntax = "proto3";\n' + "".join(f"message M{i} {{ M{i + 1} next = 1; string s = 2; }}\n"
                                          for i in range(1000)) + "message M1000 { string s = 1; }\n")


@pytest.mark.parametrize("proto,message,words", [(WIDE, "Wide", "5000 fields"), (CHAIN, "M0", "nests more than")])
def test_huge_schemas_are_refused_with_a_422_and_no_traceback(servers, caplog, proto, message, words):
    caplog.set_level(logging.WARNING)
    t0 = time.perf_counter()
    r = _upload(servers, proto, message)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_schema" and words in err["message"] and "limit" in err["details"]
    assert time.perf_counter() - t0 < 10
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.ERROR]
    code, reason, _ = grpc_error(lambda: stub_at(servers.grpc_target).CreateJob(
        pb.CreateJobRequest(proto=proto, message=message, data=b'{"s": "a"}\n', data_filename="d.jsonl"),
        timeout=60))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_schema")


def test_schema_limits_are_configurable_and_protobuf_failures_are_schema_errors():
    from synth.errors import SchemaError
    from synth.schema.loader import compile_proto_text, from_file_set

    chain = compile_proto_text(CHAIN)
    with pytest.raises(SchemaError, match="nests more than 5"):
        from_file_set(chain, "M0", max_depth=5)
    wide = compile_proto_text(WIDE)
    with pytest.raises(SchemaError, match="limit is 100"):
        from_file_set(wide, "Wide", max_fields=100)
    # without limits (a stored artifact), protobuf's own failures are still SchemaErrors, not bugs
    for fds, message in ((wide, "Wide"), (chain, "M0")):
        with pytest.raises(SchemaError, match="protobuf cannot build"):
            from_file_set(fds, message)
    assert from_file_set(chain, "M990", max_depth=32).descriptor.name == "M990"  # a short tail is fine


# ----------------------------------------------------------------------------- REST bugs keep the connection

def test_a_rest_500_keeps_the_keep_alive_connection(servers, caplog):
    from synth.server.rest.app import create_app

    url, stop = start_http(create_app(BrokenService(servers.service)))
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            ports = []
            for _ in range(2):
                r = c.get("/v1/models")
                assert r.status_code == 500 and r.json()["error"]["code"] == "internal"
                assert r.headers.get("connection", "").lower() != "close"
                ports.append(r.extensions["network_stream"].get_extra_info("client_addr")[1])
            assert ports[0] == ports[1]  # the same TCP connection answered both
    finally:
        stop()
    assert caplog.text.count("Traceback") <= 2  # logged once per bug (by classify), not again by uvicorn


# ----------------------------------------------------------------------------- gRPC codes on the wire

TICKET_PROTO = 'syntax = "proto3";\nmessage Ticket { string title = 1; int32 priority = 2; }\n'
TICKETS = b"".join(b'{"title": "t%d", "priority": %d}\n' % (i % 3, i % 4) for i in range(40))
RUN_TOML = '[model]\nlatent_dim = 8\nchar_dim = 8\n[train]\nsteps = 400\nbatch_size = 8\neval_every = 0\n' \
           'device = "cpu"\n'


def test_grpc_already_exists_for_a_taken_model_name(servers):
    request = pb.CreateJobRequest(proto=TICKET_PROTO, message="Ticket", data=TICKETS, data_filename="t.jsonl",
                                  config=RUN_TOML, name=MODEL)
    code, reason, paths = grpc_error(lambda: stub_at(servers.grpc_target).CreateJob(request, timeout=60))
    assert (code, reason, paths) == (grpc.StatusCode.ALREADY_EXISTS, "already_exists", ["name"])


def test_grpc_failed_precondition_when_cancelling_a_finished_job(servers):
    stub = stub_at(servers.grpc_target)
    job = stub.CreateJob(pb.CreateJobRequest(proto=TICKET_PROTO, message="Ticket", data=TICKETS,
                                             data_filename="t.jsonl", config=RUN_TOML, name="issue9-cancelled"),
                         timeout=60)
    stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=30)
    deadline = time.monotonic() + 60
    while stub.GetJob(pb.GetJobRequest(id=job.id), timeout=30).state != pb.JOB_STATE_CANCELLED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    code, reason, _ = grpc_error(lambda: stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=30))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "failed_precondition")


def test_grpc_cancelled_when_the_client_cancels_a_stream(servers):
    # The service never raises Cancelled itself: CANCELLED on the wire is the client going away.
    stub = stub_at(servers.grpc_target)
    stream = stub.Sample(pb.SampleRequest(model=MODEL, n=100_000, seed=1), timeout=60)
    assert len(next(stream).records) == servers.service.limits.sample_chunk
    stream.cancel()
    with pytest.raises(grpc.RpcError) as e:
        for _ in stream:
            pass
    assert e.value.code() == grpc.StatusCode.CANCELLED


def test_grpc_internal_for_a_broken_model_file(servers, tmp_path):
    from synth.server.grpc.server import create_grpc_server
    from synth.service import ModelRegistry, SynthService

    models = tmp_path / "models"
    shutil.copytree(servers.models_dir / MODEL, models / "broken")
    (models / "broken" / "weights.safetensors").write_bytes(b"\x00not safetensors")
    service = SynthService(ModelRegistry(models, include_bundled=False), servers.service.limits)
    server, port = create_grpc_server(service, "127.0.0.1:0")
    server.start()
    try:
        stub = stub_at(f"127.0.0.1:{port}")
        code, reason, _ = grpc_error(lambda: list(stub.Sample(pb.SampleRequest(model="broken", n=1), timeout=30)))
        assert (code, reason) == (grpc.StatusCode.INTERNAL, "invalid_artifact")
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Sample(pb.SampleRequest(model="broken", n=1), timeout=30))
        assert str(tmp_path) not in e.value.details()  # server paths stay on the server
    finally:
        server.stop(None)
        service.close()


class _FailsAfterFirstChunk:
    """The real service, except that sampling breaks after its first chunk (say, out of memory)."""

    def __init__(self, real):
        self.real, self.limits, self.registry = real, real.limits, real.registry

    def __getattr__(self, name):
        return getattr(self.real, name)

    def sample_chunks(self, *args, **kwargs):
        chunks = self.real.sample_chunks(*args, **kwargs)

        def generate():
            yield next(chunks)
            raise RuntimeError("CUDA out of memory (injected)")

        return generate()


def test_an_error_in_the_middle_of_a_sample_stream(servers, caplog):
    from synth.server.grpc.server import create_grpc_server
    from synth.server.rest.app import create_app

    service = _FailsAfterFirstChunk(servers.service)
    server, port = create_grpc_server(service, "127.0.0.1:0")
    server.start()
    url, stop = start_http(create_app(service))
    try:
        stream = stub_at(f"127.0.0.1:{port}").Sample(pb.SampleRequest(model=MODEL, n=100, seed=3), timeout=30)
        first = next(stream)
        assert len(first.records) == servers.service.limits.sample_chunk
        code, reason, _ = grpc_error(lambda: list(stream))
        assert (code, reason) == (grpc.StatusCode.INTERNAL, "internal")
        # REST: the 200 is already sent, so the error is the stream's last line
        r = httpx.post(f"{url}/v1/models/{MODEL}:sample", json={"n": 100, "seed": 3},
                       headers={"accept": "application/x-ndjson"}, timeout=30)
        lines = r.text.splitlines()
        assert r.status_code == 200 and len(lines) == servers.service.limits.sample_chunk + 1
        assert '"error"' in lines[-1] and '"internal"' in lines[-1] and "CUDA" not in r.text
    finally:
        stop()
        server.stop(None)
    assert "CUDA out of memory (injected)" in caplog.text  # ... in the operator's log
