"""The values the service returns, and their JSON form: one declaration for server and client.

Plain frozen dataclasses (no protobuf, no torch). The service layer returns them,
the REST adapter writes them with `to_json`, the REST client reads them back with
the `*_from_json` functions, and `synth_contract.grpc_wire` converts them to and
from the `synth.v1` messages for the gRPC adapter and client.
"""
from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]  # a record in the proto3 JSON mapping, with .proto field names
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Field:
    name: str
    path: str  # dotted path from the root message, as used by `where`
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
    fields: list[Field]
    latent_dim: int
    source: str  # "local" (models directory) or "bundled"
    geo: GeoFields | None = None


@dataclass(frozen=True)
class ModelDetail(ModelInfo):
    proto: str = ""  # readable .proto source
    file_descriptor_set: bytes = b""
    model_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.message, self.fields, self.latent_dim, self.source, self.geo)

    def message_class(self) -> Any:
        """The record message class, built from the FileDescriptorSet (needs `protobuf`)."""
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        for f in descriptor_pb2.FileDescriptorSet.FromString(self.file_descriptor_set).file:
            pool.Add(f)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(self.message))


@dataclass(frozen=True)
class Latent:
    mean: list[float]
    std: list[float]


@dataclass(frozen=True)
class Interpolation:
    records: list[Any]
    latents: list[list[float]]


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A snapshot of a training job; `losses` are the latest (final when finished)."""

    id: str
    name: str  # the model name the job registers
    state: str  # one of JOB_STATES
    step: int = 0
    steps: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    progress: dict[str, float] = field(default_factory=dict)
    error: JobError | None = None
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"


# ----------------------------------------------------------------------------- JSON

def to_json(value: Any) -> Any:
    """A result as JSON: dataclasses as objects, bytes as base64 text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def model_info_from_json(d: dict[str, Any]) -> ModelInfo:
    return ModelInfo(**_info_fields(d))


def model_detail_from_json(d: dict[str, Any]) -> ModelDetail:
    return ModelDetail(**_info_fields(d), proto=d.get("proto", ""),
                       file_descriptor_set=base64.b64decode(d.get("file_descriptor_set") or ""),
                       model_config=d.get("model_config") or {}, train_config=d.get("train_config") or {},
                       summary=d.get("summary") or {}, metrics=d.get("metrics") or {})


def _info_fields(d: dict[str, Any]) -> dict[str, Any]:
    geo = d.get("geo")
    return {"name": d["name"], "message": d["message"], "latent_dim": int(d["latent_dim"]),
            "source": d.get("source", ""), "fields": [Field(**f) for f in d.get("fields", [])],
            "geo": GeoFields(**geo) if geo else None}


def job_from_json(d: dict[str, Any]) -> Job:
    err = d.get("error")
    return Job(id=d["id"], name=d["name"], state=d["state"], step=int(d.get("step", 0)),
               steps=int(d.get("steps", 0)), losses=dict(d.get("losses") or {}),
               progress=dict(d.get("progress") or {}),
               error=JobError(err.get("code", ""), err.get("message", ""), dict(err.get("details") or {}))
               if err else None,
               cancel_requested=bool(d.get("cancel_requested", False)), created_at=float(d.get("created_at", 0.0)),
               started_at=d.get("started_at"), finished_at=d.get("finished_at"))
