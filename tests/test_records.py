"""Record conversion: every accepted form becomes the same message, and failures say where and why."""
from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from synth.errors import DataError
from synth.records import message_class_of, to_dict, to_message, to_messages
from synth.schema.loader import load_schema

PROTO = """
syntax = "proto3";
package rt;

enum Kind { KIND_UNSPECIFIED = 0; HOUSE = 1; FLAT = 2; }

message Geo { double lat = 1; double lon = 2; }

message Place {
  string post_code = 1;
  Geo geo = 2;
  Kind kind = 3;
  int32 floors = 4;
  bool listed = 5;
  bytes photo = 6;
  repeated string tags = 7;
  int64 big = 8;
}

message Other { string post_code = 1; }
"""


@pytest.fixture(scope="module")
def schema():
    return load_schema(PROTO, "Place")


@pytest.fixture(scope="module")
def Place(schema):
    return schema.message_class


def sample(Place):
    return Place(post_code="05401", geo={"lat": 44.5, "lon": -73.2}, kind=2, floors=3, listed=True,
                 photo=b"\x00\xff", tags=["a", "b"], big=2**40)


def test_instance_is_returned_as_is(Place):
    m = sample(Place)
    assert to_message(m, Place) is m


def test_same_type_from_another_pool_is_reparsed(Place):
    other_class = load_schema(PROTO, "Place").message_class  # a separate descriptor pool
    assert other_class is not Place
    m = sample(other_class)
    out = to_message(m, Place)
    assert isinstance(out, Place)
    assert out == sample(Place)


def test_different_message_type_is_refused(Place, schema):
    Other = load_schema(PROTO, "Other").message_class
    with pytest.raises(DataError, match="rt.Other message, expected rt.Place"):
        to_message(Other(post_code="1"), Place)


def test_dict_with_json_names_or_proto_names(Place):
    want = Place(post_code="05401", kind=1, big=7)
    assert to_message({"postCode": "05401", "kind": "HOUSE", "big": "7"}, Place) == want
    assert to_message({"post_code": "05401", "kind": 1, "big": 7}, Place) == want


def test_json_string(Place):
    text = json.dumps({"post_code": "05401", "geo": {"lat": 1.5}, "tags": ["x"]})
    assert to_message(text, Place) == Place(post_code="05401", geo={"lat": 1.5}, tags=["x"])


def test_descriptor_and_loaded_schema_are_accepted_as_the_class(schema, Place):
    assert message_class_of(schema) is Place
    assert message_class_of(Place) is Place
    assert message_class_of(schema.descriptor)().DESCRIPTOR.full_name == "rt.Place"
    assert to_message({"floors": 2}, schema.descriptor).floors == 2


def test_unknown_field_reports_protobuf_text(Place):
    with pytest.raises(DataError) as err:
        to_message({"post_code": "1", "colour": "red"}, Place)
    assert "colour" in str(err.value)
    assert "rt.Place" in str(err.value)


def test_wrong_value_type_names_the_field(Place):
    with pytest.raises(DataError) as err:
        to_message({"floors": "many"}, Place)
    assert "floors" in str(err.value)


def test_invalid_json_string(Place):
    with pytest.raises(DataError, match="invalid JSON"):
        to_message('{"post_code": ', Place)


def test_json_that_is_not_an_object(Place):
    with pytest.raises(DataError, match="expected a JSON object, got an array"):
        to_message("[1, 2]", Place)


@pytest.mark.parametrize("record", [42, None, ["post_code"]])
def test_unsupported_types(Place, record):
    with pytest.raises(DataError, match="cannot convert"):
        to_message(record, Place)


def test_bytes_are_refused_with_a_hint(Place):
    with pytest.raises(DataError, match="FromString"):
        to_message(sample(Place).SerializeToString(), Place)


def test_to_messages_names_the_record_index(Place):
    records = [{"floors": 1}, sample(Place), {"floors": "x"}]
    with pytest.raises(DataError) as err:
        to_messages(records, Place)
    assert "record[2]" in str(err.value)
    assert err.value.violations[0].path == "record[2]"


def test_to_messages_mixed_forms(Place):
    out = to_messages([{"floors": 1}, '{"floors": 2}', Place(floors=3)], Place)
    assert [m.floors for m in out] == [1, 2, 3]


def test_to_dict_uses_proto_names_and_omits_defaults(Place):
    d = to_dict(Place(post_code="05401", floors=0, geo={"lat": 0.0}))
    assert d == {"post_code": "05401", "geo": {}}  # floors=0 is the default; geo is set but empty


def test_to_dict_round_trips(Place):
    m = sample(Place)
    d = to_dict(m)
    assert d["kind"] == "FLAT" and d["big"] == str(2**40) and d["post_code"] == "05401"
    assert to_message(d, Place) == m
    assert to_message(json.dumps(d), Place) == m


# -- to_dict's fast path agrees with json_format ------------------------------------------
MAPPING_PROTO = """
syntax = "proto3";
package fast;
import "google/protobuf/timestamp.proto";

enum Colour { COLOUR_UNSPECIFIED = 0; RED = 1; }

message Point { double x = 1; optional double y = 2; sint64 id = 3; }

message Plain {
  string s = 1; bool b = 2; int32 i32 = 3; sint32 si32 = 4; uint32 u32 = 5; fixed32 f32 = 6;
  sfixed32 sf32 = 7; int64 i64 = 8; uint64 u64 = 9; sint64 si64 = 10; fixed64 f64 = 11;
  sfixed64 sf64 = 12; double d = 13; optional int32 maybe = 14;
  Point point = 15; repeated Point points = 16; repeated int64 ids = 17; repeated double ds = 18;
  oneof either { string left = 19; Point right = 20; }
  Plain child = 21;  // recursive
}

// Each of these needs json_format for one field.
message WithEnum { string s = 1; Colour colour = 2; }
message WithFloat { float f = 1; }
message WithBytes { bytes raw = 1; }
message WithMap { map<string, int64> counts = 1; }
message WithTime { google.protobuf.Timestamp at = 1; }
message Nested { Plain plain = 1; WithEnum enum_inside = 2; }
"""

_i32 = st.integers(-2**31, 2**31 - 1)
_u32 = st.integers(0, 2**32 - 1)
_i64 = st.integers(-2**63, 2**63 - 1)
_u64 = st.integers(0, 2**64 - 1)
_double = st.floats(allow_nan=True, allow_infinity=True)
_point = st.fixed_dictionaries({}, optional={"x": _double, "y": _double, "id": _i64})
_plain_fields = {
    "s": st.text(max_size=8), "b": st.booleans(), "i32": _i32, "si32": _i32, "u32": _u32, "f32": _u32,
    "sf32": _i32, "i64": _i64, "u64": _u64, "si64": _i64, "f64": _u64, "sf64": _i64, "d": _double,
    "maybe": _i32, "point": _point, "points": st.lists(_point, max_size=3), "ids": st.lists(_i64, max_size=3),
    "ds": st.lists(_double, max_size=3), "left": st.text(max_size=4), "right": _point,
}
_plain = st.recursive(st.fixed_dictionaries({}, optional=_plain_fields),
                      lambda inner: st.fixed_dictionaries({}, optional={**_plain_fields, "child": inner}), max_leaves=4)


@pytest.fixture(scope="module")
def mapping_schema():
    return load_schema(MAPPING_PROTO, "Plain")


def _reference(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


@settings(max_examples=300, deadline=None)
@given(values=_plain)
def test_to_dict_matches_json_format_on_plain_messages(mapping_schema, values):
    msg = mapping_schema.message_class(**values)  # python values: doubles may be inf or nan
    # json.dumps compares key order and number text too, as a response body would show them
    assert json.dumps(to_dict(msg)) == json.dumps(_reference(msg))


def test_to_dict_fast_path_needs_no_json_format(mapping_schema, monkeypatch):
    Plain = mapping_schema.message_class
    msg = Plain(s="a", i64=-5, u64=2**64 - 1, d=0.1, point={"x": 1.5}, ids=[1, 2], child={"b": True, "maybe": 0})
    want = _reference(msg)
    monkeypatch.setattr(json_format, "MessageToDict", lambda *a, **k: pytest.fail("fell back to json_format"))
    assert to_dict(msg) == want == {"s": "a", "i64": "-5", "u64": str(2**64 - 1), "d": 0.1, "point": {"x": 1.5},
                                    "ids": ["1", "2"], "child": {"b": True, "maybe": 0}}


@pytest.mark.parametrize("name, values", [
    ("WithEnum", {"s": "x", "colour": 1}), ("WithEnum", {"colour": 7}), ("WithFloat", {"f": 0.1}),
    ("WithBytes", {"raw": b"\x00\xff"}), ("WithMap", {"counts": {"a": 3}}), ("WithTime", {"at": {"seconds": 5}}),
    ("Nested", {"plain": {"d": 1.0}, "enum_inside": {"colour": 1}}), ("Plain", {"d": float("nan")}),
    ("Plain", {"point": {"y": float("-inf")}}),
])
def test_to_dict_falls_back_to_json_format_where_the_mapping_needs_it(name, values):
    msg = load_schema(MAPPING_PROTO, name).message_class(**values)
    assert json.dumps(to_dict(msg)) == json.dumps(_reference(msg))


FLOATS_PROTO = """
syntax = "proto3";
package f32;
message Inner { float f = 1; }
message Outer { float f = 1; repeated float fs = 2; Inner inner = 3; repeated Inner inners = 4; map<string, float> m = 5;
                map<string, Inner> mi = 6; double d = 7; }
"""


def test_float32_written_at_flt_max_reads_back():
    """protobuf writes FLT_MAX as 3.4028235e+38 and refuses it when parsing; we read it as FLT_MAX
    wherever the float sits, and a value beyond float32's rounding is still refused."""
    Outer = load_schema(FLOATS_PROTO, "Outer").message_class
    flt_max = 3.4028234663852886e38
    msg = Outer(f=flt_max, fs=[-flt_max, 1.5], inner={"f": -flt_max}, inners=[{"f": flt_max}],
                m={"a": flt_max}, mi={"b": {"f": -flt_max}}, d=3.5e38)
    text = json.dumps(to_dict(msg))
    assert "3.4028235e+38" in text
    with pytest.raises(json_format.ParseError):
        json_format.Parse(text, Outer())  # protobuf's own parser
    assert to_message(text, Outer) == msg
    with pytest.raises(DataError, match="Float value too large"):
        to_message({"f": 3.5e38}, Outer)
    record = json.loads(text)
    to_message(record, Outer)
    assert record == json.loads(text)  # the caller's dict is not rewritten
