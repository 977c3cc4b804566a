"""Property-based tests (hypothesis): codec and file-format round trips, and "never a 5xx".

- any record of the test schemas survives codec encode -> decode and every file format's
  write -> read unchanged (same wire bytes, same presence, same oneof case);
- any record, well-formed or odd (empty strings, huge / negative / NaN numbers, unicode,
  wrong types, unknown keys, deep nesting), and any JSON value in `where`, get a result or
  a 4xx from the real servers, never a 5xx: over REST and over gRPC.
"""
from __future__ import annotations

import json
import math

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_server import servers  # noqa: F401 - pytest fixture
from conftest_server import MODEL, place_records
from schemas import TYPES_PROTO, schema, tiny, wire
from synth.io import read_records, write_records
from synth.model import Model
from synth_contract._proto import synthesizer_pb2 as pb
from synth_contract._proto import synthesizer_pb2_grpc as pb_grpc

# derandomize: the same examples on every run, so CI never turns red by chance
FAST = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
_T = FieldDescriptor
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # no lone surrogates: not UTF-8
INT32 = st.integers(-(2**31), 2**31 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


# ----------------------------------------------------------------------------- records of a schema

def _scalar(f: FieldDescriptor) -> st.SearchStrategy:
    t = f.type
    if t == _T.TYPE_STRING:
        return TEXT
    if t == _T.TYPE_BYTES:
        return st.binary(max_size=8)
    if t == _T.TYPE_BOOL:
        return st.booleans()
    if t == _T.TYPE_DOUBLE:
        return FINITE
    if t == _T.TYPE_FLOAT:
        # The whole finite range: protobuf writes FLT_MAX as 3.4028235e+38 and its own parser
        # refuses that; synth.records reads it back as FLT_MAX (docs/reliability.md).
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if t == _T.TYPE_ENUM:
        return st.sampled_from([v.number for v in f.enum_type.values])
    if t in (_T.TYPE_UINT32, _T.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (_T.TYPE_UINT64, _T.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64):
        return st.integers(-(2**63), 2**63 - 1)
    return INT32


def messages(cls, depth: int = 2) -> st.SearchStrategy:
    """Messages of `cls`: every field maybe set, one oneof case at most, nested up to `depth`."""
    desc = cls.DESCRIPTOR

    @st.composite
    def build(draw):
        msg = cls()
        for f in desc.fields:
            if f.message_type is not None and (f.message_type.GetOptions().map_entry or depth == 0
                                               or f.message_type.full_name.startswith("google.")):
                continue
            oneof = f.containing_oneof
            if oneof is not None and msg.WhichOneof(oneof.name) is not None:
                continue
            if not draw(st.booleans()):
                continue
            if f.message_type is not None:
                subs = draw(st.lists(messages(type(getattr(cls(), f.name)) if not f.is_repeated else
                                              type(getattr(cls(), f.name).add()), depth - 1),
                                     min_size=1, max_size=2))
                if f.is_repeated:
                    getattr(msg, f.name).extend(subs)
                else:
                    getattr(msg, f.name).CopyFrom(subs[0])
            elif f.is_repeated:
                getattr(msg, f.name).extend(draw(st.lists(_scalar(f), max_size=3)))
            else:
                setattr(msg, f.name, draw(_scalar(f)))
        return msg

    return build()


CODEC_CASES = ["Choice", "Proto3Optional", "Nested", "RepeatedScalars", "Strings", "Enums"]


@pytest.mark.parametrize("message", CODEC_CASES)
def test_codec_round_trip(message):
    cls = schema(TYPES_PROTO, message).message_class

    @settings(max_examples=12, deadline=None)
    @given(st.lists(messages(cls), min_size=1, max_size=4))
    def check(records):
        model = Model.create(schema(TYPES_PROTO, message), records=records, config=tiny())
        out = model.codec.decode(model.codec.encode(model.messages(records)))
        assert wire(out) == wire(records)
        for a, b in zip(records, out):
            assert [f.name for f, _ in a.ListFields()] == [f.name for f, _ in b.ListFields()]

    check()


FLAT = """syntax = "proto3";
package prop;
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; }
message Geo { double lat = 1; float lon = 2; }
message Flat {
  string name = 1; Geo geo = 2; Color color = 3; bool on = 4; int32 n = 5; bytes blob = 6;
  optional uint32 rank = 7; int64 big = 8;
  oneof extra { string label = 10; sint32 delta = 11; Geo where = 12; }
}
"""


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "binpb"])
def test_file_formats_round_trip(tmp_path_factory, fmt):
    cls = schema(FLAT, "Flat").message_class
    folder = tmp_path_factory.mktemp(fmt)

    @FAST
    @given(st.lists(messages(cls), max_size=4))
    def check(records):
        path = folder / f"r.{fmt}"
        write_records(records, path, cls)
        got = read_records(path, cls).records
        assert wire(got) == wire(records)
        assert [m.WhichOneof("extra") for m in got] == [m.WhichOneof("extra") for m in records]

    check()


# ----------------------------------------------------------------------------- never a 5xx

JSON_LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
             | st.sampled_from(["", "NaN", "Infinity", "-Infinity", "05401", "x" * 5000, "é✓\u0000"]))
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=12)
PLACE_FIELDS = ["city", "postcode", "lat", "lon"]
ODD_NUMBERS = st.sampled_from([0, -1, 1e308, -1e308, 44.4, -73.2, 2**64, float("nan"), float("inf")])


@st.composite
def place_like(draw) -> dict:
    """A Place record with odd values: sometimes right, sometimes wrong types, unknown keys, nesting."""
    record = dict(place_records(1, seed=draw(st.integers(0, 50)))[0])
    for key in draw(st.lists(st.sampled_from(PLACE_FIELDS), max_size=4, unique=True)):
        record[key] = draw(st.one_of(JSON, ODD_NUMBERS, TEXT))
    if draw(st.booleans()):
        record[draw(TEXT)] = draw(JSON)
    for key in draw(st.lists(st.sampled_from(PLACE_FIELDS), max_size=2, unique=True)):
        record.pop(key, None)
    return record


WHERE = st.one_of(JSON, st.dictionaries(st.sampled_from(PLACE_FIELDS + ["zzz", "city.x", ""]),
                                        st.one_of(JSON, ODD_NUMBERS), max_size=3))


def _rest_json(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN/Infinity literals: Python's json reads them


def _struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def _grpcable(value) -> bool:
    """Whether a Struct can carry it: string keys, and numbers as doubles (big ints do not fit)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _grpcable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_grpcable(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 2**63
    return True


@FAST
@given(records=st.lists(place_like(), min_size=1, max_size=2), where=WHERE)
def test_rest_never_answers_5xx(servers, records, where):
    url = f"{servers.http_url}/v1/models/{MODEL}"
    headers = {"content-type": "application/json"}
    calls = [(":encode", {"records": records}), (":reconstruct", {"records": records}),
             (":interpolate", {"from": records[0], "to": records[-1], "steps": 2}),
             (":sample", {"n": 2, "seed": 1, "where": where})]
    with httpx.Client(timeout=60) as c:
        for op, body in calls:
            r = c.post(url + op, content=_rest_json(body), headers=headers)
            assert r.status_code < 500, (op, body, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["code"] != "internal"
            else:
                assert math.isfinite(len(r.content))


@FAST
@given(records=st.lists(place_like(), min_size=1, max_size=2), where=WHERE)
def test_grpc_never_answers_internal(servers, records, where):
    stub = pb_grpc.SynthesizerStub(grpc.insecure_channel(servers.grpc_target))
    structs = [_struct(r) for r in records if _grpcable(r)]
    calls = []
    if structs:
        wire_records = [pb.Record(json=s) for s in structs]
        calls += [lambda: stub.Encode(pb.EncodeRequest(model=MODEL, records=wire_records), timeout=60),
                  lambda: stub.Reconstruct(pb.ReconstructRequest(model=MODEL, records=wire_records), timeout=60),
                  lambda: stub.Interpolate(pb.InterpolateRequest(model=MODEL, from_record=wire_records[0],
                                                                 to_record=wire_records[-1], steps=2), timeout=60)]
    if isinstance(where, dict) and _grpcable(where):
        calls.append(lambda: list(stub.Sample(pb.SampleRequest(model=MODEL, n=2, seed=1, where=_struct(where)),
                                              timeout=60)))
    for call in calls:
        try:
            call()
        except grpc.RpcError as e:
            assert e.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (e.details(), records, where)
