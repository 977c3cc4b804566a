"""Request body size limit, as raw ASGI middleware (TooLarge -> 413 before parsing).

A declared Content-Length over the limit is refused without reading the body. A
chunked body is counted as it arrives; once over the limit the app sees an
error from `receive` and whatever it would answer is replaced by the 413, so an
oversized upload never sits fully in memory or on disk.
"""
from __future__ import annotations

from typing import Any

from synth.errors import TooLarge, Violation
from synth.server.rest.answers import send_error


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, int(length))
            return
        state = {"seen": 0, "over": False, "started": False}

        async def counting_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes:
                    state["over"] = True
                    raise self._error(state["seen"])
            return message

        async def guarded_send(message: dict) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await self._refuse(send, state["seen"])
                return  # swallow the app's own answer to the aborted body
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except TooLarge:
            if not state["started"]:
                await self._refuse(send, state["seen"])

    def _error(self, size: int) -> TooLarge:
        return TooLarge(f"request body of {size}+ bytes exceeds this server's limit of {self.max_bytes} bytes",
                        [Violation("body", f"at most {self.max_bytes} bytes")], limit=self.max_bytes)

    async def _refuse(self, send: Any, size: int) -> None:
        await send_error(send, self._error(size), close=True)  # the rest of the body stays unread
