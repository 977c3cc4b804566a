"""API tokens over gRPC: `authorization: Bearer <token>` metadata (docs/service.md, "Access control and TLS").

The same rule as REST (`synth.server.auth.AccessPolicy`): CreateJob, CancelJob and
DeleteModel always need a valid token when the server has tokens; the other Synthesizer methods
need one unless `public_read`; health and reflection stay open. A refusal is raised
as the contract's Unauthenticated, which `ExceptionToStatusInterceptor` (outside this
one) turns into the rich UNAUTHENTICATED status, so clients get the same class as over
REST. The caller reaches the servicer through `current_caller()`.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from synth.server.auth import AccessPolicy, bearer_token
from synth.service import Caller

SERVICE_PREFIX = "/synth.v1.Synthesizer/"
WRITE_METHODS = frozenset({"CreateJob", "CancelJob", "DeleteModel"})

_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("synth_grpc_caller", default=None)


def current_caller() -> Caller | None:
    """The authenticated caller of the RPC running on this thread (None: no tokens, or a public read)."""
    return _CALLER.get()


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticate Synthesizer calls before their handler runs."""

    def __init__(self, policy: AccessPolicy):
        self.policy = policy

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not self.policy.enabled or not method.startswith(SERVICE_PREFIX):
            return handler  # health, reflection, unknown methods: untouched
        write = method[len(SERVICE_PREFIX):] in WRITE_METHODS
        metadata = handler_call_details.invocation_metadata or ()
        header = next((value for key, value in metadata if key == "authorization"), None)
        token = bearer_token(header if isinstance(header, str) else None)

        def authenticate() -> Caller | None:
            return self.policy.authenticate(token, write=write)

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, authenticate), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, authenticate), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler  # Synthesizer has no client-streaming methods


def _unary(fn: Callable[[Any, Any], Any], authenticate: Callable[[], Caller | None]) -> Callable[[Any, Any], Any]:
    def wrapped(request: Any, context: Any) -> Any:
        reset = _CALLER.set(authenticate())  # raises Unauthenticated
        try:
            return fn(request, context)
        finally:
            _CALLER.reset(reset)

    return wrapped


def _streaming(fn: Callable[[Any, Any], Iterator[Any]], authenticate: Callable[[], Caller | None]
               ) -> Callable[[Any, Any], Iterator[Any]]:
    def wrapped(request: Any, context: Any) -> Iterator[Any]:
        # The streams (Sample, WatchJob) are reads; the caller is set for the stream bounds per client
        # (synth/server/grpc/admission.py). The pool thread serves this stream alone until it ends.
        _CALLER.set(authenticate())
        try:
            yield from fn(request, context)
        finally:
            _CALLER.set(None)  # not reset(token): a generator may be closed from another context

    return wrapped
