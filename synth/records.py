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
import math
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
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
    plan = _json_plan(message.DESCRIPTOR)
    if plan is not None:
        try:
            return _plain_dict(message, plan)
        except _NeedsJsonFormat:
            pass
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# -- to_dict's fast path ----------------------------------------------------------------
# json_format walks every field through a Python printer (~5 us for a 9-field address),
# which a stream of 100,000 records pays on the thread that shares the GIL with the model
# (docs/benchmarks.md, Performance). Records of plain fields need only ListFields and a
# rule per field, planned once per message type. Whatever the plan does not cover (enums,
# bytes, float32, maps, extensions, well-known types, non-finite doubles) goes to
# json_format, which stays the reference: tests/test_records.py checks both agree.
_KEEP, _STRING, _DOUBLE, _MESSAGE = range(4)
_Plan = dict[Any, tuple[str, int, bool]]  # field descriptor -> (name, rule, repeated)
_PLANS: dict[Any, _Plan | None] = {}
_PLANNING = object()  # a recursive message type meets itself while its plan is made


class _NeedsJsonFormat(Exception):
    pass


def _json_plan(descriptor: Descriptor) -> _Plan | None:
    """How the fast path writes each field, or None when json_format must write the message.

    Keyed by the field descriptors themselves, so extensions (not in the plan) are noticed."""
    plan = _PLANS.get(descriptor)
    if plan is _PLANNING:
        return {}  # the caller's own plan decides; a recursive field is converted by its type's plan
    if descriptor in _PLANS:
        return plan
    _PLANS[descriptor] = _PLANNING
    plan = {}
    if descriptor.full_name.startswith("google.protobuf."):  # well-known types have their own JSON
        plan = None
    for field in descriptor.fields if plan is not None else ():
        rule = _field_rule(field)
        if rule is None:
            plan = None
            break
        plan[field] = (field.name, rule, field.is_repeated)
    _PLANS[descriptor] = plan
    return plan


def _field_rule(field: Any) -> int | None:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry or _json_plan(field.message_type) is None:
            return None
        return _MESSAGE
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return None if field.type == FieldDescriptor.TYPE_BYTES else _KEEP
    if cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
        return _STRING  # the JSON mapping quotes 64-bit integers
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return _DOUBLE
    if cpp in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32, FieldDescriptor.CPPTYPE_BOOL):
        return _KEEP
    return None  # enums (names, json_name options) and float32 (shortest float32 text)


def _plain_dict(message: Message, plan: _Plan) -> dict[str, Any]:
    out = {}
    for field, value in message.ListFields():
        how = plan.get(field)
        if how is None:
            raise _NeedsJsonFormat
        name, rule, repeated = how
        if repeated:
            out[name] = [_plain_value(rule, v) for v in value]
        else:
            out[name] = value if rule == _KEEP else _plain_value(rule, value)
    return out


def _plain_value(rule: int, value: Any) -> Any:
    if rule == _KEEP:
        return value
    if rule == _DOUBLE:
        if value - value != 0:  # inf or nan: the mapping writes them as strings
            raise _NeedsJsonFormat
        return value
    if rule == _STRING:
        return str(value)
    plan = _json_plan(value.DESCRIPTOR)
    if plan is None:
        raise _NeedsJsonFormat
    return _plain_dict(value, plan)


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
        return _parse_dict(data, cls)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as e:
        raise _error(cls, where, str(e)) from e


def _parse_dict(data: dict, cls: type[Message]) -> Message:
    try:
        return json_format.ParseDict(data, cls())
    except json_format.ParseError as e:
        if "Float value too" not in str(e):  # "... too large" / "... too small"
            raise
        # once more with float32 edges rounded; a value beyond them fails again, with the same error
        return json_format.ParseDict(_float32_edges_rounded(data, cls.DESCRIPTOR), cls())


# protobuf writes a float32 by its shortest text, so FLT_MAX becomes 3.4028235e+38, which is
# above FLT_MAX as a double, and its own JSON parser refuses it ("Float value too large").
# Values that round to +-FLT_MAX in float32 are read as it, so every float crosses JSON Lines.
_FLT_MAX = 3.4028234663852886e38
_FLT_ROUNDING_LIMIT = 3.4028235677973366e38  # (FLT_MAX + the next float32 step) / 2: the float32 rounding edge


def _float32_edges_rounded(data: dict, descriptor: Descriptor) -> dict:
    """A copy of the JSON object `data` (the caller's stays as it was) with every float field
    that rounds to +-FLT_MAX set to it, in nested messages, lists and maps too."""
    out = dict(data)
    for key, value in data.items():
        field = descriptor.fields_by_name.get(key) or _by_json_name(descriptor, key)
        if field is None:
            continue
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry and isinstance(value, dict):
            out[key] = {k: _rounded(entry.fields_by_name["value"], v) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [_rounded(field, v) for v in value]
        else:
            out[key] = _rounded(field, value)
    return out


def _rounded(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return _float32_edges_rounded(value, field.message_type) if isinstance(value, dict) else value
    if (field.type == FieldDescriptor.TYPE_FLOAT and isinstance(value, (int, float)) and not isinstance(value, bool)
            and _FLT_MAX < abs(value) < _FLT_ROUNDING_LIMIT):
        return math.copysign(_FLT_MAX, value)
    return value


def _by_json_name(descriptor: Descriptor, name: str) -> Any:
    return next((f for f in descriptor.fields if f.json_name == name), None)


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _error(cls: type[Message], where: str, message: str) -> DataError:
    return DataError(f"record does not fit {cls.DESCRIPTOR.full_name}", [Violation(where, message)])
