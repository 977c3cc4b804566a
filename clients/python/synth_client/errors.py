"""Exceptions raised by the client, mirroring the server's `synth.errors` codes.

The server sends a stable code with every error (`invalid_data`, `not_found`, ...):
over REST in `{"error": {"code", ...}}`, over gRPC as the `reason` of a
`google.rpc.ErrorInfo` detail. The client turns that code back into the class of
the same name as on the server, so callers catch `NotFound` or `DataError`
whichever transport they use. When a reply carries no code (a proxy's 502, a
dead server), the HTTP status or gRPC code picks the class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Violation:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SynthError(Exception):
    """Base class: `code` (server error code), `message`, `violations`, `details`, and the transport status."""

    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, violations: list[Violation] | None = None,
                 details: dict[str, Any] | None = None, http_status: int | None = None,
                 grpc_code: str | None = None):
        self.message = message
        if code:
            self.code = code
        self.violations = list(violations or [])
        self.details = dict(details or {})
        self.http_status, self.grpc_code = http_status, grpc_code
        text = message + "".join(f"\n  - {v}" for v in self.violations)
        super().__init__(text)


class SchemaError(SynthError):
    code = "invalid_schema"


class ConfigError(SynthError):
    code = "invalid_config"


class DataError(SynthError):
    code = "invalid_data"


class InvalidArgument(SynthError):
    code = "invalid_argument"


class NotFound(SynthError):
    code = "not_found"


class AlreadyExists(SynthError):
    code = "already_exists"


class FailedPrecondition(SynthError):
    code = "failed_precondition"


class TooLarge(SynthError):
    code = "too_large"


class ArtifactError(SynthError):
    code = "invalid_artifact"


class VersionError(ArtifactError):
    code = "incompatible_version"


class Cancelled(SynthError):
    code = "cancelled"


class InternalError(SynthError):
    """A server-side bug (500 / INTERNAL); `details["error_id"]` is in the server log."""

    code = "internal"


class Unavailable(SynthError):
    """The server could not be reached, or the call timed out."""

    code = "unavailable"


BY_CODE: dict[str, type[SynthError]] = {c.code: c for c in (
    SchemaError, ConfigError, DataError, InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
    TooLarge, ArtifactError, VersionError, Cancelled, InternalError, Unavailable)}
BY_HTTP: dict[int, type[SynthError]] = {400: InvalidArgument, 404: NotFound, 409: FailedPrecondition,
                                        413: TooLarge, 422: DataError, 503: Unavailable, 504: Unavailable}
BY_GRPC: dict[str, type[SynthError]] = {
    "INVALID_ARGUMENT": InvalidArgument, "NOT_FOUND": NotFound, "ALREADY_EXISTS": AlreadyExists,
    "FAILED_PRECONDITION": FailedPrecondition, "RESOURCE_EXHAUSTED": TooLarge, "CANCELLED": Cancelled,
    "UNAVAILABLE": Unavailable, "DEADLINE_EXCEEDED": Unavailable, "INTERNAL": InternalError}


def make_error(code: str | None, message: str, details: dict[str, Any] | None = None,
               http_status: int | None = None, grpc_code: str | None = None,
               violations: list[Violation] | None = None) -> SynthError:
    """The exception for a server reply: by error code, else by transport status."""
    details = dict(details or {})
    raw = details.pop("violations", None) or []
    violations = violations or [Violation(str(v.get("path", "")), str(v.get("message", "")))
                                for v in raw if isinstance(v, dict)]
    cls = BY_CODE.get(code or "") or (BY_HTTP.get(http_status or 0) if http_status else None) \
        or (BY_GRPC.get(grpc_code or "") if grpc_code else None) or InternalError
    return cls(message, code=code or cls.code, violations=violations, details=details,
               http_status=http_status, grpc_code=grpc_code)
