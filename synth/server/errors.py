"""Any exception -> what the client is told, on either transport (docs/architecture.md).

The mapping of error codes to HTTP statuses and gRPC codes is the contract's one
table (`synth_contract.errors.WIRE`); the REST handlers and the gRPC interceptor
both call `classify`, so a domain error means the same on both transports.
Anything that is not a SynthError is a bug: the client gets 500 / INTERNAL with a
generic message and an id to quote; the traceback goes to the server log only.
Torch-free and grpc-free, so that REST alone never imports grpc.
"""
from __future__ import annotations

import errno
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from synth_contract.errors import InsufficientStorage, InternalError, SynthError, Violation, Wire, wire_for

log = logging.getLogger("synth.server.errors")


MAX_MESSAGE_CHARS = 500  # an error never echoes more than a short prefix of the input
MAX_VIOLATIONS = 20
_ROOTS = {"tmp", "var", "home", "root", "work", "opt", "usr", "srv", "mnt", "models", "data", "app", "etc",
          "private", "Users", *(Path.cwd().parts[1:2])}
_SERVER_PATH = re.compile(r"(?<![\w:/.])/(?:%s)(?:/[^\s'\"(),;:]*)?" % "|".join(sorted(map(re.escape, _ROOTS))))


def classify(exc: BaseException) -> tuple[SynthError, Wire]:
    """The error to send for `exc` (bugs become a logged InternalError) and its wire codes."""
    if isinstance(exc, SynthError):
        return _bounded(exc), wire_for(type(exc))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # not a bug: the operator must free space, and the client may retry then
        log.warning("disk full: %s", exc)
        full = InsufficientStorage("the server's disk is full (or its quota is used up); retry later, or ask "
                                   "the operator to free space")
        return full, wire_for(InsufficientStorage)
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s", error_id, exc_info=exc)
    bug = InternalError(f"internal server error (id {error_id}); see the server log", error_id=error_id)
    return bug, wire_for(InternalError)


def _bounded(error: SynthError) -> SynthError:
    """The same error with short texts and no server paths (a 50 MB body must not come back)."""
    violations = [Violation(_text(v.path, 200), _text(v.message, 300)) for v in error.violations[:MAX_VIOLATIONS]]
    details = {k: (_text(v, 300) if isinstance(v, str) else v) for k, v in error.details.items()}
    if len(error.violations) > MAX_VIOLATIONS:
        details.setdefault("total", len(error.violations))
    text = _text(error.message, MAX_MESSAGE_CHARS)
    if text == error.message and violations == error.violations and details == error.details:
        return error
    bounded = type(error)(text, violations, code=error.code, details=details)
    bounded.__cause__ = error
    return bounded


def _text(value: str, limit: int) -> str:
    value = _SERVER_PATH.sub(lambda m: Path(m.group(0)).name or "/", value)
    return value if len(value) <= limit else value[:limit] + f"... ({len(value) - limit} more characters)"


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
