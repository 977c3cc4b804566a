"""The token of an upload, checked before its body is read (raw ASGI middleware).

FastAPI parses a multipart form before it runs the route's dependencies, so without this
a client with no token, or a wrong one, could make the server receive and spool a whole
upload (up to `max_upload_bytes`) before it got its 401. Here `POST /v1/jobs` is refused
from its headers alone, with the same error, body and `WWW-Authenticate` header as the
route's own check (which still runs, and decides for a request that passes here).
"""
from __future__ import annotations

from typing import Any

from synth.errors import SynthError
from synth.server.auth import bearer_token
from synth.server.rest.answers import send_error

UPLOAD_PATHS = frozenset({"/v1/jobs"})


class UploadAuthMiddleware:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
            policy = getattr(scope["app"].state, "access", None)
            if policy is not None:
                header = dict(scope.get("headers") or []).get(b"authorization")
                try:
                    policy.authenticate(bearer_token(header.decode("latin-1") if header else None), write=True)
                except SynthError as e:
                    await send_error(send, e, close=True)  # the body stays unread
                    return
        await self.app(scope, receive, send)
