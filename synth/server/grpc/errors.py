"""Exceptions -> gRPC status, in one interceptor (KServe's ExceptionToStatusInterceptor).

`synth.server.errors.classify` picks the error and the contract's table its gRPC
code, as for REST; `synth_contract.grpc_wire.status_of` builds the rich status
(ErrorInfo with the error code, BadRequest with the violations) that the client's
`error_of_status` reads back. Sent with `abort_with_status`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from synth.server.errors import classify
from synth_contract.grpc_wire import status_of


def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status for `exc` (raises, as `context.abort` does)."""
    error, wire = classify(exc)
    code = grpc.StatusCode[wire.grpc]
    context.abort_with_status(rpc_status.to_status(status_of(error, code.value[0])))


class ExceptionToStatusInterceptor(grpc.ServerInterceptor):
    """Wrap unary-unary and unary-stream handlers so any exception becomes a mapped status."""

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler  # reflection's stream-stream handler: leave it alone


def _unary(fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except Exception as e:  # noqa: BLE001 - mapped (bugs logged) by classify
            abort(context, e)

    return wrapped


def _streaming(fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
               ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except Exception as e:  # noqa: BLE001
            abort(context, e)

    return wrapped

