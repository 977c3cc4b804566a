"""Leaf columns derived from the schema tree (synth/eval/features.py), on the shared test schemas."""
from __future__ import annotations

import math

import numpy as np
from google.protobuf import json_format

from schemas import NESTED_PROTO, PROTO2, TYPES_PROTO, nested_records, proto2_records, schema
from synth.eval.features import ABSENT, flatten, string_features
from synth.schema.tree import build_tree


def _setup(text: str, message: str, records: list[dict]):
    cls = schema(text, message).message_class
    tree = build_tree(cls.DESCRIPTOR)
    dicts = [json_format.MessageToDict(json_format.ParseDict(r, cls()), preserving_proto_field_name=True,
                                       always_print_fields_with_no_presence=True) for r in records]
    return tree, dicts


def test_nested_repeated_and_enum_columns():
    tree, dicts = _setup(NESTED_PROTO, "Customer", nested_records(6))
    t = flatten(tree, dicts)
    kinds = {c.name: c.kind for c in t.columns}
    assert kinds["name"] == "string" and kinds["status"] == "category"
    assert kinds["home#present"] == "presence" and kinds["home.lat"] == "number"
    assert kinds["items#count"] == "count" and kinds["items[0].sku"] == "string"
    assert kinds["tags#count"] == "count" and kinds["tags[0]"] == "string"
    assert t.column("items#count").values.tolist() == [i % 4 for i in range(6)]
    assert t.column("status").values.tolist() == ["ACTIVE", "SUSPENDED", "CLOSED"] * 2
    assert t.column("since").values[1] == 1_600_001_000.0  # int64 arrives as a JSON string
    sku = t.column("items[0].sku").values.tolist()
    assert sku[0] is None and sku[1] == "SKU-0"
    assert math.isnan(t.column("items[0].qty").values[0])


def test_proto2_presence_oneof_and_map_columns():
    tree, dicts = _setup(PROTO2, "Order", proto2_records(6))
    t = flatten(tree, dicts)
    assert t.column("level#present").values.tolist() == [0, 1, 0, 1, 0, 1]
    assert math.isnan(t.column("level").values[0]) and t.column("level").values[1] == 1
    assert t.column("payment#case").values.tolist() == ["<none>", "card", "voucher"] * 2
    assert t.column("main#present").values.tolist() == [1, 0, 0, 1, 0, 0]
    assert t.column("stock#count").values.tolist() == [0, 1, 2, 0, 1, 2]
    assert t.column("stock[0].key").values.tolist()[:2] == [ABSENT, "s0"]
    assert t.column("flag").values.tolist()[:2] == [ABSENT, "false"]


def test_same_schema_gives_same_columns_whatever_the_records():
    tree, dicts = _setup(NESTED_PROTO, "Customer", nested_records(6))
    assert flatten(tree, dicts).names == flatten(tree, []).names == flatten(tree, [{}]).names


def test_missing_keys_read_as_proto3_defaults():
    tree, _ = _setup(NESTED_PROTO, "Customer", [])
    t = flatten(tree, [{}])
    assert t.column("name").values[0] == "" and t.column("score").values[0] == 0.0
    assert t.column("status").values[0] == "STATUS_UNKNOWN"
    assert t.column("home#present").values[0] == 0.0 and math.isnan(t.column("home.lat").values[0])


def test_oneof_and_well_known_types():
    tree, dicts = _setup(TYPES_PROTO, "Choice", [{"text": "a"}, {"number": 3, "after": "x"}, {}])
    t = flatten(tree, dicts)
    assert t.column("pick#case").values.tolist() == ["text", "number", "<none>"]
    tree, dicts = _setup(TYPES_PROTO, "Times", [{"at": "1970-01-01T00:01:00Z", "took": "1.5s"}])
    t = flatten(tree, dicts)
    assert t.column("at").values[0] == 60.0 and t.column("took").values[0] == 1.5


def test_string_features_hand_values():
    f = string_features(np.array(["Ab 1!", "", None], dtype=object))
    assert f["len"][0] == 5 and f["digits"][0] == 0.2 and f["letters"][0] == 0.4
    assert f["upper"][0] == 0.2 and f["spaces"][0] == 0.2 and f["punct"][0] == 0.2
    assert f["len"][1] == 0 and f["digits"][1] == 0
    assert all(math.isnan(f[k][2]) for k in f)


def test_row_keys_and_take():
    tree, dicts = _setup(NESTED_PROTO, "Customer", nested_records(6))
    t = flatten(tree, dicts)
    keys = t.row_keys()
    assert len(set(keys)) == 6 and keys == flatten(tree, dicts).row_keys()
    sub = t.take(np.array([4, 1]))
    assert sub.n_rows == 2 and sub.row_keys() == [keys[4], keys[1]]
