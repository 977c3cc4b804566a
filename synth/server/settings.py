"""Server settings: declared once, read from `synth serve` flags, `SYNTH_*` variables and defaults.

Precedence: a flag beats an environment variable, which beats the default. Every
setting is validated when the server starts, and every problem is reported at
once with its name (`http_port: Input should be less than or equal to 65535`).
This is the only place below the CLI that reads the environment.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from synth.errors import ConfigError, Violation
from synth.server.admission import Admission
from synth.server.auth import AccessPolicy
from synth.service.batcher import BatchConfig
from synth.service.types import Limits

ENV_PREFIX = "SYNTH_"
GPU_SAMPLE_CHUNK = 8192  # the sample_chunk default on CUDA (see `limits`)


class ServerSettings(BaseSettings):
    """What `synth serve` needs; each field is a flag (`--http-port`) and a variable (`SYNTH_HTTP_PORT`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    models: Path = Field(Path("models"), description="directory of trained models (the bundled ones are added)")
    host: str = Field("127.0.0.1", description="interface to bind (0.0.0.0 for all)")
    http_port: int = Field(8000, ge=0, le=65535, description="REST port (0: any free port)")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port (0: any free port)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where models run (auto: cuda if present)")
    # The model thread and micro-batching (synth/service/batcher.py, docs/service.md).
    batch_window_ms: float = Field(BatchConfig.window_ms, ge=0, le=1000,
                                   description="how long a small sample request waits to be merged with others "
                                               "(ms; 0: never merge)")
    batch_max_rows: int = Field(BatchConfig.max_rows, ge=1, le=1024,
                                description="records in one merged model call")
    model_threads: int = Field(BatchConfig.threads, ge=0, le=1024,
                               description="torch intra-op threads of the model thread (0: torch's default, "
                                           "one per core)")
    grpc_workers: int = Field(64, ge=2, le=1024, description="gRPC worker threads (each long stream holds one)")
    # Availability under load (synth/server/admission.py, docs/reliability.md).
    grpc_reserved_workers: int = Field(4, ge=1, le=256, description="gRPC threads kept free of Synthesizer calls, "
                                                                  "for health and reflection")
    max_streams: int = Field(48, ge=1, le=100_000, description="streams (gRPC Sample/WatchJob, REST NDJSON) at "
                                                               "once; more get 429 / RESOURCE_EXHAUSTED")
    max_streams_per_client: int = Field(16, ge=1, le=100_000, description="streams at once per client (its API "
                                                                          "token, else its IP address)")
    request_timeout: float = Field(60.0, gt=0, le=86_400, description="seconds a request may take before "
                                                                     "504 / DEADLINE_EXCEEDED")
    stream_timeout: float = Field(3600.0, gt=0, le=604_800, description="seconds a sample stream may take "
                                                                       "(checked between chunks)")
    shutdown_grace: float = Field(10.0, ge=0, le=3600, description="seconds in-flight requests get to finish "
                                                                  "after SIGTERM")
    # Request limits (synth.service.Limits): a request beyond one gets 413 / RESOURCE_EXHAUSTED.
    max_sample: int = Field(Limits.max_sample, ge=1, description="records in one non-streamed sample")
    max_sample_stream: int = Field(Limits.max_sample_stream, ge=1, description="records in one streamed sample")
    max_records: int = Field(Limits.max_records, ge=1, description="records or latents in one encode/decode")
    max_interpolate_steps: int = Field(Limits.max_interpolate_steps, ge=2, description="points on one path")
    max_train_steps: int = Field(Limits.max_train_steps, ge=1, description="steps of one training job")
    max_upload_bytes: int = Field(Limits.max_upload_bytes, ge=1024, description="request body and job data size")
    sample_chunk: int | None = Field(None, ge=1, le=65536,
                                     description=f"records per generated chunk (and streamed message); default "
                                                 f"{Limits.sample_chunk} on the CPU, {GPU_SAMPLE_CHUNK} on a GPU")
    jobs_kept: int = Field(Limits.jobs_kept, ge=1, description="finished jobs remembered")
    max_string_bytes: int = Field(Limits.max_string_bytes, ge=16, le=1 << 20,
                                  description="longest string value in a record or where (bytes)")
    number_range_sigmas: float = Field(Limits.number_range_sigmas, gt=0,
                                       description="numbers within this many training std devs of the mean")
    max_temperature: float = Field(Limits.max_temperature, gt=0, le=1000, description="highest sampling temperature")
    encode_refine_steps: int | None = Field(None, ge=0, le=10_000,
                                            description="gradient steps encode/interpolate/reconstruct take per "
                                                        "record (default: each model's own, 50 for the bundled "
                                                        "one, about 0.5 s a record; 0: the encoder alone, fastest)")
    max_refined_records: int = Field(Limits.max_refined_records, ge=1,
                                     description="records of one encode/reconstruct request when it refines "
                                                 "(encode_refine_steps > 0); up to max_records without")
    max_schema_fields: int = Field(Limits.max_schema_fields, ge=1, le=100_000,
                                   description="fields in an uploaded schema (all message types it reaches)")
    max_schema_depth: int = Field(Limits.max_schema_depth, ge=1, le=200,
                                  description="nesting of message types in an uploaded schema")
    # Training jobs (docs/service.md "Jobs"): maxima of an upload's run.toml (400 above them), the
    # queue (429 when full) and the worker process that trains each job.
    max_job_batch_size: int = Field(Limits.max_job_batch_size, ge=1,
                                    description="largest train.batch_size (and augment.n_augmented) of a job")
    max_job_latent_dim: int = Field(Limits.max_job_latent_dim, ge=1,
                                    description="largest model.latent_dim (and char_dim) of a job")
    max_job_string_len: int = Field(Limits.max_job_string_len, ge=1, description="largest model.max_string_len")
    max_job_sequence_len: int = Field(Limits.max_job_sequence_len, ge=1,
                                      description="largest model.max_sequence_len")
    max_job_levels: int = Field(Limits.max_job_levels, ge=1,
                                description="largest model.n_levels, std_layers and max_recursion")
    max_job_prior_components: int = Field(Limits.max_job_prior_components, ge=0,
                                          description="largest model.latent_prior_components (and tune candidate)")
    max_job_eval_records: int = Field(Limits.max_job_eval_records, ge=1,
                                      description="largest train.eval_records, validation_max_records, tune.samples")
    max_queued_jobs: int = Field(Limits.max_queued_jobs, ge=1, description="jobs waiting to run, all clients")
    max_queued_jobs_per_client: int = Field(Limits.max_queued_jobs_per_client, ge=1,
                                            description="jobs waiting to run per API token (anonymous: one client)")
    job_workers: int = Field(Limits.job_workers, ge=1, le=64, description="jobs trained at once (one process each)")
    job_threads: int = Field(Limits.job_threads, ge=1, le=256, description="torch threads of a training process")
    job_memory_mb: int = Field(Limits.job_memory_mb, ge=0,
                               description="address-space limit of a training process in MB (0: none)")
    job_timeout_s: float = Field(Limits.job_timeout_s, ge=0, description="wall time of one job in seconds (0: none)")
    # Access control and TLS (docs/service.md): no token and no TLS unless given.
    token_file: Path | None = Field(None, description="file of API tokens, one per line; admin:<token> marks an "
                                                      "admin token (may cancel any job)")
    token: SecretStr | None = Field(None, description="one API token (prefer the variable or --token-file: a flag "
                                                      "shows in the process list)")
    public_read: bool = Field(False, description="with tokens: reads (models, sample, encode, ..., GET jobs) need "
                                                 "none; creating and cancelling jobs still do")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: serve HTTPS and gRPC over TLS "
                                                    "(with --tls-key)")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")

    def admission(self) -> Admission:
        """Stream bounds and deadlines, shared by the REST app and the gRPC server."""
        return Admission(self.max_streams, self.max_streams_per_client, self.request_timeout, self.stream_timeout)

    def batching(self) -> BatchConfig:
        return BatchConfig(self.batch_window_ms, self.batch_max_rows, self.model_threads)

    def limits(self) -> Limits:
        values = {name: getattr(self, name) for name in Limits.__dataclass_fields__}
        if values["sample_chunk"] is None:
            # A GPU's model call costs about the same for 1,024 rows as for 8,192 (per-step
            # launches dominate), so streams there take bigger chunks: 9,311 against 130k+
            # records/s on an H200 (docs/benchmarks.md, "Performance on a GPU")
            cuda = self.resolved_device().startswith("cuda")
            values["sample_chunk"] = GPU_SAMPLE_CHUNK if cuda else Limits.sample_chunk
        return Limits(**values)

    def access_policy(self) -> AccessPolicy:
        """The API tokens (ConfigError when the token file is unreadable or a token is malformed)."""
        token = self.token.get_secret_value() if self.token is not None else None
        return AccessPolicy.from_sources(self.token_file, token, self.public_read)

    def tls(self) -> tuple[Path, Path] | None:
        """(certificate, key) when TLS is on."""
        return (self.tls_cert, self.tls_key) if self.tls_cert is not None and self.tls_key is not None else None

    def check(self) -> None:
        """Checks across settings and files, all reported at once (ConfigError)."""
        problems = []
        if self.grpc_reserved_workers >= self.grpc_workers:
            problems.append(Violation("grpc_reserved_workers", f"must be below grpc_workers ({self.grpc_workers}): "
                                                               "the others serve requests"))
        elif self.max_streams >= self.grpc_workers - self.grpc_reserved_workers:
            problems.append(Violation("max_streams", f"must be below grpc_workers - grpc_reserved_workers "
                                                     f"({self.grpc_workers - self.grpc_reserved_workers}), so that "
                                                     "unary calls keep workers while every stream runs"))
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            problems.append(Violation(missing, "--tls-cert and --tls-key go together: give both or neither"))
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(Violation(name, f"no such file: {path}"))
        try:
            self.access_policy()
        except ConfigError as e:
            problems += e.violations
        if problems:
            raise ConfigError("invalid server settings (flags or SYNTH_* variables)", problems)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def load_settings(**overrides: Any) -> ServerSettings:
    """Settings from `overrides` (flags; None means not given), then `SYNTH_*` variables, then defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = ServerSettings(**given)
    except ValidationError as e:
        violations = [Violation(".".join(str(p) for p in err["loc"]) or "settings", err["msg"])
                      for err in e.errors()]
        raise ConfigError("invalid server settings (flags or SYNTH_* variables)", violations) from None
    settings.check()
    return settings


def setting_flags() -> list[tuple[str, str, Any, str]]:
    """(field, --flag, type, help) for every setting: how `synth serve` builds its flags."""
    out = []
    for name, info in ServerSettings.model_fields.items():
        kind = info.annotation if info.annotation in (int, float, str, bool) else str  # bool: a switch
        env = f"{ENV_PREFIX}{name.upper()}"
        out.append((name, "--" + name.replace("_", "-"), kind,
                    f"{info.description} (env {env}; default {info.default})"))
    return out
