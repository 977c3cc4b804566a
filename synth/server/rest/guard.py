"""Unexpected exceptions -> the mapped JSON answer, with the connection kept open.

Starlette sends a handler's answer for `Exception` from its outermost middleware and
then re-raises, so uvicorn logs the traceback a second time and closes the
keep-alive connection. This raw ASGI middleware sits inside it: any exception
raised before the response has started is answered here (`classify` logs a bug
once, with an id) and goes no further. After the response has started there is
nothing to answer with, so the exception propagates as before.
"""
from __future__ import annotations

from typing import Any

from synth.server.rest.answers import send_error


class ErrorGuardMiddleware:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - classified (bugs logged with an id) below
            if started:
                raise
            await send_error(send, exc)
