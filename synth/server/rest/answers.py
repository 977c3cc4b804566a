"""Error answers: one body and one set of headers, whether FastAPI's exception handlers
send them or raw ASGI middleware does (body limit, deadline, error guard, upload token).

The body is `{"error": ...}` from `synth.server.errors.classify`; a 401 says how to
authenticate (`WWW-Authenticate: Bearer`, RFC 6750), and a 429 or 503 that the same
request may succeed soon (`Retry-After: 1`).
"""
from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from synth.server.errors import classify, error_json


def error_headers(status: int) -> dict[str, str]:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status in (429, 503):
        return {"Retry-After": "1"}  # a busy or draining server
    return {}


def error_response(exc: BaseException) -> JSONResponse:
    """The answer to `exc` from an exception handler."""
    error, wire = classify(exc)
    return JSONResponse(error_json(error), status_code=wire.http, headers=error_headers(wire.http) or None)


async def send_error(send: Any, exc: BaseException, *, close: bool = False) -> None:
    """The answer to `exc` sent on a raw ASGI `send`; `close` ends the connection (a request
    body that will not be read)."""
    error, wire = classify(exc)
    payload = json.dumps(error_json(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(wire.http).items()]
    await send({"type": "http.response.start", "status": wire.http, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
