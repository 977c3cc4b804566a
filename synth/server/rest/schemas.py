"""Request and response bodies of the REST API (separate models, as in full-stack-fastapi-template).

Records are plain JSON objects in the proto3 JSON mapping with .proto field names;
they are typed `dict[str, Any]` here and checked against the model's schema by the
service, so a record that does not fit gets the same DataError (422) on both
transports instead of a FastAPI validation message.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from synth.service import Field as Field_
from synth.service import NAME_RE, GeoFields, ModelInfo

Record = dict[str, Any]
# A model name in a path: the service's NAME_RE, in the OpenAPI too (the service also refuses "..",
# which a regex without look-ahead, as pydantic's is, cannot say).
NAME_PATTERN = NAME_RE.pattern
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="a served model's name")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ----------------------------------------------------------------------------- errors

class ErrorInfo(BaseModel):
    code: str = Field(description="protosynth error code, e.g. invalid_data, not_found")
    message: str
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="`violations`: [{path, message}], plus error-specific keys")


class ErrorResponse(BaseModel):
    error: ErrorInfo


# ----------------------------------------------------------------------------- models

class ModelList(BaseModel):
    models: list[ModelInfo]  # the contract's type


class ModelDetailOut(BaseModel):
    """The contract's ModelDetail as JSON (`synth_contract.results.to_json`): bytes travel as base64."""

    name: str
    message: str
    fields: list[Field_]
    latent_dim: int
    source: str = Field(description="local (models directory) or bundled")
    geo: GeoFields | None = Field(None, description="lat/lon field paths when the schema has them")
    proto: str = Field(description=".proto source of the schema")
    file_descriptor_set: str = Field(description="base64 FileDescriptorSet that builds the message class")
    model_config_: dict[str, Any] = Field(alias="model_config")
    train_config: dict[str, Any]
    summary: dict[str, Any]
    metrics: dict[str, Any]

    model_config = ConfigDict(populate_by_name=True)


# ----------------------------------------------------------------------------- inference

class SampleIn(_Strict):
    n: int = Field(10, ge=0, description="number of records")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same records")
    temperature: float | None = Field(None, gt=0)
    greedy: bool = False
    where: dict[str, Any] | None = Field(None, description='field path -> value, e.g. {"postcode": "05401"}')


class RecordsIn(_Strict):
    records: list[Any]


class RecordsOut(BaseModel):
    records: list[Record]


class LatentOut(BaseModel):
    mean: list[float]
    std: list[float]


class EncodeOut(BaseModel):
    latents: list[LatentOut]


class DecodeIn(_Strict):
    latents: list[list[float]]
    temperature: float | None = Field(None, gt=0)
    greedy: bool = False
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class InterpolateIn(_Strict):
    from_: Any = Field(alias="from", description="start record")
    to: Any = Field(description="end record")
    steps: int = Field(8, description="records on the path, ends included (>= 2)")
    method: str = Field("linear", description="linear | slerp")


class InterpolateOut(BaseModel):
    records: list[Record]
    latents: list[list[float]]


class MapIn(_Strict):
    """Points to draw: given records, or `n` fresh samples when `records` is omitted."""

    records: list[Any] | None = None
    path: list[Any] = Field(default_factory=list, description="records drawn as a connected path")
    n: int = Field(200, ge=0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    temperature: float | None = Field(None, gt=0)
    where: dict[str, Any] | None = None
    width: int = Field(720, ge=100, le=4000)
    height: int = Field(540, ge=100, le=4000)


# ----------------------------------------------------------------------------- jobs

class Health(BaseModel):
    status: str
    models: int = Field(description="models that can be served")
    broken: list[str] = Field(default_factory=list, description="models whose artifact is broken")
