"""CSV for flat-ish messages: one row per record, one column per scalar field.

Columns are matched to fields case-insensitively (on the .proto name or the json
name), because real exports rarely share the schema's spelling: the Vermont
address file's `LON,LAT,...,POSTCODE` header loads into `Address{lat, lon, ...,
postcode}` as is. Singular nested messages are flattened into dotted columns
(`geo.lat`); repeated and map fields have no faithful CSV form, so naming one is an
error that points to JSON Lines or binary instead.

Cells are parsed by the field's type, never by their look: a string field keeps
"05401" verbatim, leading zero and all. An empty cell means "unset". The writer is
the reader's inverse: a header of dotted .proto field names in declaration order,
and an empty cell for a field without a value (a field with presence that is not
set, or anything under an unset message). Each real `oneof` also gets a column named
after it (`pick`, `geo.pick`) holding the name of its set case, so a case set to its
default (`text: ""`, an empty `inner`) survives the round trip; the column is optional
on input. Known lossy corner: a proto3 `optional` string explicitly set to "" reads back
as unset.
"""
from __future__ import annotations

import base64
import binascii
import csv
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message

from synth.errors import DataError, Violation

Path_ = tuple[FieldDescriptor, ...]

_T = FieldDescriptor
_INT_RANGES = {
    _T.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    _T.TYPE_SINT32: ("sint32", -(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: ("sfixed32", -(2**31), 2**31 - 1),
    _T.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    _T.TYPE_FIXED32: ("fixed32", 0, 2**32 - 1),
    _T.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    _T.TYPE_SINT64: ("sint64", -(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: ("sfixed64", -(2**63), 2**63 - 1),
    _T.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    _T.TYPE_FIXED64: ("fixed64", 0, 2**64 - 1),
}
_FIX = "use JSON Lines (.jsonl) or binary (.binpb) for messages with repeated or map fields"


@dataclass(frozen=True)
class _Column:
    """A header column resolved to a field path, with the parser for its cells."""

    index: int
    header: str
    path: Path_
    parse: Callable[[str], Any]
    verbatim: bool  # string fields: cells are not stripped
    oneof: OneofDescriptor | None = None  # a oneof column: `path` leads to its message, the cell names the case

    @property
    def dotted(self) -> str:
        return _dotted(self.path)


# ---------------------------------------------------------------------------- reading


def read(stream: IO[str], message_class: type[Message], name: str) -> Iterator[Message | list[Violation]]:
    """Yield one message per row, or the row's violations when it does not fit.

    The header is checked first and all its problems are raised together (they
    are not skippable: every row would fail the same way).
    """
    rows = _rows(csv.reader(stream), name)
    first = next((r for r in rows if r[1]), None)  # skip blank lines before the header
    if first is None:
        return
    header_line, header = first
    columns = _plan_columns(header, message_class.DESCRIPTOR, f"{name}:{header_line}")
    for line, row in rows:
        if row:  # the csv module reports a blank line as an empty row
            yield _row_to_message(row, len(header), columns, message_class, f"{name}:{line}")


def _rows(reader: Any, name: str) -> Iterator[tuple[int, list[str]]]:
    """Rows with the file line each starts on (quoted cells may span lines)."""
    line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            where = f"{name}:{reader.line_num}"
            raise DataError(f"{name} is not valid CSV", [Violation(where, str(e))]) from e
        except UnicodeDecodeError as e:
            raise not_utf8(name, line + 1, e) from e
        yield line + 1, row
        line = reader.line_num


def _plan_columns(header: list[str], desc: Descriptor, where: str) -> list[_Column]:
    """Resolve every header column, collecting all problems before raising."""
    columns: list[_Column] = []
    problems: list[Violation] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(header):
        label = raw.strip()
        path, problem = _resolve_column(label, desc) if label else (None, f"column {i + 1} has no name")
        if path is not None and _dotted(path) in seen:
            dotted = _dotted(path)
            problem = f"column {label!r} repeats column {seen[dotted]!r} (both are field {dotted})"
        if problem:
            problems.append(Violation(where, problem))
            continue
        assert path is not None
        seen[_dotted(path)] = label
        if isinstance(path[-1], OneofDescriptor):
            columns.append(_Column(i, label, path[:-1], str, False, oneof=path[-1]))
            continue
        leaf = path[-1]
        columns.append(_Column(i, label, path, _parser(leaf), leaf.type == _T.TYPE_STRING))
    if problems:
        raise DataError(f"the CSV header ({where}) does not match {desc.full_name}", problems,
                        hint="rename or remove these columns; column names are field names, "
                             "case-insensitive, dotted for nested messages (geo.lat)")
    return columns


def _resolve_column(label: str, desc: Descriptor) -> tuple[Path_ | None, str]:
    """A column name -> its field path, or a message saying what is wrong and how to fix it."""
    path: list[FieldDescriptor] = []
    parts = label.split(".")
    for j, part in enumerate(parts):
        field, problem = _find_field(desc, part)
        if field is None and j == len(parts) - 1 and part in desc.oneofs_by_name \
                and not _synthetic(desc.oneofs_by_name[part]):
            return (*path, desc.oneofs_by_name[part]), ""  # a oneof column: the name of the set case
        if field is None:
            return None, f"column {label!r}: {problem}"
        path.append(field)
        where = _dotted(path)
        if field.is_repeated:
            kind = "a map" if _is_map(field) else "a repeated"
            return None, f"column {label!r}: field {where} is {kind} field, which CSV cannot hold; {_FIX}"
        last = j == len(parts) - 1
        if last and field.message_type is not None:
            sub = ", ".join(f"{where}.{f.name}" for f in field.message_type.fields[:3])
            return None, f"column {label!r}: field {where} is a message; use dotted columns such as {sub}"
        if not last and field.message_type is None:
            return None, (f"column {label!r}: field {where} is not a message, "
                          f"so it has no field {parts[j + 1]!r}")
        if not last:
            desc = field.message_type
    return tuple(path), ""


def _find_field(desc: Descriptor, part: str) -> tuple[FieldDescriptor | None, str]:
    """Exact .proto name first, then a unique case-insensitive match on name or json name."""
    if part in desc.fields_by_name:
        return desc.fields_by_name[part], ""
    low = part.lower()
    matches = [f for f in desc.fields if f.name.lower() == low or f.json_name.lower() == low]
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        names = ", ".join(f.name for f in matches)
        return None, f"matches several fields of {desc.full_name} ({names}); use the exact name"
    names = ", ".join(f.name for f in desc.fields) or "(none)"
    return None, f"{desc.full_name} has no field {part!r} (its fields: {names}); rename or remove the column"


def not_utf8(name: str, line: int, e: UnicodeDecodeError) -> DataError:
    """Text formats decode in chunks, so the line is where decoding failed, or just before it."""
    return DataError(f"{name} is not UTF-8 text", [Violation(
        f"{name}:{line}", f"invalid UTF-8 at or after this line ({e.reason}); re-save the file as UTF-8")])


def _row_to_message(row: list[str], width: int, columns: list[_Column], cls: type[Message],
                    where: str) -> Message | list[Violation]:
    if len(row) != width:
        return [Violation(where, f"row has {len(row)} cells but the header has {width}")]
    msg = cls()
    problems = []
    for col in sorted(columns, key=lambda c: c.oneof is not None):  # fields first, then oneof cases
        text = row[col.index] if col.verbatim else row[col.index].strip()
        if text == "":
            continue  # empty cell: the field stays unset
        try:
            if col.oneof is not None:
                _set_case(msg, col.path, col.oneof, text)
            else:
                _assign(msg, col.path, col.parse(text))
        except ValueError as e:
            what = f"oneof {col.oneof.name}" if col.oneof is not None else f"field {col.dotted}"
            problems.append(Violation(where, f"column {col.header!r} ({what}): {e}"))
    return problems or msg


def _set_case(msg: Message, path: Path_, oneof: OneofDescriptor, case: str) -> None:
    """Mark `case` as the oneof's set member; a member left at its default is set to it."""
    names = [f.name for f in oneof.fields]
    if case not in names:
        raise ValueError(f"{case!r} is not a case of oneof {oneof.name} (one of {', '.join(names)})")
    obj = msg
    for field in path:
        obj = getattr(obj, field.name)
    current = obj.WhichOneof(oneof.name)
    if current == case:
        return
    if current is not None:
        raise ValueError(f"it names {case} but field {current} is set")
    field = next(f for f in oneof.fields if f.name == case)
    if field.message_type is not None:
        getattr(obj, case).SetInParent()
    else:
        setattr(obj, case, field.default_value)


def _assign(msg: Message, path: Path_, value: Any) -> None:
    """Set a (possibly nested) field, refusing to silently replace another oneof member."""
    obj = msg
    for i, field in enumerate(path):
        oneof = field.containing_oneof
        if oneof is not None:
            current = obj.WhichOneof(oneof.name)
            if current not in (None, field.name):
                raise ValueError(f"field {current} is also set and both are in oneof {oneof.name}; "
                                 "set only one")
        if i < len(path) - 1:
            obj = getattr(obj, field.name)
    try:
        setattr(obj, path[-1].name, value)
    except (TypeError, ValueError) as e:
        raise ValueError(str(e)) from e


# ---------------------------------------------------------------------------- cell parsers


def _parser(field: FieldDescriptor) -> Callable[[str], Any]:
    t = field.type
    if t == _T.TYPE_STRING:
        return lambda s: s
    if t in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        return lambda s: _parse_float(s, t == _T.TYPE_FLOAT)
    if t in _INT_RANGES:
        kind, lo, hi = _INT_RANGES[t]
        return lambda s: _parse_int(s, kind, lo, hi)
    if t == _T.TYPE_BOOL:
        return _parse_bool
    if t == _T.TYPE_ENUM:
        enum = field.enum_type
        return lambda s: _parse_enum(s, enum)
    if t == _T.TYPE_BYTES:
        return _parse_bytes
    raise ValueError(f"no CSV parser for field type {t}")  # messages never reach here


def _parse_float(s: str, single: bool) -> float:
    try:
        if "_" in s:
            raise ValueError
        v = float(s)
    except ValueError:
        raise ValueError(f"{s!r} is not a number") from None
    if math.isinf(v) and "inf" not in s.lower():
        raise ValueError(f"{s} is out of range for double")
    if single:
        try:
            struct.pack("<f", v)
        except OverflowError:
            raise ValueError(f"{s} is out of range for float") from None
    return v


def _parse_int(s: str, kind: str, lo: int, hi: int) -> int:
    try:
        if "_" in s:
            raise ValueError
        v = int(s)
    except ValueError:
        raise ValueError(f"{s!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ValueError(f"{v} is out of range for {kind} [{lo}, {hi}]")
    return v


def _parse_bool(s: str) -> bool:
    low = s.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise ValueError(f"{s!r} is not a boolean (use true/false or 1/0)")


def _parse_enum(s: str, enum: EnumDescriptor) -> int:
    """An enum value by name (exact, else unique case-insensitive) or by number."""
    if s in enum.values_by_name:
        return enum.values_by_name[s].number
    matches = [v for v in enum.values if v.name.lower() == s.lower()]
    if len(matches) == 1:
        return matches[0].number
    try:
        number = int(s)
    except ValueError:
        names = ", ".join(v.name for v in enum.values[:20]) + (", ..." if len(enum.values) > 20 else "")
        raise ValueError(f"{s!r} is not a value of enum {enum.full_name} "
                         f"(one of {names}, or a number)") from None
    if enum.is_closed and number not in enum.values_by_number:
        raise ValueError(f"{number} is not a value of closed enum {enum.full_name}")
    if not -(2**31) <= number < 2**31:
        raise ValueError(f"{number} is out of range for an enum (int32)")
    return number


def _parse_bytes(s: str) -> bytes:
    """Base64, standard or URL-safe alphabet, padding optional (as the proto3 JSON mapping accepts)."""
    padded = s + "=" * (-len(s) % 4)
    try:
        return base64.b64decode(padded.translate(_URLSAFE).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{_short(s)!r} is not base64") from None


_URLSAFE = str.maketrans("-_", "+/")


def _short(s: str) -> str:
    return s if len(s) <= 40 else s[:37] + "..."


# ---------------------------------------------------------------------------- writing


def writer(desc: Descriptor) -> Callable[[list[Message], IO[str]], None]:
    """A function that writes messages of `desc` as CSV; raises now if the schema can't be flat."""
    paths = _leaf_paths(desc)
    header = [_dotted(p) for p in paths]
    cells: list[Callable[[Message], str]] = []
    for p in paths:
        if isinstance(p[-1], OneofDescriptor):
            cells.append(lambda m, p=p: _case_cell(m, p))
        else:
            cells.append(lambda m, p=p, f=_formatter(p[-1]): _cell(m, p, f))

    def write(messages: list[Message], stream: IO[str]) -> None:
        # RFC 4180 line ends: with "\r\n" as terminator, csv quotes any value holding a
        # bare "\r" (with "\n" alone it does not, and the file would not read back)
        out = csv.writer(stream, lineterminator="\r\n")
        out.writerow(header)
        for m in messages:
            out.writerow([cell(m) for cell in cells])

    return write


def _leaf_paths(desc: Descriptor) -> list[Path_]:
    """Scalar field paths in declaration order; all unflattenable fields raise together."""
    problems: list[Violation] = []
    paths: list[Path_] = []

    def walk(d: Descriptor, prefix: Path_, open_types: tuple[str, ...]) -> None:
        for f in d.fields:
            path = prefix + (f,)
            if f.is_repeated:
                kind = "map" if _is_map(f) else "repeated"
                problems.append(Violation(_dotted(path), f"{kind} field; CSV holds one value per column"))
            elif f.message_type is None:
                paths.append(path)
            elif f.message_type.full_name in open_types:
                problems.append(Violation(_dotted(path), f"recursive message {f.message_type.full_name} "
                                          "cannot be flattened into columns"))
            else:
                walk(f.message_type, path, open_types + (f.message_type.full_name,))
        paths.extend(prefix + (o,) for o in d.oneofs if not _synthetic(o))  # which case is set

    walk(desc, (), (desc.full_name,))
    if problems:
        raise DataError(f"{desc.full_name} cannot be written as CSV; {_FIX}", problems, hint=_FIX)
    return paths


def _cell(msg: Message, path: Path_, fmt: Callable[[Any], str]) -> str:
    obj = msg
    for f in path[:-1]:
        if not obj.HasField(f.name):
            return ""
        obj = getattr(obj, f.name)
    leaf = path[-1]
    if leaf.has_presence and not obj.HasField(leaf.name):
        return ""
    return fmt(getattr(obj, leaf.name))


def _case_cell(msg: Message, path: tuple[Any, ...]) -> str:
    obj = msg
    for f in path[:-1]:
        if not obj.HasField(f.name):
            return ""
        obj = getattr(obj, f.name)
    return obj.WhichOneof(path[-1].name) or ""


def _synthetic(oneof: OneofDescriptor) -> bool:
    """proto3 `optional` is a one-field synthetic oneof: presence, not a choice."""
    fields = list(oneof.fields)
    return len(fields) == 1 and oneof.name == "_" + fields[0].name and fields[0].has_presence


def _formatter(field: FieldDescriptor) -> Callable[[Any], str]:
    t = field.type
    if t == _T.TYPE_STRING:
        return lambda v: v
    if t == _T.TYPE_DOUBLE:
        return repr
    if t == _T.TYPE_FLOAT:
        return _float32_text
    if t == _T.TYPE_BOOL:
        return lambda v: "true" if v else "false"
    if t == _T.TYPE_ENUM:
        by_number = field.enum_type.values_by_number
        return lambda v: by_number[v].name if v in by_number else str(v)
    if t == _T.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("ascii")
    return str  # integers


def _float32_text(v: float) -> str:
    """The shortest decimal that reads back as the same float32 (not the float64 expansion)."""
    if math.isfinite(v):
        for digits in range(6, 10):
            s = f"{v:.{digits}g}"
            if struct.unpack("<f", struct.pack("<f", float(s)))[0] == v:
                return s
    return repr(v)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _dotted(path: Path_ | list[FieldDescriptor]) -> str:
    return ".".join(f.name for f in path)
