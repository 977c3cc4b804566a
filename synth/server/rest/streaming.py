"""NDJSON streams that stop: on client disconnect, at their deadline, and when the server drains.

The lines come from a blocking generator (the service makes one chunk of records
per step). Each step runs in the threadpool, and before each one the stream's
slot is checked (synth/server/admission.py): on drain it ends with an in-band
`{"error": {"code": "unavailable"}}` line, past its deadline with
`deadline_exceeded`. When the client goes away Starlette cancels this generator
at its current `await`: the chunk being made is finished (a model call cannot be
interrupted), no further chunk is asked for, and the service's generator is
closed and the slot released in `finally`.
"""
from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import anyio

from synth.server.admission import StreamSlot
from synth.server.errors import classify, error_json

_END = object()


def error_line(exc: BaseException) -> bytes:
    """After the 200 is sent an error can only be reported in-band: as a last `{"error": ...}` line."""
    return (json.dumps(error_json(classify(exc)[0])) + "\n").encode()


async def guarded_lines(lines: Iterator[bytes], slot: StreamSlot) -> AsyncIterator[bytes]:
    """`lines`, pulled one step at a time off the event loop, checked against `slot` before each step."""
    try:
        while True:
            slot.check()
            line = await anyio.to_thread.run_sync(next, lines, _END)
            if line is _END:
                return
            yield line
    except Exception as e:  # noqa: BLE001 - classified (and logged if a bug) by classify
        yield error_line(e)
    finally:  # also on cancellation (client gone): no thread is inside `lines` by now
        slot.release()
        close = getattr(lines, "close", None)
        if close is not None:
            close()
