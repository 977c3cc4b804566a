"""Admission control for both transports: stream slots, deadlines and draining (docs/reliability.md).

A long stream holds a worker for as long as it runs (a gRPC pool thread, or a
threadpool token per REST chunk), so the number of streams is bounded twice: in
all (`max_streams`) and per client (`max_streams_per_client`). A client is its
API token's caller id when the server has tokens, else its IP address. A stream
beyond either bound is refused at once with ResourceExhausted (429 /
RESOURCE_EXHAUSTED, "retry later"), before any model work; health checks never
take a slot, so they answer while every slot is busy.

Every request gets a deadline (`request_timeout`, `stream_timeout`): streams check
it between chunks and end with DeadlineExceeded (504 / DEADLINE_EXCEEDED). On
shutdown `drain()` is called: new streams are refused with Unavailable and running
ones end cleanly at their next chunk, while unary requests finish within the
grace period (synth/server/main.py).

Framework-free and thread-safe: the REST app and the gRPC server of one process
share one `Admission`, so the bounds count streams of both transports together.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from synth.errors import DeadlineExceeded, ResourceExhausted, Unavailable, Violation

SHUTTING_DOWN = "the server is shutting down; retry the request (on another replica)"


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock; `check()` raises DeadlineExceeded once it has passed."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self) -> None:
        if self.expired():
            raise self.error()

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"the request ran past this server's deadline of {self.seconds:g} s",
                                [Violation("deadline", f"{self.seconds:g} s")], timeout_s=self.seconds)


@dataclass
class StreamSlot:
    """One admitted stream; `release()` is idempotent (a stream may end in several ways at once)."""

    admission: Admission
    client: str
    deadline: Deadline | None  # None: the stream ends with its subject (WatchJob: the job)
    counted: bool = True  # False: one chunk, as short as a unary call; it takes no slot
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        self.admission._release(self)

    def check(self) -> None:
        """Between chunks: end the stream if the server drains or its deadline has passed."""
        if self.admission.draining:
            raise Unavailable(SHUTTING_DOWN)
        if self.deadline is not None:
            self.deadline.check()

    def __enter__(self) -> StreamSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    """Stream bounds, deadlines and the draining flag of one server process."""

    def __init__(self, max_streams: int = 48, max_streams_per_client: int = 16, request_timeout: float = 60.0,
                 stream_timeout: float = 3600.0):
        if max_streams < 1 or max_streams_per_client < 1 or request_timeout <= 0 or stream_timeout <= 0:
            raise ValueError("stream bounds must be >= 1 and timeouts > 0")
        self.max_streams, self.max_streams_per_client = max_streams, max_streams_per_client
        self.request_timeout, self.stream_timeout = request_timeout, stream_timeout
        self._lock = threading.Lock()
        self._by_client: Counter[str] = Counter()
        self._draining = threading.Event()

    # -- draining ------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self) -> None:
        """Refuse new streams and end running ones at their next chunk (shutdown)."""
        self._draining.set()

    # -- deadlines -----------------------------------------------------------------------
    def request_deadline(self, client_remaining: float | None = None) -> Deadline:
        """The server's deadline for a unary request, or the client's own when that is sooner."""
        return _sooner(self.request_timeout, client_remaining)

    # -- streams -------------------------------------------------------------------------
    @property
    def streams(self) -> int:
        with self._lock:
            return sum(self._by_client.values())

    def open_stream(self, client: str, client_remaining: float | None = None, timed: bool = True,
                    counted: bool = True) -> StreamSlot:
        """A slot for a new stream, or ResourceExhausted / Unavailable (draining) at once; `timed`: the
        stream gets `stream_timeout` (or the client's sooner deadline). A stream of one chunk (a small
        sample, `counted=False`) holds its worker no longer than a unary call: it is not bounded here."""
        if self.draining:
            raise Unavailable(SHUTTING_DOWN)
        deadline = _sooner(self.stream_timeout, client_remaining) if timed else None
        if not counted:
            return StreamSlot(self, client, deadline, counted=False)
        with self._lock:
            total, mine = sum(self._by_client.values()), self._by_client[client]
            if total >= self.max_streams:
                raise ResourceExhausted(
                    f"this server already runs {total} streams, its limit; retry later",
                    [Violation("streams", f"at most {self.max_streams} at once")], limit=self.max_streams)
            if mine >= self.max_streams_per_client:
                raise ResourceExhausted(
                    f"this client already runs {mine} streams, its limit; retry later or end one",
                    [Violation("streams", f"at most {self.max_streams_per_client} per client at once")],
                    limit=self.max_streams_per_client)
            self._by_client[client] += 1
        return StreamSlot(self, client, deadline)

    def _release(self, slot: StreamSlot) -> None:
        with self._lock:
            if slot._released or not slot.counted:
                return
            slot._released = True
            self._by_client[slot.client] -= 1
            if self._by_client[slot.client] <= 0:
                del self._by_client[slot.client]


def _sooner(seconds: float, client_remaining: float | None) -> Deadline:
    if client_remaining is not None and 0 <= client_remaining < seconds:
        return Deadline.after(client_remaining)
    return Deadline.after(seconds)


def client_key(caller_id: str | None, address: str | None) -> str:
    """Who a stream counts against: the API token's caller, else the peer's address."""
    return f"token:{caller_id}" if caller_id else f"addr:{address or 'unknown'}"
