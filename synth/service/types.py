"""The plain values the service takes and returns, shared by its parts and both transports.

`SynthService`, `ModelRegistry` and `JobManager` take and return these frozen
dataclasses (and `Limits`), never wire types; the adapters in `synth.server` convert
JSON or protobuf to and from them. Kept apart so that the adapters, the registry
and the jobs can share them without importing one another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from synth.errors import InvalidArgument, Violation
from synth_contract.results import (JOB_STATES, TERMINAL, Field, GeoFields, Interpolation, Job, JobError, Latent,
                                    ModelDetail, ModelInfo)

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
    # records generated per chunk (and per streamed message); the CPU's best model call size
    # (synth.model.CHUNK): 512 streamed 8% slower (docs/benchmarks.md, Performance)
    sample_chunk: int = 1024
    jobs_kept: int = 200  # finished jobs remembered for GET /v1/jobs/{id}
    # Bounded work per request (synth.service.bounds): checked before any model work.
    max_string_bytes: int = 4096  # a string value in a record or `where`, whatever the field
    number_range_sigmas: float = 50.0  # numbers within this many training std devs of the mean
    max_temperature: float = 10.0
    # Gradient steps of encode / interpolate / reconstruct on each record (docs/model.md,
    # "Encoding"); None: each model's own `encode_refine_steps`; 0: the encoder network alone
    encode_refine_steps: int | None = None
    # Records of one encode / reconstruct request that refines (steps > 0): refinement runs
    # at about 120-180 records/s on 2 cores, so the 10,000 of `max_records` would hold the
    # model thread, and every request behind it, past the 60 s request timeout.
    max_refined_records: int = 1_000
    # Uploaded schemas (training jobs): checked before protobuf builds any class.
    max_schema_fields: int = 2_000  # fields of all message types the record message reaches
    max_schema_depth: int = 32  # longest chain of distinct nested message types
    # Training jobs (synth.service.jobs, docs/service.md "Jobs"): settings of an upload past these
    # maxima are refused at submit time (synth.service.job_checks), before any data is parsed.
    max_job_batch_size: int = 4096  # train.batch_size, train.augment.n_augmented
    max_job_latent_dim: int = 1024  # model.latent_dim, model.char_dim
    max_job_string_len: int = 4096  # model.max_string_len (bytes)
    max_job_sequence_len: int = 1024  # model.max_sequence_len
    max_job_levels: int = 16  # model.n_levels, model.std_layers, model.max_recursion
    max_job_prior_components: int = 4096  # model.latent_prior_components, train.tune.prior_candidates
    max_job_eval_records: int = 100_000  # train.eval_records, validation_max_records, tune.samples
    # The job queue and the training worker process.
    max_queued_jobs: int = 32  # queued (not yet running) jobs, all callers together
    max_queued_jobs_per_client: int = 4  # queued jobs of one API token (anonymous callers share one)
    job_workers: int = 1  # jobs trained at the same time, each in its own process
    job_threads: int = 1  # torch threads of a training process
    job_memory_mb: int = 4096  # address-space limit of a training process (0: none)
    job_timeout_s: float = 6 * 3600.0  # wall time of one job, queue excluded (0: none)


# ----------------------------------------------------------------------------- results
# The result types are the wire contract's (one declaration for server and client).

FieldInfo = Field  # the name the service used before the contract package
JobStatus = Job


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


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the server's access control established it (docs/service.md).

    `id` is a stable, non-secret identity (a hash of the API token, never the token);
    an admin may cancel any job. The service takes `caller=None` to mean a trusted
    caller on a server without tokens: nothing is checked.
    """

    id: str
    admin: bool = False


# ----------------------------------------------------------------------------- names

def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(
            f"invalid {what} {name!r}",
            [Violation("name", "use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")])
    return name
