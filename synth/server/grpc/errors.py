"""Exceptions -> gRPC status, in one interceptor (KServe's ExceptionToStatusInterceptor).

Reads the same table as the REST handlers (`server.errors.classify`). The status
carries rich details (grpc/grpc examples/python/errors), sent with
`abort_with_status`:
  - `google.rpc.ErrorInfo`: reason = protosynth's error code (`invalid_data`), domain
    "protosynth", metadata = the scalar details; clients map `reason` back to an
    exception class;
  - `google.rpc.BadRequest`: one field violation per `Violation(path, message)`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.errors import ErrorBody, classify

DOMAIN = "protosynth"


def to_status(body: ErrorBody) -> grpc.Status:
    code = body.mapping.grpc
    details = []
    info = error_details_pb2.ErrorInfo(
        reason=body.code, domain=DOMAIN,
        metadata={k: str(v) for k, v in body.details.items() if isinstance(v, (str, int, float, bool))})
    details.append(_pack(info))
    if body.violations:
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.get("path", ""), description=v.get("message", ""))
            for v in body.violations])
        details.append(_pack(bad))
    status = status_pb2.Status(code=code.value[0], message=body.message, details=details)
    return rpc_status.to_status(status)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    """Abort the RPC with the status for `exc` (raises, as `context.abort` does)."""
    context.abort_with_status(to_status(classify(exc)))


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

