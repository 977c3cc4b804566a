"""Typed results shared by both transports (plain dataclasses, no protobuf or torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Field:
    name: str
    path: str
    type: str
    repeated: bool


@dataclass(frozen=True)
class GeoFields:
    lat: str
    lon: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    message: str
    fields: list[Field]
    latent_dim: int
    source: str
    geo: GeoFields | None


@dataclass(frozen=True)
class ModelDetail(ModelInfo):
    proto: str
    file_descriptor_set: bytes
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, Any]

    def message_class(self) -> Any:
        """The record message class, built from the FileDescriptorSet (needs `protobuf`).

        Use it with the gRPC client's `binary=True` to get typed messages.
        """
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


@dataclass(frozen=True)
class Job:
    id: str
    name: str  # the model name the job registers
    state: str  # queued | running | succeeded | failed | cancelled
    step: int
    steps: int
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
