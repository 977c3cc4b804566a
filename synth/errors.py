"""One error vocabulary for the whole project (STYLE.md a.7).

Torch-free and web-free: the server maps these classes to HTTP and gRPC codes in
one table, and the clients raise them again on their side. Classify by type,
never by message text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Violation:
    """One problem, located: `path` is a field path (`address.postcode`) or a file:line."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SynthError(Exception):
    """Base class. `code` is a stable machine-readable name used by both transports."""

    code = "internal"

    def __init__(self, message: str, violations: list[Violation] | None = None, **details: Any):
        self.message = message
        self.violations = list(violations or [])
        self.details = details
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.violations:
            return self.message
        lines = "\n".join(f"  - {v}" for v in self.violations)
        return f"{self.message}\n{lines}"

    def to_dict(self) -> dict[str, Any]:
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
    """A model or training config that is inconsistent or names unknown fields."""

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


class ArtifactError(SynthError):
    """A model artifact that is corrupt, incomplete or not ours."""

    code = "invalid_artifact"


class VersionError(ArtifactError):
    """An artifact written by an incompatible version of protosynth."""

    code = "incompatible_version"


class Cancelled(SynthError):
    code = "cancelled"
