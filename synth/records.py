"""Conversion between the record forms users hand us and message instances.

Users pass records as message instances, as dicts in the proto3 JSON mapping, or
as JSON text; everything past the edge of the library works on message instances
only. Converting in one place means every entry point (Python API, CLI, server)
accepts the same forms and reports a bad record the same way: a `DataError`
whose violation names where the record came from (`record[3]`, `data.jsonl:7`)
and carries protobuf's own explanation, which names the offending field.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from synth.errors import DataError, Violation


def message_class_of(cls_or_descriptor: Any) -> type[Message]:
    """The message class for a class, a Descriptor or a loaded schema.

    Callers hold whichever is handy (the CLI a `LoadedSchema`, the server a
    Descriptor); accepting all three keeps that bookkeeping out of their code.
    """
    if isinstance(cls_or_descriptor, type) and issubclass(cls_or_descriptor, Message):
        return cls_or_descriptor
    if isinstance(cls_or_descriptor, Descriptor):
        return message_factory.GetMessageClass(cls_or_descriptor)
    cls = getattr(cls_or_descriptor, "message_class", None)
    if isinstance(cls, type) and issubclass(cls, Message):
        return cls
    raise TypeError(
        f"expected a message class, Descriptor or loaded schema, got {type(cls_or_descriptor).__name__}"
    )


def to_message(record: Any, message_class: Any, *, where: str = "") -> Message:
    """Convert one record to an instance of `message_class`.

    Accepted forms: an instance of the class (returned as is, not copied); another
    Message with the same full name, e.g. from a different descriptor pool or a
    generated `_pb2` module (re-parsed from its wire bytes); a dict in the proto3
    JSON mapping (both json names and .proto field names are accepted); a JSON
    string holding such an object. `where` locates the record in error messages.
    """
    cls = message_class_of(message_class)
    if isinstance(record, cls):
        return record
    if isinstance(record, Message):
        return _from_other_message(record, cls, where)
    if isinstance(record, str):
        return _from_dict(_load_json(record, cls, where), cls, where)
    if isinstance(record, dict):
        return _from_dict(record, cls, where)
    hint = " (for serialized protobuf bytes use message_class.FromString)" if isinstance(
        record, (bytes, bytearray)) else ""
    raise _error(cls, where, f"cannot convert a {type(record).__name__} to a message; expected a "
                             f"message, a dict or a JSON string{hint}")


def to_messages(records: Iterable[Any], message_class: Any) -> list[Message]:
    """Convert many records; a failure names the record's index (`record[3]`)."""
    cls = message_class_of(message_class)
    return [to_message(r, cls, where=f"record[{i}]") for i, r in enumerate(records)]


def to_dict(message: Message) -> dict[str, Any]:
    """A message as a dict in the proto3 JSON mapping.

    Keys are the .proto field names (`preserving_proto_field_name=True`), not the
    lowerCamelCase json names: they match the schema the user wrote, the CSV
    header and the field paths used elsewhere in protosynth. Both spellings parse
    back. Fields at their default value are left out (the standard mapping), and
    64-bit integers are strings, as the mapping requires.
    """
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _from_other_message(record: Message, cls: type[Message], where: str) -> Message:
    """Re-parse a same-named message from another class via its wire bytes."""
    got, want = record.DESCRIPTOR.full_name, cls.DESCRIPTOR.full_name
    if got != want:
        raise _error(cls, where, f"record is a {got} message, expected {want}")
    try:
        return cls.FromString(record.SerializeToString())
    except Exception as e:  # DecodeError, or EncodeError for missing proto2 required fields
        raise _error(cls, where, f"could not re-parse the {got} message: {e}") from e


def _load_json(text: str, cls: type[Message], where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _error(cls, where, f"invalid JSON: {e.msg} (column {e.colno})") from e


def _from_dict(data: Any, cls: type[Message], where: str) -> Message:
    if not isinstance(data, dict):
        raise _error(cls, where, f"expected a JSON object, got {_json_kind(data)}")
    try:
        return json_format.ParseDict(data, cls())
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as e:
        raise _error(cls, where, str(e)) from e


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _error(cls: type[Message], where: str, message: str) -> DataError:
    return DataError(f"record does not fit {cls.DESCRIPTOR.full_name}", [Violation(where, message)])
