"""The server's deadline for REST requests, as raw ASGI middleware (synth/server/admission.py).

A request that has not started its response within `request_timeout` seconds is
answered 504 `deadline_exceeded` at that moment, wherever its time went (waiting
for a threadpool token under load, or in the model). The handler's thread cannot
be interrupted: it finishes its model call (bounded by the request limits) and
its answer is dropped. A response that has started (an NDJSON stream) is left
alone; streams check their own deadline between chunks (streaming.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from synth.server.admission import Admission, Deadline
from synth.server.errors import classify
from synth.server.rest.answers import send_error

log = logging.getLogger("synth.server.rest")


class DeadlineMiddleware:
    def __init__(self, app: Any, admission: Admission):
        self.app, self.admission = app, admission

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, late = asyncio.Event(), False

        async def tracking_send(message: dict) -> None:
            if late:
                return  # the 504 has been sent: the handler's late answer goes nowhere
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        deadline = self.admission.request_deadline()
        task = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiter}, timeout=max(0.0, deadline.remaining()),
                           return_when=asyncio.FIRST_COMPLETED)
        if task.done() or started.is_set():
            waiter.cancel()
            await task
            return
        late = True  # set before any await: nothing of the handler's can be sent after this
        waiter.cancel()
        task.add_done_callback(_drop)
        await _timeout(send, deadline)


def _drop(task: asyncio.Future) -> None:
    """Retrieve a late handler's outcome so asyncio does not warn about it; its bugs are still logged."""
    if not task.cancelled() and task.exception() is not None:
        classify(task.exception())  # logs a bug with an id; a domain error is simply dropped


async def _timeout(send: Any, deadline: Deadline) -> None:
    await send_error(send, deadline.error())
