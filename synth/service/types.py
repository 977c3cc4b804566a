"""The plain values the service takes and returns, shared by its parts and both transports.

`SynthService`, `ModelRegistry` and `JobManager` take and return these frozen
dataclasses (and `Limits`), never wire types; the adapters in `server/` convert
JSON or protobuf to and from them. Kept apart so that the adapters, the registry
and the jobs can share them without importing one another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from synth.errors import InvalidArgument, Violation

# A model name is one path segment: no separators, no leading dot, so no traversal.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# ----------------------------------------------------------------------------- limits

@dataclass(frozen=True)
class Limits:
    """Request size limits; a request beyond one raises TooLarge (HTTP 413, RESOURCE_EXHAUSTED).

    They keep one request from holding a worker (or the memory of the response) for
    minutes; streaming sample has its own, higher cap because it never holds more
    than one chunk in memory.
    """

    max_sample: int = 10_000  # records in one non-streamed sample response
    max_sample_stream: int = 1_000_000  # records in one streamed sample
    max_records: int = 10_000  # records or latents in one encode/decode/reconstruct request
    max_interpolate_steps: int = 1_000
    max_train_steps: int = 100_000
    max_upload_bytes: int = 64 << 20  # request bodies, and a job's data file
    sample_chunk: int = 512  # records generated per chunk (and per streamed message)
    jobs_kept: int = 200  # finished jobs remembered for GET /v1/jobs/{id}


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class FieldInfo:
    name: str
    path: str
    type: str
    repeated: bool


@dataclass(frozen=True)
class GeoFields:
    """Paths of a latitude/longitude pair, for the map views."""

    lat: str
    lon: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    message: str
    fields: list[FieldInfo]
    latent_dim: int
    source: str  # "local" (models directory) or "bundled"
    geo: GeoFields | None = None


@dataclass(frozen=True)
class ModelDetail:
    info: ModelInfo
    proto: str  # readable .proto source
    file_descriptor_set: bytes
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Latent:
    mean: list[float]
    std: list[float]


@dataclass(frozen=True)
class Interpolation:
    records: list[Message]
    latents: list[list[float]]


@dataclass(frozen=True)
class JobRequest:
    """What a client uploads to train a model: schema text, data file, optional run.toml."""

    proto: str
    message: str
    data: bytes
    data_filename: str
    config: str | None = None
    name: str | None = None
    proto_filename: str = "schema.proto"


JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job; `losses` are the latest (final when finished)."""

    id: str
    name: str
    state: str
    step: int = 0
    steps: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    progress: dict[str, float] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


# ----------------------------------------------------------------------------- names

def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(
            f"invalid {what} {name!r}",
            [Violation("name", "use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")])
    return name
