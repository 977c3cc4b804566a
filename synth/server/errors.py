"""The one table from `synth.errors` to HTTP status and gRPC code (STYLE.md a.7, b server/).

Both the FastAPI exception handlers and the gRPC interceptor read `TABLE`
through `classify`, so a domain error means the same thing on both transports
(the KServe drift, kserve/kserve#4247, cannot happen here). Lookup walks the
exception's MRO, so subclasses (VersionError < ArtifactError) inherit their
parent's row unless they have their own.

Anything that is not a SynthError is a bug: clients get 500 / INTERNAL with a
generic message and an id to quote; the traceback goes to the server log only.

| error              | HTTP | gRPC                | why                                        |
|--------------------|------|---------------------|--------------------------------------------|
| SchemaError        | 422  | INVALID_ARGUMENT    | the upload is well-formed but unusable      |
| ConfigError        | 422  | INVALID_ARGUMENT    | "                                          |
| DataError          | 422  | INVALID_ARGUMENT    | a record does not fit the model's schema   |
| InvalidArgument    | 400  | INVALID_ARGUMENT    | a bad request parameter                    |
| NotFound           | 404  | NOT_FOUND           | unknown model or job                       |
| AlreadyExists      | 409  | ALREADY_EXISTS      | model/job name taken                       |
| FailedPrecondition | 409  | FAILED_PRECONDITION | wrong state (job already finished, ...)    |
| TooLarge           | 413  | RESOURCE_EXHAUSTED  | over a server limit (n, steps, upload)     |
| Cancelled          | 409  | CANCELLED           | the operation was cancelled                |
| ArtifactError      | 500  | INTERNAL            | a model on the server is broken: the       |
| VersionError       | 500  | INTERNAL            | operator must fix it, not the client       |
| (anything else)    | 500  | INTERNAL            | a bug; generic message, logged with an id  |
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from synth.errors import (AlreadyExists, ArtifactError, Cancelled, ConfigError, DataError,
                          FailedPrecondition, InvalidArgument, NotFound, SchemaError, SynthError,
                          TooLarge)

log = logging.getLogger("server.errors")


@dataclass(frozen=True)
class Mapping:
    http: int
    grpc: grpc.StatusCode


TABLE: dict[type[SynthError], Mapping] = {
    SchemaError: Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    ConfigError: Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    DataError: Mapping(422, grpc.StatusCode.INVALID_ARGUMENT),
    InvalidArgument: Mapping(400, grpc.StatusCode.INVALID_ARGUMENT),
    NotFound: Mapping(404, grpc.StatusCode.NOT_FOUND),
    AlreadyExists: Mapping(409, grpc.StatusCode.ALREADY_EXISTS),
    FailedPrecondition: Mapping(409, grpc.StatusCode.FAILED_PRECONDITION),
    TooLarge: Mapping(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    Cancelled: Mapping(409, grpc.StatusCode.CANCELLED),
    ArtifactError: Mapping(500, grpc.StatusCode.INTERNAL),
}
INTERNAL = Mapping(500, grpc.StatusCode.INTERNAL)


@dataclass(frozen=True)
class ErrorBody:
    """What a client learns about a failure: the same on both transports."""

    mapping: Mapping
    code: str  # synth error code, e.g. "invalid_data"
    message: str
    details: dict[str, Any]

    @property
    def violations(self) -> list[dict[str, str]]:
        return list(self.details.get("violations") or [])

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def mapping_for(exc_type: type[BaseException]) -> Mapping:
    for klass in exc_type.__mro__:
        if klass in TABLE:
            return TABLE[klass]
    return INTERNAL


def classify(exc: BaseException) -> ErrorBody:
    """Turn any exception into the body sent to the client (logging bugs with an id)."""
    if isinstance(exc, SynthError):
        d = exc.to_dict()
        return ErrorBody(mapping_for(type(exc)), d["code"], d["message"], _jsonable(d["details"]))
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s", error_id, exc_info=exc)
    return ErrorBody(INTERNAL, "internal", f"internal server error (id {error_id}); see the server log",
                     {"error_id": error_id})


def _jsonable(value: Any) -> Any:
    """Details come from library code; keep them JSON-safe whatever they hold."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
