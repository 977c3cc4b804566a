"""The error vocabulary of protosynth, and its one mapping to HTTP and gRPC (docs/architecture.md).

The library raises these classes; the servers send each one's stable `code`
(`invalid_data`, `not_found`, ...) with the HTTP status and gRPC code of `WIRE`;
the clients read the code back and raise the same class. Server and client import
this one module, so the two ends cannot drift apart. Classify by type (or code),
never by message text.

Torch-free, grpc-free and web-free: gRPC codes are named by their enum names
(`"INVALID_ARGUMENT"`), which the gRPC adapter turns into `grpc.StatusCode`.

| error              | code                 | HTTP | gRPC                | why                                   |
|--------------------|----------------------|------|---------------------|---------------------------------------|
| SchemaError        | invalid_schema       | 422  | INVALID_ARGUMENT    | the upload is well-formed but unusable |
| ConfigError        | invalid_config       | 422  | INVALID_ARGUMENT    | "                                     |
| DataError          | invalid_data         | 422  | INVALID_ARGUMENT    | a record does not fit the schema      |
| InvalidArgument    | invalid_argument     | 400  | INVALID_ARGUMENT    | a bad request parameter               |
| NotFound           | not_found            | 404  | NOT_FOUND           | unknown model or job                  |
| AlreadyExists      | already_exists       | 409  | ALREADY_EXISTS      | model or job name taken               |
| FailedPrecondition | failed_precondition  | 409  | FAILED_PRECONDITION | wrong state (job already finished)    |
| TooLarge           | too_large            | 413  | RESOURCE_EXHAUSTED  | over a server limit                   |
| ResourceExhausted  | resource_exhausted   | 429  | RESOURCE_EXHAUSTED  | a quota is used up: retry later       |
| InsufficientStorage | insufficient_storage | 507 | RESOURCE_EXHAUSTED  | the server's disk is full: retry later |
| Cancelled          | cancelled            | 409  | CANCELLED           | the operation was cancelled           |
| Unauthenticated    | unauthenticated      | 401  | UNAUTHENTICATED     | no API token, or an unknown one       |
| PermissionDenied   | permission_denied    | 403  | PERMISSION_DENIED   | a valid token that may not do this    |
| ArtifactError      | invalid_artifact     | 500  | INTERNAL            | a model on the server is broken: the  |
| VersionError       | incompatible_version | 500  | INTERNAL            | operator must fix it, not the client  |
| InternalError      | internal             | 500  | INTERNAL            | a bug; generic message, logged        |
| Unavailable        | unavailable          | 503  | UNAVAILABLE         | no server, or it timed out            |
| DeadlineExceeded   | deadline_exceeded    | 504  | DEADLINE_EXCEEDED   | the server's deadline for the request passed |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Violation:
    """One problem, located: `path` is a field path (`address.postcode`) or a file:line."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SynthError(Exception):
    """Base class: a stable `code`, a `message`, located `violations` and free-form `details`.

    Library code passes details as keywords (`DataError(msg, violations, file=...)`);
    a client rebuilding an error from a reply passes `code`, `details` and the
    transport status it saw (`http_status`, `grpc_code`).
    """

    code = "internal"

    def __init__(self, message: str, violations: list[Violation] | None = None, *, code: str | None = None,
                 details: dict[str, Any] | None = None, http_status: int | None = None,
                 grpc_code: str | None = None, **more_details: Any):
        self.message = message
        if code:
            self.code = code
        self.violations = list(violations or [])
        self.details = {**(details or {}), **more_details}
        self.http_status, self.grpc_code = http_status, grpc_code
        super().__init__(self._render())

    def _render(self) -> str:
        return self.message + "".join(f"\n  - {v}" for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        """The wire body (REST `{"error": ...}`; gRPC ErrorInfo and BadRequest carry the same)."""
        return {
            "code": self.code,
            "message": self.message,
            "details": {
                **self.details,
                "violations": [{"path": v.path, "message": v.message} for v in self.violations],
            },
        }


class SchemaError(SynthError):
    """A .proto that does not compile, a missing message, an unsupported construct."""

    code = "invalid_schema"


class ConfigError(SynthError):
    """A model, training or server setting that is inconsistent, of the wrong type, or unknown."""

    code = "invalid_config"


class DataError(SynthError):
    """A record or data file that does not fit the schema (carries file:line or field path)."""

    code = "invalid_data"


class InvalidArgument(SynthError):
    """A request argument that is well-formed but wrong (latent size, `where` field, n)."""

    code = "invalid_argument"


class NotFound(SynthError):
    code = "not_found"


class AlreadyExists(SynthError):
    code = "already_exists"


class FailedPrecondition(SynthError):
    """The object is in the wrong state for the request (job already finished, ...)."""

    code = "failed_precondition"


class TooLarge(SynthError):
    code = "too_large"


class ResourceExhausted(SynthError):
    """A quota is used up for now (the job queue is full): the same request may succeed later."""

    code = "resource_exhausted"


class InsufficientStorage(SynthError):
    """The server's disk is full (or its quota used up): the same request may succeed once space is freed."""

    code = "insufficient_storage"


class ArtifactError(SynthError):
    """A model artifact that is corrupt, incomplete or not ours."""

    code = "invalid_artifact"


class VersionError(ArtifactError):
    """An artifact written by an incompatible version of protosynth."""

    code = "incompatible_version"


class Cancelled(SynthError):
    code = "cancelled"


class Unauthenticated(SynthError):
    """The server requires an API token and the request had none, or an unknown one."""

    code = "unauthenticated"


class PermissionDenied(SynthError):
    """The token is valid but may not do this (cancel another token's job)."""

    code = "permission_denied"


class InternalError(SynthError):
    """A server-side bug (500 / INTERNAL); `details["error_id"]` is in the server log."""

    code = "internal"


class Unavailable(SynthError):
    """The server could not be reached, or the call timed out."""

    code = "unavailable"


class DeadlineExceeded(SynthError):
    """The server's own deadline for the request passed (`synth serve --request-timeout`)."""

    code = "deadline_exceeded"


class Wire(NamedTuple):
    http: int
    grpc: str  # a grpc.StatusCode name


# The one table. Lookup walks the MRO, so a subclass inherits its parent's row.
WIRE: dict[type[SynthError], Wire] = {
    SchemaError: Wire(422, "INVALID_ARGUMENT"),
    ConfigError: Wire(422, "INVALID_ARGUMENT"),
    DataError: Wire(422, "INVALID_ARGUMENT"),
    InvalidArgument: Wire(400, "INVALID_ARGUMENT"),
    NotFound: Wire(404, "NOT_FOUND"),
    AlreadyExists: Wire(409, "ALREADY_EXISTS"),
    FailedPrecondition: Wire(409, "FAILED_PRECONDITION"),
    TooLarge: Wire(413, "RESOURCE_EXHAUSTED"),
    ResourceExhausted: Wire(429, "RESOURCE_EXHAUSTED"),
    InsufficientStorage: Wire(507, "RESOURCE_EXHAUSTED"),
    Cancelled: Wire(409, "CANCELLED"),
    Unauthenticated: Wire(401, "UNAUTHENTICATED"),
    PermissionDenied: Wire(403, "PERMISSION_DENIED"),
    ArtifactError: Wire(500, "INTERNAL"),
    Unavailable: Wire(503, "UNAVAILABLE"),
    DeadlineExceeded: Wire(504, "DEADLINE_EXCEEDED"),
    SynthError: Wire(500, "INTERNAL"),
}
INTERNAL = WIRE[SynthError]

ERROR_CLASSES: tuple[type[SynthError], ...] = (
    SchemaError, ConfigError, DataError, InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
    TooLarge, ResourceExhausted, InsufficientStorage, ArtifactError, VersionError, Cancelled, Unauthenticated, PermissionDenied, InternalError, Unavailable,
    DeadlineExceeded)
BY_CODE: dict[str, type[SynthError]] = {c.code: c for c in ERROR_CLASSES}


def wire_for(exc_type: type[BaseException]) -> Wire:
    """HTTP status and gRPC code for an exception class; anything not ours is INTERNAL."""
    for klass in exc_type.__mro__:
        if klass in WIRE:
            return WIRE[klass]
    return INTERNAL


def _reverse(key: str) -> dict[Any, type[SynthError]]:
    """Status -> class, for replies that carry no code (a proxy's 502, a dead server)."""
    out: dict[Any, type[SynthError]] = {}
    for cls, wire in WIRE.items():
        out.setdefault(getattr(wire, key), cls if cls is not SynthError else InternalError)
    return out


# Where several classes share a status, the most general reading wins.
_BY_HTTP = {**_reverse("http"), 409: FailedPrecondition, 422: DataError, 500: InternalError, 502: Unavailable,
            504: Unavailable}
_BY_GRPC = {**_reverse("grpc"), "INTERNAL": InternalError, "DEADLINE_EXCEEDED": Unavailable}


def error_from_wire(code: str | None, message: str, details: dict[str, Any] | None = None, *,
                    http_status: int | None = None, grpc_code: str | None = None,
                    violations: list[Violation] | None = None) -> SynthError:
    """The exception for a server reply: by error code, else by transport status."""
    details = dict(details or {})
    raw = details.pop("violations", None) or []
    violations = violations or [Violation(str(v.get("path", "")), str(v.get("message", "")))
                                for v in raw if isinstance(v, dict)]
    cls = BY_CODE.get(code or "") or _BY_HTTP.get(http_status or 0) or _BY_GRPC.get(grpc_code or "") \
        or InternalError
    return cls(message, violations, code=code or cls.code, details=details,
               http_status=http_status, grpc_code=grpc_code)
