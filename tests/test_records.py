"""Record conversion: every accepted form becomes the same message, and failures say where and why."""
from __future__ import annotations

import json

import pytest

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
