"""The REST adapter: `create_app(service) -> FastAPI` (docs/architecture.md).

Thin by design: routers convert JSON to service arguments and results back, and
every error goes through `synth.server.errors.classify` and the contract's one
table of HTTP and gRPC codes, which the gRPC interceptor reads too. Body: `{"error": {"code", "message", "details"}}`; a bug
is a 500 with a generic message and an id, never a stack trace.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

import synth
from synth.errors import InvalidArgument, SynthError, Violation
from synth.server.admission import Admission
from synth.server.auth import AccessPolicy
from synth.server.errors import error_json
from synth.server.rest import jobs, models, openapi, web
from synth.server.rest.deadline import DeadlineMiddleware
from synth.server.rest.guard import ErrorGuardMiddleware
from synth.server.rest.answers import error_response
from synth.server.rest.limits import BodyLimitMiddleware
from synth.server.rest.upload_auth import UploadAuthMiddleware
from synth.server.rest.schemas import Health
from synth.service import SynthService
from synth_contract.errors import BY_CODE

log = logging.getLogger("synth.server.rest")

HTTP_CODES = {400: "invalid_argument", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
              409: "failed_precondition", 413: "too_large", 415: "unsupported_media_type", 422: "invalid_argument"}


def _operation_id(route: APIRoute) -> str:
    """Stable OpenAPI operation ids (`models-sample`), for generated clients."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(service: SynthService, preload: Sequence[str] = (), access: AccessPolicy | None = None,
               admission: Admission | None = None) -> FastAPI:
    """A FastAPI app serving `service`; `preload` names models to load at startup; `access` holds the
    API tokens (default: none, every call allowed); `admission` bounds streams and sets deadlines
    (shared with the gRPC server in `synth serve`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name in preload:  # pay the load cost before the first request, not during it
            try:
                await run_in_threadpool(service.preload, name)
            except Exception as e:  # noqa: BLE001 - a broken model must not stop the server
                log.warning("could not preload model %s: %s", name, e)
        yield

    app = FastAPI(title="protosynth", version=synth.__version__, lifespan=lifespan,
                  description="Schema-driven synthetic records: sample, encode, decode, interpolate, "
                              "train. Records use the proto3 JSON mapping with .proto field names.",
                  generate_unique_id_function=_operation_id)
    app.state.service = service
    app.state.access = access or AccessPolicy()
    app.state.admission = admission = admission or Admission()
    app.add_middleware(ErrorGuardMiddleware)  # a bug is a 500 that keeps the connection (guard.py)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.limits.max_upload_bytes)
    app.add_middleware(UploadAuthMiddleware)  # an upload's 401 before its body is read (upload_auth.py)
    app.add_middleware(DeadlineMiddleware, admission=admission)  # 504 at the deadline (deadline.py)
    _install_error_handlers(app)
    app.include_router(models.router)
    app.include_router(jobs.router)
    app.include_router(web.make_router(web.page_html()))

    health_threads: list[anyio.CapacityLimiter] = []

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers; `models` counts the healthy models, `broken` names the others."""
        # Its own two threads, not the shared threadpool: under load every token of that one may be
        # held by model calls, and a health check must not queue behind them.
        if not health_threads:
            health_threads.append(anyio.CapacityLimiter(2))
        healthy, broken = await anyio.to_thread.run_sync(service.health, limiter=health_threads[0])
        return {"status": "ok", "models": len(healthy), "broken": broken}

    openapi.state_limits(app, service.limits)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        violations = [Violation(".".join(str(p) for p in e.get("loc", ()) if p != "body"), e.get("msg", ""))
                      for e in exc.errors()]
        return error_response(InvalidArgument("the request does not match the API", violations))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "internal" if exc.status_code >= 500 else "invalid_argument")
        error = BY_CODE.get(code, SynthError)(str(exc.detail), code=code)
        return JSONResponse(error_json(error), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(SynthError)
    async def domain_error(request: Request, exc: SynthError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Anything else is a bug: a generic 500 with an id; the traceback is logged by classify.
        return error_response(exc)
