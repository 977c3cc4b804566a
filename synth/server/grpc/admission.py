"""Admission for the gRPC server: worker capacity, stream slots and deadlines (synth/server/admission.py).

grpc's sync server runs every RPC on one thread pool, and a server stream holds
its thread until it ends; health checks queue behind it like anything else. So
Synthesizer calls may use at most `capacity` threads (`grpc_workers` less
`grpc_reserved_workers`): the reserved ones are always free for health and
reflection. A Synthesizer call beyond the capacity, or a stream beyond the
stream bounds, is refused at once with RESOURCE_EXHAUSTED instead of waiting in
the pool's queue.

Deadlines: a stream checks drain and deadline before each message; a unary call
whose work ends after its deadline is answered DEADLINE_EXCEEDED, not with a late
result (a model call cannot be interrupted; the request limits bound it).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from synth.errors import ResourceExhausted, Violation
from synth.server.admission import Admission, client_key
from synth.server.grpc.auth import SERVICE_PREFIX, current_caller

# Streams without a deadline of their own: a WatchJob lasts as long as its job (bounded by max_train_steps).
UNTIMED_STREAMS = frozenset({"WatchJob"})


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Bound the Synthesizer calls running at once; health and reflection pass untouched."""

    def __init__(self, admission: Admission, capacity: int, chunk: int):
        self.admission, self.capacity, self.chunk = admission, capacity, chunk  # chunk: records per message
        self._busy = threading.BoundedSemaphore(capacity)

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        name = method[len(SERVICE_PREFIX):]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, timed=name not in UNTIMED_STREAMS),
                request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
        return handler

    def _acquire(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise ResourceExhausted(f"all {self.capacity} gRPC workers for requests are busy; retry later",
                                    [Violation("workers", f"{self.capacity} at once")], limit=self.capacity)

    def _unary(self, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            deadline = self.admission.request_deadline(context.time_remaining())
            self._acquire()
            try:
                result = fn(request, context)
            finally:
                self._busy.release()
            deadline.check()  # a late answer is disowned, not sent
            return result

        return wrapped

    def _streaming(self, fn: Callable[[Any, Any], Iterator[Any]], timed: bool
                   ) -> Callable[[Any, Any], Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._acquire()
            try:
                caller = current_caller()
                long = not isinstance(getattr(request, "n", None), int) or request.n > self.chunk
                slot = self.admission.open_stream(client_key(caller.id if caller else None, _host(context.peer())),
                                                  context.time_remaining(), timed=timed, counted=long)
                context.add_callback(slot.release)  # also when grpc drops the stream without closing us
                with slot:
                    messages = iter(fn(request, context))
                    while True:
                        slot.check()  # drain and deadline, before the next chunk is made (not after)
                        try:
                            message = next(messages)
                        except StopIteration:
                            return
                        yield message
            finally:
                self._busy.release()

        return wrapped


def _host(peer: str | None) -> str:
    """'ipv4:127.0.0.1:5555' / 'ipv6:[::1]:5555' -> the address without the port."""
    if not peer:
        return "unknown"
    address = peer.split(":", 1)[1] if ":" in peer else peer
    return address.rsplit(":", 1)[0] if ":" in address else address
