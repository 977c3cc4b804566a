"""Reading and writing record files: CSV, JSON Lines and length-delimited binary protobuf.

The format comes from the file extension (`.csv`, `.jsonl`/`.ndjson`, `.binpb`),
optionally followed by `.gz` for gzip. Each format module turns a stream into a
sequence of messages and bad-record reports; the policy of what to do with a bad
record (fail with `file:line`, or skip and count it) lives here once, so the three
formats behave alike.
"""
from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from google.protobuf.message import Message

from synth.errors import DataError, InvalidArgument, Violation
from synth.io import binpb_format, csv_format, jsonl_format
from synth.records import message_class_of, to_messages

__all__ = ["FORMATS", "ReadResult", "detect_format", "iter_records", "read_records", "write_records"]

FORMATS = ("csv", "jsonl", "binpb")
_ALIASES = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "binpb": "binpb"}
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".binpb": "binpb"}
_TEXT = {"csv", "jsonl"}


@dataclass
class ReadResult:
    """What a read produced: the records, and the bad ones skipped when `skip_bad` was set."""

    records: list[Message]
    skipped: int = 0
    errors: list[Violation] = field(default_factory=list)  # one per skipped record


def detect_format(path: str | Path) -> str:
    """The format named by a file's extension (`data.csv.gz` -> `csv`)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"cannot tell the data format of {p.name} from its extension; "
            f"pass --data-format ({' | '.join(FORMATS)})",
            [Violation(p.name, "known extensions: .csv, .jsonl, .ndjson, .binpb (optionally + .gz)")],
            hint=f"pass --data-format ({' | '.join(FORMATS)})",
        )
    return fmt


def read_records(path: str | Path, message_class: Any, fmt: str | None = None,
                 skip_bad: bool = False) -> ReadResult:
    """Read every record of a data file as instances of `message_class`.

    A bad record raises `DataError` naming `file:line` (or record index and byte
    offset for binary files) and the field; with `skip_bad=True` it is skipped and
    reported in `ReadResult.errors` instead. Problems that make the whole file
    unreadable (unknown CSV columns, a truncated binary stream) always raise.
    """
    result = ReadResult(records=[])
    result.records = list(iter_records(path, message_class, fmt, skip_bad, report=result))
    return result


def iter_records(path: str | Path, message_class: Any, fmt: str | None = None, skip_bad: bool = False,
                 report: ReadResult | None = None) -> Iterator[Message]:
    """The records of a data file one at a time, in file order, never all in memory.

    The streaming twin of `read_records` (same formats, gzip and bad-record policy), for
    training files larger than memory. Skipped records are counted in `report` (its
    `records` list is left alone).
    """
    p = Path(path)
    fmt = _normalize_format(fmt) if fmt else detect_format(p)
    cls = message_class_of(message_class)
    if not p.is_file():
        raise DataError(f"data file not found: {p}", [Violation(p.name, "no such file")], file=str(p))
    report = report if report is not None else ReadResult(records=[])
    with _open_for_read(p, fmt) as stream:
        for item in _guard_gzip(p, _reader(fmt)(stream, cls, p.name)):
            if isinstance(item, Message):
                yield item
            else:
                _collect(report, item, p, cls.DESCRIPTOR.full_name, skip_bad)


def write_records(records: Iterable[Any], path_or_stream: str | Path | IO[Any],
                  message_class_or_descriptor: Any, fmt: str | None = None) -> int:
    """Write records to a file (gzip when the name ends in `.gz`) or an open stream.

    Records may be in any form `synth.records.to_message` accepts; all are
    converted (and the schema checked against the format) before the file is
    opened, so a bad record never leaves a half-written file. `fmt` defaults to
    the file extension and is required for streams. Returns the number written.
    """
    cls = message_class_of(message_class_or_descriptor)
    is_path = isinstance(path_or_stream, (str, Path))
    if fmt:
        fmt = _normalize_format(fmt)
    elif is_path:
        fmt = detect_format(path_or_stream)
    else:
        raise InvalidArgument("fmt is required when writing to a stream", hint=f"one of {', '.join(FORMATS)}")
    messages = to_messages(records, cls)
    writer = _writer(fmt)(cls.DESCRIPTOR)  # validates the schema for the format up front
    if is_path:
        with _open_for_write(Path(path_or_stream), fmt) as stream:
            writer(messages, stream)
    else:
        with _adapt_stream(path_or_stream, fmt) as stream:
            writer(messages, stream)
    return len(messages)


def _normalize_format(fmt: str) -> str:
    norm = _ALIASES.get(fmt.lower().lstrip("."))
    if norm is None:
        raise InvalidArgument(f"unknown data format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    return norm


def _reader(fmt: str) -> Any:
    return {"csv": csv_format.read, "jsonl": jsonl_format.read, "binpb": binpb_format.read}[fmt]


def _writer(fmt: str) -> Any:
    return {"csv": csv_format.writer, "jsonl": jsonl_format.writer, "binpb": binpb_format.writer}[fmt]


def _collect(result: ReadResult, item: Message | list[Violation], path: Path, full_name: str,
             skip_bad: bool) -> None:
    """Keep a record, or apply the bad-record policy to a format's list of violations."""
    if isinstance(item, Message):
        result.records.append(item)
        return
    if not skip_bad:
        raise DataError(f"bad record in {path.name} (does not fit {full_name})", item, file=str(path),
                        hint="fix the record, or pass --skip-bad to skip and count bad records")
    result.skipped += 1
    result.errors.append(Violation(item[0].path, "; ".join(v.message for v in item)))


def _guard_gzip(path: Path, items: Iterator[Any]) -> Iterator[Any]:
    """Turn a corrupt or truncated gzip stream into a DataError naming the file."""
    try:
        yield from items
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path.name} is not a valid gzip file", [Violation(path.name, str(e) or
                        "compressed stream ended early (truncated file?)")], file=str(path)) from e


@contextmanager
def _open_for_read(path: Path, fmt: str) -> Iterator[IO[Any]]:
    raw: IO[bytes] = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    with raw:
        if fmt not in _TEXT:
            yield raw
            return
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield text
        finally:
            text.detach()


@contextmanager
def _open_for_write(path: Path, fmt: str) -> Iterator[IO[Any]]:
    # mtime=0 keeps gzip output byte-for-byte reproducible.
    raw: IO[bytes] = (gzip.GzipFile(path, "wb", mtime=0) if path.name.lower().endswith(".gz")
                      else open(path, "wb"))
    with raw:
        with _adapt_stream(raw, fmt) as stream:
            yield stream


@contextmanager
def _adapt_stream(stream: IO[Any], fmt: str) -> Iterator[IO[Any]]:
    """Give the format the kind of stream it needs without closing the caller's stream."""
    is_text = isinstance(stream, io.TextIOBase)
    if fmt not in _TEXT:
        if is_text:
            buffer = getattr(stream, "buffer", None)  # sys.stdout and friends
            if buffer is None:
                raise InvalidArgument("binpb needs a binary stream, got a text stream",
                                      hint="open the file with mode 'wb'")
            stream.flush()
            yield buffer
            buffer.flush()
            return
        yield stream
        return
    if is_text:
        yield stream
        return
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    try:
        yield text
        text.flush()
    finally:
        text.detach()
