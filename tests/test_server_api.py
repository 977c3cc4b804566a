"""The REST and gRPC adapters against real servers: shapes, streaming, `where`, and the error table.

Every bad request is checked on both transports at the wire level (HTTP status
and body; gRPC code and rich-status details), so the one-table promise of
server/errors.py is tested where clients see it.
"""
from __future__ import annotations

import json

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from conftest_server import client, servers  # noqa: F401,F811 - pytest fixtures
from conftest_server import MODEL, BrokenService, place_records, start_http
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc


def post(servers, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(servers.http_url + path, json=body, timeout=60, **kwargs)


def stub(servers) -> pb_grpc.SynthesizerStub:
    return pb_grpc.SynthesizerStub(grpc.insecure_channel(servers.grpc_target))


def struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


# ----------------------------------------------------------------------------- basics

def test_healthz_docs_and_openapi(servers):
    health = httpx.get(servers.http_url + "/healthz").json()
    assert health["status"] == "ok" and health["models"] >= 1  # >1 once a job test has trained one
    assert httpx.get(servers.http_url + "/docs").status_code == 200
    paths = httpx.get(servers.http_url + "/openapi.json").json()["paths"]
    for p in ("/v1/models", "/v1/models/{name}", "/v1/models/{name}:sample", "/v1/models/{name}:encode",
              "/v1/models/{name}:decode", "/v1/models/{name}:interpolate", "/v1/models/{name}:reconstruct",
              "/v1/models/{name}:map", "/v1/models/{name}:geojson", "/v1/jobs", "/v1/jobs/{job_id}",
              "/v1/jobs/{job_id}:cancel", "/healthz"):
        assert p in paths, p


def test_list_and_get_model(servers):
    models = httpx.get(servers.http_url + "/v1/models").json()["models"]
    m = next(m for m in models if m["name"] == MODEL)
    assert m["message"] == "test.geo.Place" and m["latent_dim"] == 16
    assert [f["name"] for f in m["fields"]] == ["city", "postcode", "lat", "lon"]
    assert m["geo"] == {"lat": "lat", "lon": "lon"}
    d = httpx.get(f"{servers.http_url}/v1/models/{MODEL}").json()
    assert "message Place" in d["proto"] and "string postcode" in d["proto"]
    assert d["model_config"]["latent_dim"] == 16
    assert d["metrics"] == {"p_value_mean": 0.5} and d["summary"] == {"note": "test fixture"}


def test_grpc_health_service(servers):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(servers.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "synth.v1.Synthesizer"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_seeded_sample_matches_the_library(servers):
    """Chunk 0 uses the seed itself: the API gives what Model.sample gives for the same seed."""
    from synth.records import to_dict

    model = servers.service.registry.model(MODEL)
    expected = [to_dict(m) for m in model.sample(10, seed=7)]
    assert post(servers, f"/v1/models/{MODEL}:sample", {"n": 10, "seed": 7}).json()["records"] == expected


def test_ndjson_stream_equals_json_and_spans_chunks(servers):
    body = {"n": 40, "seed": 3}  # the test servers generate in chunks of 16
    records = post(servers, f"/v1/models/{MODEL}:sample", body).json()["records"]
    r = post(servers, f"/v1/models/{MODEL}:sample", body, headers={"accept": "application/x-ndjson"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 40 and lines == records
    assert len({json.dumps(x, sort_keys=True) for x in records}) > 30  # chunks differ: seeds are derived


def test_csv_download(servers):
    r = post(servers, f"/v1/models/{MODEL}:sample", {"n": 5, "seed": 1}, headers={"accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0] == "city,postcode,lat,lon"


def test_grpc_sample_streams_chunks(servers):
    replies = list(stub(servers).Sample(pb.SampleRequest(model=MODEL, n=40, seed=3), timeout=60))
    assert [len(r.records) for r in replies] == [16, 16, 8]


@pytest.mark.parametrize("where", [{"postcode": "05401"}, {"city": "Rutland", "postcode": "05701"},
                                   {"lat": 44.0}])
def test_where_is_honoured_on_every_record(client, where):
    records = client.sample(MODEL, 60, seed=11, where=where)
    assert len(records) == 60
    assert all(all(r.get(k) == v for k, v in where.items()) for r in records)


def test_where_in_a_stream(servers):
    r = post(servers, f"/v1/models/{MODEL}:sample", {"n": 40, "seed": 2, "where": {"postcode": "05602"}},
             headers={"accept": "application/x-ndjson"})
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert len(rows) == 40 and all(row["postcode"] == "05602" for row in rows)


# ----------------------------------------------------------------------------- the error table

def _rest_error(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def _grpc_error(call) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """(code, ErrorInfo reason, BadRequest violations) of a failed call."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    e = info.value
    status = rpc_status.from_call(e)
    reason, violations = "", []
    for d in status.details if status else []:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            ei = error_details_pb2.ErrorInfo()
            d.Unpack(ei)
            reason = ei.reason
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            violations = [(v.field, v.description) for v in br.field_violations]
    return e.code(), reason, violations


BAD = pytest.param
CASES = [
    # (rest path, rest body, grpc method, grpc request, http status, grpc code, error code, violation path)
    BAD("/v1/models/nope:sample", {"n": 1}, "Sample", pb.SampleRequest(model="nope", n=1),
        404, grpc.StatusCode.NOT_FOUND, "not_found", "name", id="unknown-model"),
    BAD(f"/v1/models/{MODEL}:sample", {"n": 3, "where": {"zipcode": "05401"}}, "Sample",
        pb.SampleRequest(model=MODEL, n=3, where=struct({"zipcode": "05401"})),
        400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "zipcode", id="bad-where-field"),
    BAD(f"/v1/models/{MODEL}:decode", {"latents": [[0.0] * 5]}, "Decode",
        pb.DecodeRequest(model=MODEL, latents=[pb.Vector(values=[0.0] * 5)]),
        400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "latents[0]", id="wrong-latent-size"),
    BAD(f"/v1/models/{MODEL}:encode", {"records": [{"city": "x"}, {"lat": "north"}]}, "Encode",
        pb.EncodeRequest(model=MODEL, records=[pb.Record(json=struct({"city": "x"})),
                                               pb.Record(json=struct({"lat": "north"}))]),
        422, grpc.StatusCode.INVALID_ARGUMENT, "invalid_data", "records[1]", id="malformed-record"),
    BAD(f"/v1/models/{MODEL}:reconstruct", {"records": [{"no_such_field": 1}]}, "Reconstruct",
        pb.ReconstructRequest(model=MODEL, records=[pb.Record(json=struct({"no_such_field": 1}))]),
        422, grpc.StatusCode.INVALID_ARGUMENT, "invalid_data", "records[0]", id="unknown-field-in-record"),
    BAD(f"/v1/models/{MODEL}:sample", {"n": 100_000}, "Sample", pb.SampleRequest(model=MODEL, n=10_000_000),
        413, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large", "n", id="n-too-large"),
    BAD(f"/v1/models/{MODEL}:interpolate", {"from": {}, "to": {}, "steps": 1}, "Interpolate",
        pb.InterpolateRequest(model=MODEL, from_record=pb.Record(json=struct({})),
                              to_record=pb.Record(json=struct({})), steps=1),
        400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "steps", id="too-few-steps"),
    BAD("/v1/models/..:sample", {"n": 1}, "Sample", pb.SampleRequest(model="../etc", n=1),
        400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument", "name", id="path-traversal"),
]


@pytest.mark.parametrize("path,body,method,request_pb,http_status,grpc_code,code,violation", CASES)
def test_bad_requests_map_the_same_on_both_transports(servers, path, body, method, request_pb, http_status,
                                                      grpc_code, code, violation):
    r = post(servers, path, body)
    assert r.status_code == http_status, r.text
    err = _rest_error(r)
    assert err["code"] == code
    assert any(violation in v["path"] for v in err["details"]["violations"]), err

    rpc = getattr(stub(servers), method)
    call = (lambda: list(rpc(request_pb, timeout=30))) if method == "Sample" else (lambda: rpc(request_pb, timeout=30))
    got_code, reason, violations = _grpc_error(call)
    assert (got_code, reason) == (grpc_code, code)
    assert any(violation in path for path, _ in violations), violations


def test_request_shape_errors_are_400(servers):
    for body in ({"n": -1}, {"n": "many"}, {"n": 1, "bogus": True}):
        r = post(servers, f"/v1/models/{MODEL}:sample", body)
        assert r.status_code == 400 and _rest_error(r)["code"] == "invalid_argument", r.text
    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:sample", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = httpx.get(servers.http_url + "/v1/nothing-here")
    assert r.status_code == 404 and _rest_error(r)["code"] == "not_found"


def test_unknown_job_is_404_and_not_found(servers):
    r = httpx.get(servers.http_url + "/v1/jobs/0123abc")
    assert r.status_code == 404 and _rest_error(r)["code"] == "not_found"
    code, reason, _ = _grpc_error(lambda: stub(servers).GetJob(pb.GetJobRequest(id="0123abc"), timeout=10))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "not_found")


def test_body_over_the_limit_is_413(servers):
    big = b"x" * (5 << 20)  # the test servers allow 4 MiB
    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:encode", content=big,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and _rest_error(r)["code"] == "too_large"

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(6):
            yield b" " * (1 << 20)

    r = httpx.post(f"{servers.http_url}/v1/models/{MODEL}:encode", content=chunked(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and _rest_error(r)["code"] == "too_large"


def test_internal_errors_are_generic_on_both_transports(servers, caplog):
    from synth.server.grpc.server import create_grpc_server
    from synth.server.rest.app import create_app

    broken = BrokenService(servers.service)
    url, stop = start_http(create_app(broken))
    server, port = create_grpc_server(broken, "127.0.0.1:0")
    server.start()
    try:
        r = httpx.get(url + "/v1/models")
        assert r.status_code == 500
        err = _rest_error(r)
        assert err["code"] == "internal" and "error_id" in err["details"]
        assert "secret" not in r.text and "Traceback" not in r.text
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        code, reason, _ = _grpc_error(
            lambda: pb_grpc.SynthesizerStub(channel).ListModels(pb.ListModelsRequest(), timeout=10))
        assert (code, reason) == (grpc.StatusCode.INTERNAL, "internal")
        with pytest.raises(grpc.RpcError) as e:
            pb_grpc.SynthesizerStub(channel).ListModels(pb.ListModelsRequest(), timeout=10)
        assert "secret" not in e.value.details() and "Traceback" not in e.value.details()
        assert "secret internal detail" in caplog.text  # ... but the operator can find it
    finally:
        stop()
        server.stop(None)


# ----------------------------------------------------------------------------- reflection

def test_reflection_only_client_can_sample(servers):
    """No generated stubs: descriptors from server reflection, a dynamic class, a generic call."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
        ProtoReflectionDescriptorDatabase

    channel = grpc.insecure_channel(servers.grpc_target)
    database = ProtoReflectionDescriptorDatabase(channel)
    assert "synth.v1.Synthesizer" in database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    method = pool.FindServiceByName("synth.v1.Synthesizer").FindMethodByName("Sample")
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_stream("/synth.v1.Synthesizer/Sample",
                                request_serializer=request_cls.SerializeToString,
                                response_deserializer=response_cls.FromString)
    request = json_format.ParseDict({"model": MODEL, "n": 5, "seed": 4}, request_cls())
    records = [json_format.MessageToDict(r.json) for reply in call(request, timeout=30) for r in reply.records]
    expected = post(servers, f"/v1/models/{MODEL}:sample", {"n": 5, "seed": 4}).json()["records"]
    assert records == expected


def test_grpc_records_may_be_binary(servers):
    """The bytes form: the user's own serialized message, both ways."""
    detail = stub(servers).GetModel(pb.GetModelRequest(name=MODEL), timeout=10)
    from synth.schema.loader import from_file_set

    cls = from_file_set(detail.file_descriptor_set, detail.info.message).message_class
    raw = place_records(2, seed=9)
    records = [pb.Record(binary=json_format.ParseDict(r, cls()).SerializeToString()) for r in raw]
    out = stub(servers).Reconstruct(pb.ReconstructRequest(model=MODEL, records=records,
                                                          format=pb.RECORD_FORMAT_BINARY), timeout=30)
    parsed = [cls.FromString(r.binary) for r in out.records]
    as_json = post(servers, f"/v1/models/{MODEL}:reconstruct", {"records": raw}).json()["records"]
    assert [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in parsed] == as_json
    bad = pb.EncodeRequest(model=MODEL, records=[pb.Record(binary=b"\xff\xff\xff")])
    code, reason, _ = _grpc_error(lambda: stub(servers).Encode(bad, timeout=10))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_data")
