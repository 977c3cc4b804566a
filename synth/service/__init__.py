"""The one service layer behind both transports (docs/architecture.md, docs/service.md).

Like KServe's `DataPlane`, everything the REST app and the gRPC servicer do lives
here once: finding and loading models, checking request limits, sampling in
chunks, training jobs. The adapters in `synth.server` only convert their wire format to
these plain arguments and dataclasses, call, and convert back, so the two
transports cannot drift apart. Errors are `synth.errors` classes (the contract's); `synth_contract.errors.WIRE`
maps them to HTTP and gRPC codes in one table.

This package uses torch (through `Model`) but no web framework: nothing here
imports FastAPI or grpc. All methods block; async callers run them in a threadpool.

One concept per module: `types` (the dataclasses), `registry` (models by name),
`jobs` (training jobs; with `job_checks`, `job_store` and `worker`, the process that trains
one), `core` (`SynthService`). Import from `synth.service`.
"""
from synth.records import to_dict  # records -> JSON dicts, for the adapters
from synth.service.core import MAX_SEED, SynthService
from synth.service.jobs import PROGRESS_FIELDS, PROGRESS_KEYS, JobManager
from synth.service.registry import LAT_NAMES, LON_NAMES, ModelRegistry, field_infos, geo_fields
from synth.service.types import (JOB_STATES, NAME_RE, TERMINAL, Caller, Field, FieldInfo, GeoFields, Interpolation, Job,
                                 JobError, JobRequest, JobStatus, Latent, Limits, ModelDetail, ModelInfo, check_name)

__all__ = [
    "JOB_STATES", "LAT_NAMES", "LON_NAMES", "MAX_SEED", "NAME_RE", "PROGRESS_FIELDS", "PROGRESS_KEYS", "TERMINAL",
    "Caller", "Field", "FieldInfo", "GeoFields", "Interpolation", "Job", "JobError", "JobManager", "JobRequest", "JobStatus", "Latent", "Limits",
    "ModelDetail", "ModelInfo", "ModelRegistry", "SynthService", "check_name", "field_infos", "geo_fields", "to_dict",
]
