"""JSON Lines in the proto3 JSON mapping: one record per line, blank lines ignored.

The mapping holds every message shape (repeated, map, oneof, nested), so this is
the text format for schemas CSV can't flatten. Parsing goes through
`synth.records.to_message`, so a line accepts exactly what the Python API accepts
(json names or .proto names) and reports problems in the same words, located at
`file:line`. The writer emits .proto field names and leaves default values out.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import IO

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from synth.errors import DataError, Violation
from synth.io.csv_format import not_utf8
from synth.records import to_dict, to_message


def read(stream: IO[str], message_class: type[Message], name: str) -> Iterator[Message | list[Violation]]:
    """Yield one message per non-blank line, or that line's violations when it does not fit."""
    for line_no, line in _lines(stream, name):
        if not line.strip():
            continue
        where = f"{name}:{line_no}"
        try:
            yield to_message(line, message_class, where=where)
        except DataError as e:
            yield e.violations or [Violation(where, e.message)]


def _lines(stream: IO[str], name: str) -> Iterator[tuple[int, str]]:
    """Numbered lines; undecodable text becomes a DataError at the line it was found."""
    line_no = 0
    while True:
        try:
            line = stream.readline()
        except UnicodeDecodeError as e:
            raise not_utf8(name, line_no + 1, e) from e
        if not line:
            return
        line_no += 1
        yield line_no, line


def writer(desc: Descriptor) -> Callable[[list[Message], IO[str]], None]:
    """A function that writes messages as JSON Lines (every schema fits, so nothing to check)."""

    def write(messages: list[Message], stream: IO[str]) -> None:
        for m in messages:
            stream.write(json.dumps(to_dict(m), ensure_ascii=False, separators=(",", ":")))
            stream.write("\n")

    return write
