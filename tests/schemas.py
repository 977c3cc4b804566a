"""Shared test schemas: .proto texts, cached schema loading and record factories.

A plain helper module (no fixtures): the core test files import it as `schemas`
(pytest puts `tests/` on sys.path because the directory has no `__init__.py`).
Schemas are compiled once per text and cached, so every test that asks for
`schema(TEXT, "Msg")` gets the same message class (classes from different
`load_schema` calls differ and do not compare equal).
"""
from __future__ import annotations

import functools
import random
from pathlib import Path

from synth.model_config import ModelConfig
from synth.schema.loader import LoadedSchema, compile_proto_text, from_file_set

REPO = Path(__file__).resolve().parents[1]
ADDRESS_PROTO = REPO / "protos/examples/address.proto"

# Small and fast: every test except the ones about the paper's configuration.
TINY = ModelConfig(latent_dim=16, char_dim=8)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(latent_dim=16, char_dim=8, **overrides)


@functools.lru_cache(maxsize=None)
def _file_set(text: str) -> bytes:
    return compile_proto_text(text)


@functools.lru_cache(maxsize=None)
def schema(text: str, message: str) -> LoadedSchema:
    """Compile `text` once and return the (cached) loaded schema of `message`."""
    return from_file_set(_file_set(text), message)


def wire(messages) -> list[bytes]:
    """Deterministic wire bytes: the way to compare records across code paths."""
    return [m.SerializeToString(deterministic=True) for m in messages]


# -- every scalar type, one small message per concern ---------------------------------------
TYPES_PROTO = """
syntax = "proto3";
package types;

import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/empty.proto";

// Non-contiguous, negative and large numbers: classes are enum numbers, not indices.
enum Sparse { SPARSE_ZERO = 0; SPARSE_FIVE = 5; SPARSE_NEG = -3; SPARSE_BIG = 1000; }

message Doubles { double v = 1; double w = 2; }
message Floats { float v = 1; }
message Int32s { int32 v = 1; }
message Int64s { int64 v = 1; }
message Uint32s { uint32 v = 1; }
message Uint64s { uint64 v = 1; }
message Sint32s { sint32 v = 1; }
message Sint64s { sint64 v = 1; }
message Fixed32s { fixed32 v = 1; }
message Fixed64s { fixed64 v = 1; }
message Sfixed32s { sfixed32 v = 1; }
message Sfixed64s { sfixed64 v = 1; }
message Bools { bool v = 1; }
message Strings { string v = 1; string w = 2; }
message Bytes { bytes v = 1; }
message Enums { Sparse v = 1; }

message Inner { string name = 1; int32 n = 2; double x = 3; }
message Nested { Inner inner = 1; string tag = 2; }

message RepeatedScalars {
  repeated int32 ints = 1;
  repeated string strs = 2;
  repeated double dbls = 3;
  repeated bool flags = 4;
  repeated Sparse kinds = 5;
  repeated bytes blobs = 6;
}
message RepeatedMessages { repeated Inner items = 1; }

message Proto3Optional {
  optional int32 i = 1;
  optional string s = 2;
  optional double d = 3;
  optional bool b = 4;
  optional Sparse e = 5;
}

message Choice {
  oneof pick { string text = 1; int32 number = 2; Inner inner = 3; double real = 4; }
  string after = 5;
}

message Maps {
  map<string, int32> counts = 1;
  map<int64, Inner> by_id = 2;
}

message Tree {
  string label = 1;
  repeated Tree children = 2;
  Tree parent = 3;
}

// Recursion through a oneof (an expression tree): the bound must hold inside oneofs too.
message Expr {
  oneof kind { int64 literal = 1; Expr negate = 2; Binary add = 3; }
}
message Binary { Expr left = 1; Expr right = 2; }

// google.protobuf.Struct is recursive through Value's oneof (struct_value, list_value).
message Json { google.protobuf.Struct doc = 1; string name = 2; }

message Nothing {}
message Empties { Nothing a = 1; google.protobuf.Empty b = 2; int32 x = 3; repeated Nothing many = 4; }

message Times {
  google.protobuf.Timestamp at = 1;
  google.protobuf.Duration took = 2;
}

message Wrappers {
  google.protobuf.StringValue s = 1;
  google.protobuf.Int64Value i = 2;
  google.protobuf.DoubleValue d = 3;
  google.protobuf.BoolValue b = 4;
}
"""

PROTO2 = """
syntax = "proto2";
package ptwo;

enum Kind { KIND_A = 1; KIND_B = 2; KIND_C = 7; }

message Part { required string sku = 1; optional int32 qty = 2 [default = 1]; }

message Order {
  required string id = 1;
  required int32 count = 2;
  required double weight = 3;
  optional int32 level = 4 [default = 7];
  optional string tag = 5 [default = "none"];
  optional Kind kind = 6 [default = KIND_B];
  optional double score = 7 [default = 0.5];
  optional bool flag = 8 [default = true];
  optional Part main = 9;
  oneof payment { string card = 10; int64 account = 11; Part voucher = 12; }
  map<string, int32> stock = 13;
  repeated Part parts = 14;
}
"""

# -- the four validity schemas (docs/model.md) ----------------------------------------
NESTED_PROTO = """
syntax = "proto3";
package shop;

enum Status { STATUS_UNKNOWN = 0; ACTIVE = 1; SUSPENDED = 4; CLOSED = 9; }

message Geo { double lat = 1; double lon = 2; }
message LineItem { string sku = 1; uint32 qty = 2; float price = 3; Status status = 4; }
message Customer {
  string name = 1;
  Status status = 2;
  Geo home = 3;
  repeated LineItem items = 4;
  repeated string tags = 5;
  int64 since = 6;
  sint32 score = 7;
}
"""

RECURSIVE_PROTO = """
syntax = "proto3";
package rec;

message TreeNode {
  string name = 1;
  int32 weight = 2;
  repeated TreeNode children = 3;
  TreeNode parent = 4;
}
"""


def address_records(n: int = 8, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    streets = ["MAIN ST", "CHURCH ST", "ELM ST", "RIVER RD", "NORTH AVE"]
    cities = [("BURLINGTON", "05401"), ("MONTPELIER", "05602"), ("RUTLAND", "05701")]
    out = []
    for i in range(n):
        city, zipc = cities[i % len(cities)]
        out.append({
            "lat": 44.0 + rng.random(), "lon": -73.0 + rng.random(),
            "number": str(rng.randint(1, 999)), "street": rng.choice(streets),
            "unit": "" if i % 3 else f"APT {i}", "city": city, "district": "",
            "region": "VT", "postcode": zipc,
        })
    return out


def nested_records(n: int = 6) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            "name": f"customer {i}",
            "status": ["ACTIVE", "SUSPENDED", "CLOSED"][i % 3],
            "home": {"lat": 44.0 + i / 10, "lon": -72.0 - i / 10},
            "items": [{"sku": f"SKU-{j}", "qty": j + 1, "price": 9.5 * j, "status": "ACTIVE"}
                      for j in range(i % 4)],
            "tags": ["a", "bb"][: i % 3],
            "since": str(1_600_000_000 + 1000 * i),
            "score": -i,
        })
    return out


def proto2_records(n: int = 6) -> list[dict]:
    out = []
    for i in range(n):
        r: dict = {"id": f"o{i}", "count": i, "weight": 1.5 * i + 0.25}
        if i % 2:
            r.update({"level": i, "tag": f"t{i}", "kind": "KIND_C", "score": 0.1 * i, "flag": False})
        if i % 3 == 0:
            r["main"] = {"sku": f"m{i}", "qty": i + 2}
        if i % 3 == 1:
            r["card"] = f"4111-{i}"
        elif i % 3 == 2:
            r["voucher"] = {"sku": f"v{i}"}
        r["stock"] = {f"s{j}": j for j in range(i % 3)}
        r["parts"] = [{"sku": f"p{j}"} for j in range(i % 2 + 1)]
        out.append(r)
    return out


def tree_records(n: int = 6) -> list[dict]:
    out = []
    for i in range(n):
        leaf = {"name": f"leaf{i}", "weight": 3}
        child = {"name": f"child{i}", "weight": 2, "children": [leaf] * (i % 3)}
        root = {"name": f"root{i}", "weight": 1, "children": [child] * (i % 2 + 1)}
        if i % 2:
            root["parent"] = {"name": f"up{i}", "weight": 0}
        out.append(root)
    return out
