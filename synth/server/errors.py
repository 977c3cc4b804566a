"""Any exception -> what the client is told, on either transport (docs/architecture.md).

The mapping of error codes to HTTP statuses and gRPC codes is the contract's one
table (`synth_contract.errors.WIRE`); the REST handlers and the gRPC interceptor
both call `classify`, so a domain error means the same on both transports.
Anything that is not a SynthError is a bug: the client gets 500 / INTERNAL with a
generic message and an id to quote; the traceback goes to the server log only.
Torch-free and grpc-free, so that REST alone never imports grpc.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from synth_contract.errors import InternalError, SynthError, Wire, wire_for

log = logging.getLogger("synth.server.errors")


def classify(exc: BaseException) -> tuple[SynthError, Wire]:
    """The error to send for `exc` (bugs become a logged InternalError) and its wire codes."""
    if isinstance(exc, SynthError):
        return exc, wire_for(type(exc))
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s", error_id, exc_info=exc)
    bug = InternalError(f"internal server error (id {error_id}); see the server log", error_id=error_id)
    return bug, wire_for(InternalError)


def error_json(error: SynthError) -> dict[str, Any]:
    """The REST body `{"error": {code, message, details}}`, with details kept JSON-safe."""
    body = error.to_dict()
    return {"error": {**body, "details": _jsonable(body["details"])}}


def _jsonable(value: Any) -> Any:
    """Details come from library code; keep them JSON-safe whatever they hold."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
