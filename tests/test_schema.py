"""Schema loading (file with imports, text, class, descriptor) and its errors; the schema tree."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, duration_pb2, timestamp_pb2

from schemas import ADDRESS_PROTO, PROTO2, TYPES_PROTO, schema
from synth.errors import SchemaError
from synth.schema.loader import LoadedSchema, from_file_set, load_schema
from synth.schema.tree import SchemaOptions, build_tree

COMMON = """syntax = "proto3";
package acme.common;

import "google/protobuf/timestamp.proto";

message Stamp {
  google.protobuf.Timestamp at = 1;
  string who = 2;
}
"""

MAIN = """syntax = "proto3";
package acme.events;

import "common.proto";

message Event {
  string name = 1;
  acme.common.Stamp stamp = 2;
  repeated acme.common.Stamp history = 3;
}
"""


def file_names(loaded: LoadedSchema) -> set[str]:
    return {f.name for f in descriptor_pb2.FileDescriptorSet.FromString(loaded.file_set).file}


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    (tmp_path / "common.proto").write_text(COMMON)
    (tmp_path / "main.proto").write_text(MAIN)
    return tmp_path / "main.proto"


# -- sources ----------------------------------------------------------------------------------
def test_load_file_with_imports(two_files):
    for source in (str(two_files), two_files):
        s = load_schema(source, "Event")
        assert s.message_name == "acme.events.Event"
        assert s.proto_file == "main.proto"
        assert file_names(s) == {"main.proto", "common.proto", "google/protobuf/timestamp.proto"}
        stamp = s.descriptor.fields_by_name["stamp"].message_type
        assert stamp.full_name == "acme.common.Stamp"
        assert stamp.fields_by_name["at"].message_type.full_name == "google.protobuf.Timestamp"
        msg = s.message_class(name="x", stamp={"at": {"seconds": 5}, "who": "me"})
        assert s.message_class.FromString(msg.SerializeToString()) == msg
    # the full name works too, and the file set rebuilds the same message elsewhere
    full = load_schema(str(two_files), "acme.events.Event")
    again = from_file_set(full.file_set, "acme.events.Event")
    assert [f.name for f in again.descriptor.fields] == ["name", "stamp", "history"]


def test_load_message_from_imported_file(two_files):
    s = load_schema(two_files, "Stamp")
    assert s.message_name == "acme.common.Stamp"


def test_load_text():
    text = 'syntax = "proto3";\npackage t;\nmessage Point { double x = 1; double y = 2; }\n'
    s = load_schema(text, "Point")
    assert s.message_name == "t.Point"
    assert [f.name for f in s.descriptor.fields] == ["x", "y"]
    assert s.message_class(x=1.5).x == 1.5
    assert "message Point" in s.proto_source()


def test_load_text_with_well_known_imports():
    s = schema(TYPES_PROTO, "Times")
    assert file_names(s) >= {"google/protobuf/timestamp.proto", "google/protobuf/duration.proto"}
    assert s.descriptor.fields_by_name["at"].message_type.full_name == "google.protobuf.Timestamp"


def test_load_existing_generated_class():
    s = load_schema(timestamp_pb2.Timestamp)
    assert s.message_class is timestamp_pb2.Timestamp
    assert s.message_name == "google.protobuf.Timestamp"
    assert s.proto_file == "google/protobuf/timestamp.proto"
    # its file set is complete: a fresh pool can rebuild it
    rebuilt = from_file_set(s.file_set, "google.protobuf.Timestamp")
    assert rebuilt.message_class is not timestamp_pb2.Timestamp
    assert rebuilt.message_class(seconds=3).SerializeToString() == timestamp_pb2.Timestamp(
        seconds=3).SerializeToString()


def test_load_class_from_another_load(two_files):
    first = load_schema(two_files, "Event")
    s = load_schema(first.message_class)
    assert s.message_class is first.message_class
    assert s.descriptor is first.descriptor
    assert file_names(s) == file_names(first)
    # the file set holds the dependencies first, so it rebuilds in a fresh pool
    assert from_file_set(s.file_set, "Event").message_name == "acme.events.Event"


def test_load_descriptor_and_instance():
    s = load_schema(duration_pb2.Duration.DESCRIPTOR)
    assert s.descriptor is duration_pb2.Duration.DESCRIPTOR
    assert s.message_class(seconds=2).seconds == 2
    inst = load_schema(duration_pb2.Duration(seconds=1))
    assert inst.message_class is duration_pb2.Duration
    assert load_schema(s) is s  # a LoadedSchema passes through


def test_address_example():
    s = load_schema(ADDRESS_PROTO, "Address")
    assert s.message_name == "synth.examples.Address"
    assert [f.name for f in s.descriptor.fields] == [
        "lat", "lon", "number", "street", "unit", "city", "district", "region", "postcode"]


def test_schemas_from_two_loads_do_not_clash():
    text = 'syntax = "proto3"; package same; message M { int32 a = 1; }'
    other = 'syntax = "proto3"; package same; message M { string a = 1; }'
    a, b = load_schema(text, "M"), load_schema(other, "M")
    assert a.message_class(a=3).a == 3
    assert b.message_class(a="x").a == "x"


# -- errors -----------------------------------------------------------------------------------------
def test_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\nmessage A {\n  int32 x = ;\n}\n')
    with pytest.raises(SchemaError) as e:
        load_schema(bad, "A")
    text = str(e.value)
    assert "bad.proto:3:" in text
    assert "Expected field number." in text  # protoc's own diagnostic
    assert "Expected field number." in e.value.details["protoc_output"]
    assert str(tmp_path) not in text  # locations are relative to the user's file
    assert any(v.path.startswith("bad.proto:3:") for v in e.value.violations)


def test_syntax_error_in_text():
    with pytest.raises(SchemaError) as e:
        load_schema('syntax = "proto3";\nmessage A {\n  int32 x = ;\n}\n', "A")
    assert ".proto:3:" in str(e.value)
    assert "Expected field number." in str(e.value)


def test_every_protoc_error_is_reported(tmp_path):
    bad = tmp_path / "two.proto"
    bad.write_text('syntax = "proto3";\nmessage A {\n  Unknown x = 1;\n  Missing y = 2;\n}\n')
    with pytest.raises(SchemaError) as e:
        load_schema(bad, "A")
    text = str(e.value)
    assert "two.proto:3:" in text and "two.proto:4:" in text
    assert "Unknown" in text and "Missing" in text


def test_unknown_import_names_the_missing_file(tmp_path):
    p = tmp_path / "imp.proto"
    p.write_text('syntax = "proto3";\nimport "missing/dep.proto";\nmessage A { int32 x = 1; }\n')
    with pytest.raises(SchemaError) as e:
        load_schema(p, "A")
    assert "missing/dep.proto" in str(e.value)
    assert "imp.proto:2:" in str(e.value)


def test_missing_file():
    with pytest.raises(SchemaError) as e:
        load_schema("/nonexistent/dir/x.proto", "A")
    assert "x.proto" in str(e.value)


def test_missing_message_lists_available_messages(two_files):
    with pytest.raises(SchemaError) as e:
        load_schema(two_files, "Nope")
    text = str(e.value)
    assert "'Nope'" in text
    assert "acme.events.Event" in text and "acme.common.Stamp" in text
    assert "google.protobuf.Timestamp" not in text  # imports of well-known types are noise


AMBIGUOUS = """syntax = "proto3";
package amb;
message A { message Item { int32 a = 1; } }
message B { message Item { string b = 1; } }
"""


def test_ambiguous_short_name():
    with pytest.raises(SchemaError) as e:
        load_schema(AMBIGUOUS, "Item")
    assert sorted(e.value.details["candidates"]) == ["amb.A.Item", "amb.B.Item"]
    # the rendered message (what the CLI and the server show) says which names to use
    assert "amb.A.Item" in str(e.value) and "amb.B.Item" in str(e.value)
    # and each full name works
    assert load_schema(AMBIGUOUS, "amb.B.Item").descriptor.fields[0].name == "b"
    assert load_schema(AMBIGUOUS, "A.Item").message_name == "amb.A.Item"


def test_message_name_is_required_for_proto_sources(two_files):
    with pytest.raises(SchemaError):
        load_schema(two_files)


def test_bad_file_set():
    with pytest.raises(SchemaError):
        from_file_set(b"\xff\xff\xff not a descriptor set", "A")


# -- the schema tree --------------------------------------------------------------------------------
def test_tree_paths_numbers_and_presence():
    tree = build_tree(schema(PROTO2, "Order").descriptor)
    f = {x.name: x for x in tree.fields}
    assert [(x.name, x.number) for x in tree.fields][:3] == [("id", 1), ("count", 2), ("weight", 3)]
    assert f["id"].required and f["id"].has_presence
    assert f["level"].has_presence and not f["level"].required and f["level"].default == 7
    assert f["kind"].enum.numbers == (1, 2, 7) and f["kind"].enum.closed
    assert f["card"].oneof == "payment" and not f["card"].has_presence
    assert f["stock"].is_map and f["stock"].map_key.type == "string"
    assert f["parts"].repeated and f["parts"].message.fields[0].path == "parts[].sku"
    assert f["main"].message.fields[1].path == "main.qty"


def test_tree_proto3_optional_is_presence_not_oneof():
    tree = build_tree(schema(TYPES_PROTO, "Proto3Optional").descriptor)
    assert tree.oneofs == ()
    assert all(f.has_presence and f.oneof is None for f in tree.fields)
    choice = build_tree(schema(TYPES_PROTO, "Choice").descriptor)
    assert [o.name for o in choice.oneofs] == ["pick"]
    assert choice.oneofs[0].fields == ("text", "number", "inner", "real")


def test_tree_recursion_is_bounded():
    desc = schema(TYPES_PROTO, "Tree").descriptor
    for bound in (1, 2, 3):
        tree = build_tree(desc, SchemaOptions(max_recursion=bound))
        deepest = max(p.path.count("children[]") + p.path.count("parent")
                      for p in tree.walk() if not p.truncated)
        assert deepest == bound - 1
        truncated = [p.path for p in tree.walk() if p.truncated]
        assert truncated and all(p.message is None for p in tree.walk() if p.truncated)
    tree = build_tree(desc)  # default: 3 occurrences of Tree on a path
    assert tree.field("children").message.field("children").message.field("children").truncated


def test_required_recursion_past_the_bound_is_a_schema_error():
    text = 'syntax = "proto2"; package r; message L { required string v = 1; required L next = 2; }'
    with pytest.raises(SchemaError) as e:
        build_tree(schema(text, "L").descriptor)
    assert any("max_recursion" in v.message and v.path.startswith("next") for v in e.value.violations)


def test_groups_are_refused_all_at_once():
    text = ('syntax = "proto2";\nmessage G {\n  optional group Foo = 1 { optional int32 a = 2; }\n'
            '  optional group Bar = 3 { optional int32 b = 4; }\n}\n')
    with pytest.raises(SchemaError) as e:
        build_tree(schema(text, "G").descriptor)
    assert sorted(v.path for v in e.value.violations) == ["bar", "foo"]
