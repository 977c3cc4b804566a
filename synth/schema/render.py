"""Render a FileDescriptorProto back to `.proto` text: for `GET /v1/models/{name}` and docs.

Source info (kept by `compile_proto`) would let us return the original text verbatim,
but artifacts built from message classes do not have it, so we always render.
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    _T.TYPE_DOUBLE: "double", _T.TYPE_FLOAT: "float", _T.TYPE_INT64: "int64",
    _T.TYPE_UINT64: "uint64", _T.TYPE_INT32: "int32", _T.TYPE_FIXED64: "fixed64",
    _T.TYPE_FIXED32: "fixed32", _T.TYPE_BOOL: "bool", _T.TYPE_STRING: "string",
    _T.TYPE_BYTES: "bytes", _T.TYPE_UINT32: "uint32", _T.TYPE_SFIXED32: "sfixed32",
    _T.TYPE_SFIXED64: "sfixed64", _T.TYPE_SINT32: "sint32", _T.TYPE_SINT64: "sint64",
}


def _type_name(f: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALARS.get(f.type) or f.type_name.lstrip(".")


def _field_line(f, syntax: str, maps: dict, indent: str) -> str:
    if f.type_name in maps:
        k, v = maps[f.type_name]
        return f"{indent}map<{_type_name(k)}, {_type_name(v)}> {f.name} = {f.number};"
    label = ""
    if f.label == _T.LABEL_REPEATED:
        label = "repeated "
    elif syntax == "proto2":
        label = "required " if f.label == _T.LABEL_REQUIRED else "optional "
    elif f.proto3_optional:
        label = "optional "
    default = f" [default = {f.default_value}]" if f.HasField("default_value") else ""
    return f"{indent}{label}{_type_name(f)} {f.name} = {f.number}{default};"


def _message(m, syntax: str, prefix: str, indent: str) -> list[str]:
    maps = {
        f"{prefix}.{m.name}.{n.name}": (n.field[0], n.field[1])
        for n in m.nested_type if n.options.map_entry
    }
    out = [f"{indent}message {m.name} {{"]
    inner = indent + "  "
    for e in m.enum_type:
        out += _enum(e, inner)
    for n in m.nested_type:
        if not n.options.map_entry:
            out += _message(n, syntax, f"{prefix}.{m.name}", inner)
    real_oneofs = {i for i, f in enumerate(m.field) if f.HasField("oneof_index") and not f.proto3_optional}
    done: set[int] = set()
    for i, f in enumerate(m.field):
        if i in real_oneofs:
            idx = f.oneof_index
            if idx in done:
                continue
            done.add(idx)
            out.append(f"{inner}oneof {m.oneof_decl[idx].name} {{")
            for g in m.field:
                if g.HasField("oneof_index") and g.oneof_index == idx and not g.proto3_optional:
                    out.append(_field_line(g, "proto3", maps, inner + "  "))
            out.append(f"{inner}}}")
        else:
            out.append(_field_line(f, syntax, maps, inner))
    out.append(f"{indent}}}")
    return out


def _enum(e, indent: str) -> list[str]:
    out = [f"{indent}enum {e.name} {{"]
    out += [f"{indent}  {v.name} = {v.number};" for v in e.value]
    return out + [f"{indent}}}"]


def render_file(f: descriptor_pb2.FileDescriptorProto) -> str:
    syntax = f.syntax or "proto2"
    lines = [f'syntax = "{syntax}";']
    if f.package:
        lines.append(f"package {f.package};")
    lines += [f'import "{d}";' for d in f.dependency]
    lines.append("")
    prefix = f".{f.package}" if f.package else ""
    for e in f.enum_type:
        lines += _enum(e, "")
    for m in f.message_type:
        lines += _message(m, syntax, prefix, "")
    return "\n".join(lines) + "\n"
