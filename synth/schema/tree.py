"""Descriptor -> an immutable, torch-free schema tree (docs/architecture.md; docs/model.md for the type mapping).

Every node carries its path (`address.geo.lat`) and field number. Recursive message
types are unrolled up to `max_recursion` occurrences of the same type on a path; a
field whose type would exceed the bound is kept but marked `truncated`, which the
compiler and codec treat as "always absent" (records that go deeper are refused
with a message naming the path and the fix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from synth.errors import SchemaError, Violation

_FD = FieldDescriptor

# protobuf type -> our type name (the .proto spelling)
TYPE_NAMES = {
    _FD.TYPE_DOUBLE: "double", _FD.TYPE_FLOAT: "float",
    _FD.TYPE_INT32: "int32", _FD.TYPE_INT64: "int64", _FD.TYPE_UINT32: "uint32",
    _FD.TYPE_UINT64: "uint64", _FD.TYPE_SINT32: "sint32", _FD.TYPE_SINT64: "sint64",
    _FD.TYPE_FIXED32: "fixed32", _FD.TYPE_FIXED64: "fixed64",
    _FD.TYPE_SFIXED32: "sfixed32", _FD.TYPE_SFIXED64: "sfixed64",
    _FD.TYPE_BOOL: "bool", _FD.TYPE_STRING: "string", _FD.TYPE_BYTES: "bytes",
    _FD.TYPE_ENUM: "enum", _FD.TYPE_MESSAGE: "message", _FD.TYPE_GROUP: "group",
}
FLOAT_TYPES = frozenset({"double", "float"})
INT_TYPES = frozenset({"int32", "int64", "uint32", "uint64", "sint32", "sint64",
                       "fixed32", "fixed64", "sfixed32", "sfixed64"})
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1), "sint32": (-(2**31), 2**31 - 1), "sfixed32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1), "sint64": (-(2**63), 2**63 - 1), "sfixed64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1), "fixed32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1), "fixed64": (0, 2**64 - 1),
}
# float is single precision on the wire: decoded values are clamped to its finite range.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class EnumInfo:
    full_name: str
    names: tuple[str, ...]
    numbers: tuple[int, ...]
    closed: bool  # proto2 enums reject unknown numbers


@dataclass(frozen=True)
class FieldNode:
    name: str
    number: int
    path: str
    type: str  # "double", "int32", "string", "enum", "message", ...
    repeated: bool
    has_presence: bool  # singular field with HasField (proto2 optional, proto3 optional, messages)
    required: bool
    default: Any
    oneof: str | None  # the real oneof this field belongs to (not proto3 synthetic ones)
    enum: EnumInfo | None = None
    message: MessageNode | None = None  # None for non-message fields and truncated recursion
    map_key: FieldNode | None = None  # for map<K, V>: the entry's key and value fields
    map_value: FieldNode | None = None
    truncated: bool = False  # recursion bound reached: the field is modelled as always absent
    type_name: str = ""  # full name of the message / map-entry / enum type, if any

    @property
    def is_map(self) -> bool:
        return self.map_key is not None

    @property
    def int_range(self) -> tuple[int, int] | None:
        return INT_RANGES.get(self.type)


def is_joint_float(f: FieldNode) -> bool:
    """Floats modelled jointly by the message's ScalarTuple: singular, always set, not in a oneof."""
    return f.type in FLOAT_TYPES and not f.repeated and not f.has_presence and f.oneof is None


@dataclass(frozen=True)
class OneofNode:
    name: str
    path: str
    fields: tuple[str, ...]  # field names, in declaration order


@dataclass(frozen=True)
class MessageNode:
    full_name: str
    path: str
    fields: tuple[FieldNode, ...]
    oneofs: tuple[OneofNode, ...]
    depth: int

    def field(self, name: str) -> FieldNode:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def walk(self):
        """Yield every FieldNode in the (unrolled) tree, depth first."""
        for f in self.fields:
            yield f
            for sub in (f.message, f.map_value.message if f.map_value else None):
                if sub is not None:
                    yield from sub.walk()


@dataclass(frozen=True)
class SchemaOptions:
    max_recursion: int = 3  # how many times one message type may nest inside itself
    max_depth: int = 16  # hard bound on nesting of any kind


def join_path(parent: str, name: str) -> str:
    """Paths are relative to the root message: `postcode`, `geo.lat`, `items[].sku`."""
    return f"{parent}.{name}" if parent else name


def build_tree(desc: Descriptor, options: SchemaOptions = SchemaOptions()) -> MessageNode:
    """Type-check the whole message before any module is built; one SchemaError lists every problem."""
    problems: list[Violation] = []
    root = _message(desc, "", (), 0, options, problems)
    if problems:
        raise SchemaError(f"message {desc.full_name} cannot be modelled", problems)
    return root


def _message(desc, path, stack, depth, opt, problems) -> MessageNode:
    fields = [_field(f, path, stack + (desc.full_name,), depth, opt, problems) for f in desc.fields]
    oneofs = tuple(
        OneofNode(o.name, join_path(path, o.name), tuple(f.name for f in o.fields))
        for o in desc.oneofs if not _synthetic(o)
    )
    return MessageNode(desc.full_name, path, tuple(fields), oneofs, depth)


def _synthetic(oneof) -> bool:
    # proto3 `optional` is implemented as a one-field synthetic oneof: it is presence, not a choice.
    return len(oneof.fields) == 1 and oneof.fields[0].has_presence and getattr(
        oneof, "has_presence", True) and oneof.name == "_" + oneof.fields[0].name


def _field(fd: FieldDescriptor, parent: str, stack, depth, opt, problems) -> FieldNode:
    path = join_path(parent, fd.name)
    ftype = TYPE_NAMES[fd.type]
    if ftype == "group":
        problems.append(Violation(path, "proto2 groups are not supported; use a nested message"))
    repeated = fd.is_repeated
    oneof = fd.containing_oneof.name if fd.containing_oneof and not _synthetic(fd.containing_oneof) else None
    common = dict(
        name=fd.name, number=fd.number, path=path, type=ftype, repeated=repeated,
        has_presence=(not repeated) and fd.has_presence and oneof is None,
        required=fd.is_required, default=_default(fd), oneof=oneof,
        enum=_enum(fd.enum_type) if ftype == "enum" else None,
        type_name=(fd.message_type.full_name if ftype == "message"
                   else fd.enum_type.full_name if ftype == "enum" else ""),
    )
    if ftype != "message":
        return FieldNode(**common)
    mt = fd.message_type
    if mt.GetOptions().map_entry:
        key = _field(mt.fields_by_name["key"], path + "{}", stack, depth, opt, problems)
        value = _field(mt.fields_by_name["value"], path + "{}", stack, depth, opt, problems)
        # A map whose value type is past the recursion bound is always empty.
        return FieldNode(**common, map_key=key, map_value=value, truncated=value.truncated)
    too_deep = depth + 1 > opt.max_depth or stack.count(mt.full_name) >= opt.max_recursion
    if too_deep:
        if common["required"]:
            problems.append(Violation(path, f"required recursive field exceeds max_recursion="
                                      f"{opt.max_recursion}; raise max_recursion"))
        return FieldNode(**common, truncated=True)
    sub_path = path + ("[]" if repeated else "")
    return FieldNode(**common, message=_message(mt, sub_path, stack, depth + 1, opt, problems))


def _default(fd: FieldDescriptor) -> Any:
    if fd.is_repeated or fd.type == _FD.TYPE_MESSAGE:
        return None
    return fd.default_value


def _enum(ed) -> EnumInfo:
    return EnumInfo(
        ed.full_name,
        tuple(v.name for v in ed.values),
        tuple(v.number for v in ed.values),
        closed=bool(getattr(ed, "is_closed", False)),
    )
