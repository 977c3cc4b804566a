"""Length-delimited binary protobuf: each message prefixed by its size as a base-128 varint.

This is the stream format of Java's `writeDelimitedTo`/`parseDelimitedFrom` and of
most protobuf tooling, and it is exact: no float formatting, no lost presence. The
varint codec is written here (ten lines) rather than borrowed from protobuf's
internal modules, whose import paths change between releases. Errors name the
record index and the byte offset where it starts, the binary analogue of
`file:line`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message

from synth.errors import DataError, Violation

_MAX_VARINT_BYTES = 10  # a uint64 needs at most ten 7-bit groups
_MAX_MESSAGE_BYTES = 2**31 - 1  # protobuf's own hard limit for one message


def encode_varint(value: int) -> bytes:
    """Unsigned base-128 varint, least significant group first."""
    if value < 0:
        raise ValueError("varint sizes are unsigned")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(stream: IO[bytes]) -> tuple[int, int] | None:
    """Read one varint; returns (value, bytes consumed), or None at a clean end of stream.

    Raises ValueError for a varint cut off by the end of the stream or one longer
    than ten bytes (not a size prefix, so not this format).
    """
    value = shift = 0
    for count in range(1, _MAX_VARINT_BYTES + 1):
        b = stream.read(1)
        if not b:
            if count == 1:
                return None
            raise ValueError("stream ends inside a size prefix (truncated file?)")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value, count
        shift += 7
    raise ValueError(f"size prefix longer than {_MAX_VARINT_BYTES} bytes (not a length-delimited stream?)")


def read(stream: IO[bytes], message_class: type[Message], name: str) -> Iterator[Message | list[Violation]]:
    """Yield one message per size-prefixed record, or its violations when it fails to parse.

    A record that fails to parse can be skipped (its size is known); a broken size
    prefix or a short read cannot, so those always raise.
    """
    offset = 0
    index = 0
    while True:
        where = f"{name}: record {index} at byte {offset}"
        try:
            prefix = decode_varint(stream)
        except ValueError as e:
            raise DataError(f"{name} is not a valid length-delimited protobuf stream",
                            [Violation(where, str(e))]) from e
        if prefix is None:
            return
        size, used = prefix
        data = _read_body(stream, size, where, name)
        yield _parse(data, message_class, where)
        offset += used + size
        index += 1


def _read_body(stream: IO[bytes], size: int, where: str, name: str) -> bytes:
    if size > _MAX_MESSAGE_BYTES:
        raise DataError(f"{name} is not a valid length-delimited protobuf stream", [Violation(
            where, f"size prefix says {size} bytes, over protobuf's 2 GiB limit (not this format?)")])
    data = _read_exactly(stream, size)
    if len(data) < size:
        raise DataError(f"{name} ends in the middle of a record", [Violation(
            where, f"expected {size} bytes, found {len(data)} (truncated file?)")])
    return data


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """Read in chunks, so a garbage size prefix can't make us allocate gigabytes up front."""
    chunks = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _parse(data: bytes, message_class: type[Message], where: str) -> Message | list[Violation]:
    try:
        return message_class.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        full = message_class.DESCRIPTOR.full_name
        return [Violation(where, f"not a valid {full} message ({len(data)} bytes): {e}")]


def writer(desc: Descriptor) -> Callable[[list[Message], IO[bytes]], None]:
    """A function that writes size-prefixed messages (deterministic map order, for reproducible files)."""

    def write(messages: list[Message], stream: IO[bytes]) -> None:
        for m in messages:
            data = m.SerializeToString(deterministic=True)
            stream.write(encode_varint(len(data)))
            stream.write(data)

    return write
