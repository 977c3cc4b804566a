"""`.proto` file or text -> FileDescriptorSet -> descriptor and message class, at run time.

We run grpcio-tools' bundled protoc in a subprocess (so its diagnostics, which it
writes to the C-level stderr, can be captured and shown with file:line), and never
need pre-generated `_pb2` modules. Each load gets its own DescriptorPool, so two
models whose schemas share a package never clash.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from synth.errors import SchemaError, Violation


@dataclass(frozen=True)
class LoadedSchema:
    """A message type ready to use: its descriptor, class and the bytes that rebuild both."""

    file_set: bytes  # serialized FileDescriptorSet, with all imports
    descriptor: Descriptor
    message_class: type[Message]
    proto_file: str  # the file that defines the message, as protoc names it

    @property
    def message_name(self) -> str:
        return self.descriptor.full_name

    def proto_source(self) -> str:
        """A readable `.proto`-like rendering of the defining file (for docs and the API)."""
        from synth.schema.render import render_file

        fds = descriptor_pb2.FileDescriptorSet.FromString(self.file_set)
        for f in fds.file:
            if f.name == self.proto_file:
                return render_file(f)
        return ""


def _protoc_include() -> str:
    import grpc_tools

    return os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


def compile_proto(path: str | Path, include_paths: list[str | Path] | None = None) -> bytes:
    """Compile a `.proto` file (and its imports) into a serialized FileDescriptorSet."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"proto file not found: {path}", hint="check the path")
    includes = [str(path.parent.resolve())] + [str(Path(p).resolve()) for p in include_paths or []]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{_protoc_include()}"]
        cmd += [f"-I{inc}" for inc in includes]
        cmd += [f"--descriptor_set_out={out}", "--include_imports", "--include_source_info", path.name]
        proc = subprocess.run(cmd, cwd=str(path.parent), capture_output=True, text=True)
        if proc.returncode != 0:
            # Show locations relative to the user's file, not our include dirs.
            text = (proc.stderr or proc.stdout).replace(str(path.parent.resolve()) + os.sep, "")
            raise _protoc_error(text, path)
        return Path(out).read_bytes()


def compile_proto_text(text: str, filename: str = "schema.proto") -> bytes:
    """Compile `.proto` source text; imports resolve against Google's well-known types."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / filename
        p.write_text(text)
        return compile_proto(p)


def _protoc_error(stderr: str, path: Path) -> SchemaError:
    # protoc prints one "file:line:col: message" per problem; keep them all.
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    violations = []
    for ln in lines:
        loc, sep, msg = ln.partition(": ")
        violations.append(Violation(loc, msg) if sep and ":" in loc else Violation("", ln))
    return SchemaError(f"protoc could not compile {path.name}", violations, protoc_output=stderr.strip())


def from_file_set(file_set: bytes, message: str, max_fields: int | None = None,
                  max_depth: int | None = None) -> LoadedSchema:
    """Build a fresh pool from a serialized FileDescriptorSet and find `message` in it.

    `max_fields` and `max_depth` bound what `message` reaches (an uploaded schema):
    checked on the descriptors before protobuf builds anything, so a huge or deeply
    chained schema is a SchemaError naming the limit, not a RecursionError.
    """
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(file_set)
    except Exception as e:  # protobuf raises DecodeError, but be robust to any corruption
        raise SchemaError(f"not a valid FileDescriptorSet: {e}") from e
    names = [
        f"{f.package + '.' if f.package else ''}{m}"
        for f in fds.file
        for m in _message_names(f.message_type)
    ]
    full = _resolve_name(message, names)
    if max_fields is not None or max_depth is not None:
        check_size(fds, full, max_fields, max_depth)
    try:
        pool = descriptor_pool.DescriptorPool()
        for f in fds.file:
            pool.Add(f)
        desc = pool.FindMessageTypeByName(full)
        return LoadedSchema(file_set, desc, message_factory.GetMessageClass(desc), desc.file.name)
    except (TypeError, ValueError, KeyError, RecursionError) as e:  # protobuf's own limits
        reason = "it nests too deeply" if isinstance(e, RecursionError) else str(e)[:300]
        raise SchemaError(f"protobuf cannot build message {full}: {reason}",
                          [Violation(full, "simplify the schema: fewer fields or less nesting")]) from None


def check_size(fds: descriptor_pb2.FileDescriptorSet, message: str, max_fields: int | None,
               max_depth: int | None) -> None:
    """SchemaError unless the types `message` reaches have at most `max_fields` fields in all
    and no chain of distinct nested message types longer than `max_depth` (iterative: no recursion)."""
    types: dict[str, Any] = {}

    def collect(prefix: str, messages: Any) -> None:
        stack = [(prefix, m) for m in messages]
        while stack:
            pre, m = stack.pop()
            full = f"{pre}.{m.name}" if pre else m.name
            types[full] = m
            stack += [(full, n) for n in m.nested_type]

    for f in fds.file:
        collect(f.package, f.message_type)

    def children(name: str) -> list[str]:
        return [fd.type_name.lstrip(".") for fd in types[name].field
                if fd.type_name.lstrip(".") in types]

    height: dict[str, int] = {}  # longest chain of distinct types below each type (cycles cut)
    fields, on_path = 0, {message}
    stack: list[tuple[str, list[str]]] = [(message, children(message))]
    fields += len(types[message].field)
    while stack:
        name, todo = stack[-1]
        if todo:
            child = todo.pop()
            if child in height or child in on_path:
                continue
            on_path.add(child)
            fields += len(types[child].field)
            stack.append((child, children(child)))
            if max_depth is not None and len(stack) > max_depth:
                raise SchemaError(f"message {message} nests more than {max_depth} message types deep",
                                  [Violation(name, f"at most {max_depth} levels of nested message types "
                                                   "(the server's max_schema_depth)")], limit=max_depth)
            continue
        stack.pop()
        on_path.discard(name)
        height[name] = 1 + max((height.get(c, 0) for c in children(name) if c not in on_path), default=0)
        if max_depth is not None and height[name] > max_depth:
            raise SchemaError(f"message {message} nests more than {max_depth} message types deep",
                              [Violation(name, f"at most {max_depth} levels of nested message types "
                                               "(the server's max_schema_depth)")], limit=max_depth)
    if max_fields is not None and fields > max_fields:
        raise SchemaError(f"message {message} has {fields} fields (with the message types it reaches); "
                          f"this server's limit is {max_fields}",
                          [Violation(message, f"at most {max_fields} fields (the server's max_schema_fields)")],
                          limit=max_fields)


def _message_names(types: Any, prefix: str = "") -> list[str]:
    out = []
    for t in types:
        if t.options.map_entry:
            continue
        out.append(prefix + t.name)
        out += _message_names(t.nested_type, prefix + t.name + ".")
    return out


def _resolve_name(message: str, names: list[str]) -> str:
    if message in names:
        return message
    matches = [n for n in names if n.endswith("." + message)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise SchemaError(f"message name {message!r} is ambiguous",
                          [Violation("", f"use one of the full names: {', '.join(matches)}")],
                          candidates=matches)
    user = [n for n in names if not n.startswith("google.protobuf.")]
    raise SchemaError(f"message {message!r} not found in the schema",
                      [Violation("", f"available messages: {', '.join(user) or '(none)'}")])


def _file_set_of(desc: Descriptor) -> bytes:
    """Serialize a descriptor's file and all its transitive imports, dependencies first."""
    fds = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        fds.file.append(proto)

    add(desc.file)
    return fds.SerializeToString()


def load_schema(source: Any, message: str | None = None) -> LoadedSchema:
    """Load a message type from a `.proto` path, `.proto` text, a message class, instance or descriptor.

    `message` may be the full name (`synth.examples.Address`) or an unambiguous short name.
    """
    if isinstance(source, LoadedSchema):
        return source
    if isinstance(source, Descriptor):
        return LoadedSchema(_file_set_of(source), source, message_factory.GetMessageClass(source),
                            source.file.name)
    if isinstance(source, type) and issubclass(source, Message):
        d = source.DESCRIPTOR
        return LoadedSchema(_file_set_of(d), d, source, d.file.name)
    if isinstance(source, Message):
        return load_schema(type(source), message)
    if message is None:
        raise SchemaError("a message name is required with a .proto source", hint="pass --message NAME")
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.endswith(".proto")):
        return from_file_set(compile_proto(source), message)
    if isinstance(source, str):
        return from_file_set(compile_proto_text(source), message)
    raise SchemaError(f"cannot load a schema from {type(source).__name__}")
