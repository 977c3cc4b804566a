"""The one service layer behind both transports (DESIGN.md section 6; STYLE.md b, server/).

Like KServe's `DataPlane`, everything the REST app and the gRPC servicer do lives
here once: finding and loading models, checking request limits, sampling in
chunks, training jobs. The adapters in `server/` only convert their wire format to
these plain arguments and dataclasses, call, and convert back, so the two
transports cannot drift apart. Errors are `synth.errors` classes; `server/errors.py`
maps them to HTTP and gRPC codes in one table.

This module uses torch (through `Model`) but no web framework: nothing here
imports FastAPI or grpc. All methods block; async callers run them in a threadpool.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import math
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError, Message

from synth import store
from synth.compiler import ModelConfig
from synth.configs import from_dict, to_dict
from synth.errors import (AlreadyExists, ArtifactError, ConfigError, DataError, FailedPrecondition, InvalidArgument,
                          NotFound, SchemaError, SynthError, TooLarge, Violation)
from synth.model import Model
from synth.records import to_message
from synth.schema.loader import LoadedSchema, compile_proto_text, from_file_set
from synth.schema.tree import MessageNode, build_tree

log = logging.getLogger(__name__)

# A model name is one path segment: no separators, no leading dot, so no traversal.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
LAT_NAMES = {"lat", "latitude"}
LON_NAMES = {"lon", "lng", "long", "longitude"}
MAX_SEED = 2**63 - 1
# A trainer progress row: these fields are `progress`; all but the bookkeeping ones are `losses`.
PROGRESS_FIELDS = ("step", "steps", "loss", "kl", "beta", "records_per_s", "eta_s")
PROGRESS_KEYS = {"step", "steps", "beta", "records_per_s", "eta_s"}


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


# ----------------------------------------------------------------------------- schema helpers

def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidArgument(
            f"invalid {what} {name!r}",
            [Violation("name", "use 1-100 letters, digits, '_', '-' or '.', starting with a letter or digit")])
    return name


def field_infos(tree: MessageNode, limit: int = 1000) -> list[FieldInfo]:
    """Every field path of the (recursion-unrolled) tree, capped for huge schemas."""
    out: list[FieldInfo] = []
    for f in tree.walk():
        out.append(FieldInfo(f.name, f.path, f.type, f.repeated))
        if len(out) >= limit:
            break
    return out


def geo_fields(fields: Sequence[FieldInfo]) -> GeoFields | None:
    """The first lat/lon pair of floating-point fields with the same parent, if any."""
    by_parent: dict[str, dict[str, str]] = {}
    for f in fields:
        if f.repeated or f.type not in ("double", "float"):
            continue
        parent = f.path.rpartition(".")[0]
        kind = "lat" if f.name.lower() in LAT_NAMES else "lon" if f.name.lower() in LON_NAMES else None
        if kind:
            by_parent.setdefault(parent, {}).setdefault(kind, f.path)
    for pair in by_parent.values():
        if "lat" in pair and "lon" in pair:
            return GeoFields(pair["lat"], pair["lon"])
    return None


# ----------------------------------------------------------------------------- registry

@dataclass
class _Entry:
    path: Path
    mtime: float
    source: str
    manifest: dict[str, Any]
    schema: LoadedSchema
    info: ModelInfo
    model: Model | None = None


class ModelRegistry:
    """Models by name: the models directory first, then the bundled models.

    Names are single path segments (checked by `check_name`), so a request can
    never reach outside the models directory. Manifests are read on demand and
    weights loaded lazily, both cached and keyed by the manifest's mtime, so a
    model retrained under the same name is picked up without a restart. At most
    `cache_size` loaded models are kept (least recently used evicted).
    """

    def __init__(self, models_dir: str | Path | None = "models", include_bundled: bool = True,
                 device: str = "cpu", cache_size: int = 8):
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.include_bundled = include_bundled
        self.device = device
        self.cache_size = cache_size
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}

    # -- lookup -----------------------------------------------------------------------
    def _bundled(self) -> dict[str, Path]:
        return store.bundled_models() if self.include_bundled else {}

    def _locate(self, name: str) -> tuple[Path, str] | None:
        if self.models_dir is not None:
            local = self.models_dir / name
            if (local / store.MANIFEST).is_file():
                return local, "local"
        bundled = self._bundled().get(name)
        return (bundled, "bundled") if bundled is not None else None

    def names(self) -> list[str]:
        names: set[str] = set(self._bundled())
        if self.models_dir is not None and self.models_dir.is_dir():
            names |= {p.name for p in self.models_dir.iterdir()
                      if NAME_RE.match(p.name) and (p / store.MANIFEST).is_file()}
        return sorted(names)

    def exists(self, name: str) -> bool:
        return self._locate(check_name(name)) is not None

    def _entry(self, name: str) -> _Entry:
        check_name(name)
        found = self._locate(name)
        if found is None:
            raise NotFound(f"no model named {name!r}", [Violation("name", "unknown model")],
                           available=self.names())
        path, source = found
        mtime = (path / store.MANIFEST).stat().st_mtime
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.path == path and entry.mtime == mtime:
                self._entries.move_to_end(name)
                return entry
        manifest = store.read_manifest(path)
        try:
            schema = from_file_set(base64.b64decode(manifest["file_descriptor_set"]), manifest["message"])
            config = from_dict(ModelConfig, manifest.get("model_config") or {})
            fields = field_infos(build_tree(schema.descriptor, config.schema_options()))
        except (KeyError, TypeError, ValueError, SchemaError, ConfigError) as e:
            raise ArtifactError(f"model {name!r}: manifest is incomplete or invalid ({e})") from e
        info = ModelInfo(name, schema.message_name, fields, config.latent_dim, source, geo_fields(fields))
        entry = _Entry(path, mtime, source, manifest, schema, info)
        with self._lock:
            self._entries[name] = entry
            self._entries.move_to_end(name)
            self._evict()
        return entry

    def _evict(self) -> None:
        loaded = [n for n, e in self._entries.items() if e.model is not None]
        for n in loaded[: max(0, len(loaded) - self.cache_size)]:
            self._entries[n].model = None
        while len(self._entries) > 4 * self.cache_size + 64:  # manifests are small, but bound them
            self._entries.popitem(last=False)

    # -- what the service uses --------------------------------------------------------
    def info(self, name: str) -> ModelInfo:
        return self._entry(name).info

    def manifest(self, name: str) -> dict[str, Any]:
        return self._entry(name).manifest

    def schema(self, name: str) -> LoadedSchema:
        return self._entry(name).schema

    def model(self, name: str) -> Model:
        """The loaded model (lazily, once: concurrent first requests wait for one load)."""
        entry = self._entry(name)
        if entry.model is not None:
            return entry.model
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:
            if entry.model is None:
                log.info("loading model %s from %s", name, entry.path)
                entry.model = store.load(entry.path, device=self.device)
                with self._lock:
                    self._evict()
            return entry.model

    def target_dir(self, name: str) -> Path:
        """Where a newly trained model called `name` is saved."""
        if self.models_dir is None:
            raise FailedPrecondition("this server has no models directory to save trained models in")
        return self.models_dir / check_name(name)


# ----------------------------------------------------------------------------- jobs

@dataclass
class _Job:
    """Mutable job state, guarded by the manager's condition variable."""

    status: JobStatus
    schema: LoadedSchema
    records: list[Message]
    model_config: ModelConfig
    train_config: Any
    cancel: threading.Event = field(default_factory=threading.Event)
    version: int = 0


class JobManager:
    """Training jobs, run one at a time on a background thread; the rest wait in a queue.

    Everything that can be checked before training (name, schema, data, config,
    limits) is checked in `create`, so a bad upload fails the request instead of
    becoming a failed job. A finished model is saved into the registry's models
    directory with an atomic rename, so it is listed and servable at once.
    Jobs live in memory: a restart forgets them (the trained models stay).
    """

    def __init__(self, registry: ModelRegistry, limits: Limits):
        self.registry, self.limits = registry, limits
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._closed = False

    # -- create -----------------------------------------------------------------------
    def create(self, req: JobRequest) -> JobStatus:
        TrainConfig = _train_api()[1]
        if req.name is not None:
            check_name(req.name)
        if len(req.data) > self.limits.max_upload_bytes:
            raise TooLarge(f"data file is {len(req.data)} bytes; the limit is {self.limits.max_upload_bytes}",
                           limit=self.limits.max_upload_bytes)
        schema = _load_uploaded_schema(req.proto, req.message, req.proto_filename)
        model_cfg, train_cfg = _parse_run_config(req.config, TrainConfig)
        build_tree(schema.descriptor, model_cfg.schema_options())  # unsupported schema: fail now
        steps = int(getattr(train_cfg, "steps", 0) or 0)
        if steps > self.limits.max_train_steps:
            raise TooLarge(f"train.steps={steps} exceeds this server's limit of {self.limits.max_train_steps}",
                           [Violation("train.steps", f"at most {self.limits.max_train_steps}")],
                           limit=self.limits.max_train_steps)
        records = _read_uploaded_records(req.data, req.data_filename, schema)
        job_id = uuid.uuid4().hex
        name = req.name or f"{schema.descriptor.name.lower()}-{job_id[:8]}"
        check_name(name)
        with self._cond:
            if self._closed:
                raise FailedPrecondition("the server is shutting down")
            busy = {j.status.name for j in self._jobs.values() if not j.status.done}
            if name in busy or self.registry.exists(name):
                raise AlreadyExists(f"a model or job named {name!r} already exists",
                                    [Violation("name", "choose another name")])
            status = JobStatus(job_id, name, "queued", steps=steps, created_at=time.time())
            self._jobs[job_id] = _Job(status, schema, records, model_cfg, train_cfg)
            self._forget_old()
            self._ensure_worker()
        self._queue.put(job_id)
        return status

    def _forget_old(self) -> None:
        done = [k for k, j in self._jobs.items() if j.status.done]
        for k in done[: max(0, len(done) - self.limits.jobs_kept)]:
            del self._jobs[k]

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="synth-train", daemon=True)
            self._worker.start()

    # -- read / cancel / watch ----------------------------------------------------------
    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise NotFound(f"no job with id {job_id!r}", [Violation("id", "unknown job")])
        return job

    def get(self, job_id: str) -> JobStatus:
        with self._cond:
            return self._job(job_id).status

    def cancel(self, job_id: str) -> JobStatus:
        with self._cond:
            job = self._job(job_id)
            if job.status.done:
                raise FailedPrecondition(f"job {job_id} is already {job.status.state}",
                                         state=job.status.state)
            job.cancel.set()
            if job.status.state == "queued":
                self._update(job, state="cancelled", cancel_requested=True, finished_at=time.time())
            else:
                self._update(job, cancel_requested=True)
            return job.status

    def watch(self, job_id: str, should_stop: Callable[[], bool] = lambda: False,
              poll_s: float = 0.5) -> Iterator[JobStatus]:
        """Yield the job's status now and after every change, ending after a terminal state.

        `should_stop` lets a transport end the watch when its client goes away.
        """
        with self._cond:
            job = self._job(job_id)
            seen, status = job.version, job.status
        yield status
        while not status.done and not should_stop():
            with self._cond:
                self._cond.wait_for(lambda: job.version != seen or self._closed, timeout=poll_s)
                if job.version == seen:
                    if self._closed:
                        return
                    continue
                seen, status = job.version, job.status
            yield status

    def _update(self, job: _Job, **changes: Any) -> None:
        """Replace the job's snapshot (caller holds the condition) and wake watchers."""
        job.status = dataclasses.replace(job.status, **changes)
        job.version += 1
        self._cond.notify_all()

    def _set(self, job: _Job, **changes: Any) -> None:
        with self._cond:
            self._update(job, **changes)

    # -- the worker ---------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._cond:
                job = self._jobs.get(job_id)
                if job is None or job.status.done:
                    continue
                self._update(job, state="running", started_at=time.time())
            try:
                self._run(job)
            except SynthError as e:
                log.warning("job %s failed: %s", job_id, e)
                self._set(job, state="failed", error=e.to_dict(), finished_at=time.time())
            except Exception:  # a bug, or torch running out of memory: log it, tell the client little
                log.exception("job %s failed with an internal error", job_id)
                self._set(job, state="failed", finished_at=time.time(),
                          error={"code": "internal", "message": "training failed with an internal error; "
                                 "see the server log", "details": {}})
            finally:
                job.records = []  # free the training data

    def _run(self, job: _Job) -> None:
        Trainer = _train_api()[0]
        seed = int(getattr(job.train_config, "seed", 0) or 0)
        train, test = _split(job.records, seed)
        model = Model.create(job.schema, job.schema.message_name, records=train, config=job.model_config)
        target = self.registry.target_dir(job.status.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".job-{job.status.id[:8]}-", dir=target.parent))
        try:
            trainer = Trainer(model, job.train_config, train, test_records=test or None,
                              out_dir=staging, progress=False)
            result = trainer.run(on_progress=lambda p: self._progress(job, p),
                                 should_stop=job.cancel.is_set)
            losses = _floats(getattr(result, "losses", {}) or {})
            step = int(getattr(result, "step", job.status.step))
            if getattr(result, "stopped", False):
                self._set(job, state="cancelled", step=step, losses=losses or job.status.losses,
                          finished_at=time.time())
                return
            self._publish(job, model, target, step, losses, len(train), len(test))
            self._set(job, state="succeeded", step=step, losses=losses or job.status.losses,
                      finished_at=time.time())
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _progress(self, job: _Job, p: dict[str, Any]) -> None:
        row = _floats(p)
        progress = {k: v for k, v in row.items() if k in PROGRESS_FIELDS}
        losses = {k: v for k, v in row.items() if k not in PROGRESS_KEYS}
        self._set(job, step=int(row.get("step", job.status.step)),
                  steps=int(row.get("steps", job.status.steps)), progress=progress,
                  losses=losses or job.status.losses)

    def _publish(self, job: _Job, model: Model, target: Path, step: int,
                 losses: dict[str, float], n_train: int, n_test: int) -> None:
        """Save the artifact at models_dir/name with one rename, so it appears complete or not at all.

        The trainer's own `out_dir` (a hidden staging directory) is discarded: the
        artifact is written again here so its manifest carries the job's summary.
        """
        if target.exists():
            raise AlreadyExists(f"a model named {job.status.name!r} appeared while the job ran")
        meta = model.metadata
        meta.setdefault("train_config", to_dict(job.train_config))
        summary = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
        summary.setdefault("steps", step)
        summary.setdefault("train_records", n_train)
        summary.setdefault("test_records", n_test)
        summary["job_id"] = job.status.id
        meta["summary"] = summary
        if not meta.get("metrics"):  # the trainer's last evaluation: train/test/generated loss
            meta["metrics"] = {k: v for k, v in losses.items() if k.endswith("_loss")}
        store.save(model, target)  # atomic: a temporary sibling, then a rename

    def close(self, timeout: float = 10.0) -> None:
        """Cancel running and queued jobs and stop the worker."""
        with self._cond:
            self._closed = True
            for job in self._jobs.values():
                if not job.status.done:
                    job.cancel.set()
            self._cond.notify_all()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout)


def _train_api() -> tuple[Any, Any]:
    """(Trainer, TrainConfig), imported late: training is optional for a serving-only process."""
    try:
        from synth.train import TrainConfig, Trainer
    except ImportError as e:
        raise FailedPrecondition(f"training is not available in this installation ({e})") from e
    return Trainer, TrainConfig


def _parse_run_config(text: str | None, train_config_cls: Any) -> tuple[ModelConfig, Any]:
    """run.toml text -> (ModelConfig, TrainConfig); unknown tables or keys are errors."""
    data: dict[str, Any] = {}
    if text and text.strip():
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("the config is not valid TOML", [Violation("config", str(e))]) from e
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError("unknown config table(s)",
                          [Violation(k, "not a table; use [model] and [train]") for k in unknown])
    for key in ("model", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"config key {key!r} must be a table", [Violation(key, "expected a table")])
    return (from_dict(ModelConfig, data.get("model"), "model."),
            from_dict(train_config_cls, data.get("train"), "train."))


def _safe_filename(name: str, default: str) -> str:
    """The base name of an uploaded file, reduced to harmless characters."""
    base = Path(name or default).name
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".")
    return base or default


def _load_uploaded_schema(text: str, message: str, filename: str) -> LoadedSchema:
    if not text or not text.strip():
        raise SchemaError("the .proto upload is empty", [Violation("proto", "upload a .proto file")])
    if not message:
        raise SchemaError("a message name is required", [Violation("message", "name the record message")])
    name = _safe_filename(filename, "schema.proto")
    if not name.endswith(".proto"):
        name += ".proto"
    return from_file_set(compile_proto_text(text, filename=name), message)


def _read_uploaded_records(data: bytes, filename: str, schema: LoadedSchema) -> list[Message]:
    from synth.io import read_records

    name = _safe_filename(filename, "data")
    with tempfile.TemporaryDirectory(prefix="synth-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        records = read_records(path, schema.message_class).records
    if not records:
        raise DataError("the data file holds no records", [Violation(name, "no records")])
    return records


def _split(records: list[Message], seed: int) -> tuple[list[Message], list[Message]]:
    """Hold out 10% (seeded) for evaluation when there are enough records to spare."""
    if len(records) < 50:
        return list(records), []
    order = np.random.default_rng(seed).permutation(len(records))
    n_test = max(1, len(records) // 10)
    return [records[i] for i in order[n_test:]], [records[i] for i in order[:n_test]]


def _floats(d: dict[str, Any]) -> dict[str, float]:
    """Keep the finite numeric entries (tensors included), as floats."""
    out = {}
    for k, v in d.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[str(k)] = f
    return out


# ----------------------------------------------------------------------------- the service

class SynthService:
    """Every operation of the API, in plain Python: what both transports call."""

    def __init__(self, registry: ModelRegistry, limits: Limits = Limits()):
        self.registry, self.limits = registry, limits
        self.jobs = JobManager(registry, limits)

    # -- models -------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        out = []
        for name in self.registry.names():
            try:
                out.append(self.registry.info(name))
            except SynthError as e:  # one broken artifact must not hide the others
                log.warning("skipping model %s: %s", name, e)
        return out

    def model_info(self, name: str) -> ModelInfo:
        return self.registry.info(name)

    def get_model(self, name: str) -> ModelDetail:
        entry_info = self.registry.info(name)
        manifest = self.registry.manifest(name)
        schema = self.registry.schema(name)
        meta = manifest.get("metadata") or {}
        return ModelDetail(
            info=entry_info, proto=schema.proto_source(), file_descriptor_set=schema.file_set,
            model_config=dict(manifest.get("model_config") or {}),
            train_config=_as_dict(meta.get("train_config") or _as_dict(meta.get("run_config")).get("train")),
            summary=_as_dict(meta.get("summary")),
            metrics=_as_dict(meta.get("metrics")))

    def message_class(self, name: str) -> type[Message]:
        return self.registry.schema(name).message_class

    # -- inference ----------------------------------------------------------------------
    def sample(self, name: str, n: int, seed: int | None = None, temperature: float | None = None,
               greedy: bool = False, where: dict[str, Any] | None = None) -> list[Message]:
        """n records at once (limit `max_sample`); the same chunks as `sample_chunks`."""
        self._check_count("n", n, self.limits.max_sample, hint="stream the records instead")
        return [r for chunk in self.sample_chunks(name, n, seed, temperature, greedy, where) for r in chunk]

    def sample_chunks(self, name: str, n: int, seed: int | None = None, temperature: float | None = None,
                      greedy: bool = False, where: dict[str, Any] | None = None) -> Iterator[list[Message]]:
        """n records in chunks of `sample_chunk`, for streaming.

        Arguments and the first chunk are checked before this returns, so a bad
        request fails before a transport has committed to a streamed response.
        Chunk k uses a seed derived from (seed, k); chunk 0 uses the seed itself, so
        up to one chunk equals `Model.sample(n, seed=seed)`.
        """
        self._check_count("n", n, self.limits.max_sample_stream)
        temperature = _temperature(temperature)
        base = _seed(seed) if seed is not None else secrets.randbits(63)
        where = _where(where)
        model = self.registry.model(name)
        size = self.limits.sample_chunk
        sizes = [min(size, n - i) for i in range(0, n, size)]

        def chunk(k: int, m: int) -> list[Message]:
            kwargs: dict[str, Any] = {"seed": _chunk_seed(base, k), "temperature": temperature,
                                      "greedy": greedy}
            if where:
                kwargs["where"] = where  # conditional sampling; the model checks the field paths
            return model.sample(m, **kwargs)

        first = chunk(0, sizes[0]) if sizes else []

        def generate() -> Iterator[list[Message]]:
            if sizes:
                yield first
            for k, m in enumerate(sizes[1:], start=1):
                yield chunk(k, m)

        return generate()

    def encode(self, name: str, records: Sequence[Any]) -> list[Latent]:
        model = self.registry.model(name)
        msgs = self.parse_records(name, records)
        mu, sigma = model.encode(msgs)
        return [Latent(m, s) for m, s in zip(mu.tolist(), sigma.tolist())]

    def decode(self, name: str, latents: Sequence[Sequence[float]], temperature: float | None = None,
               greedy: bool = False, seed: int | None = None) -> list[Message]:
        self._check_count("latents", len(latents), self.limits.max_records)
        model = self.registry.model(name)
        z = _matrix(latents, model.latent_dim)
        return model.decode(z, temperature=_temperature(temperature), greedy=greedy,
                            seed=_seed(seed) if seed is not None else None)

    def interpolate(self, name: str, start: Any, end: Any, steps: int = 8,
                    method: str = "linear") -> Interpolation:
        if not isinstance(steps, int) or steps < 2:
            raise InvalidArgument(f"steps must be an integer >= 2, got {steps!r}", [Violation("steps", ">= 2")])
        self._check_count("steps", steps, self.limits.max_interpolate_steps)
        model = self.registry.model(name)
        cls = self.message_class(name)
        a = _record(start, cls, "from")
        b = _record(end, cls, "to")
        records, z = model.interpolate(a, b, steps=steps, method=method or "linear")
        return Interpolation(records, z.tolist())

    def reconstruct(self, name: str, records: Sequence[Any]) -> list[Message]:
        model = self.registry.model(name)
        return model.reconstruct(self.parse_records(name, records))

    def parse_records(self, name: str, records: Sequence[Any]) -> list[Message]:
        """Records (JSON dicts/text, serialized bytes or messages) as messages of the model's schema."""
        if not isinstance(records, (list, tuple)):
            raise InvalidArgument("records must be a list", [Violation("records", "expected a list")])
        self._check_count("records", len(records), self.limits.max_records)
        cls = self.message_class(name)
        return [_record(r, cls, f"records[{i}]") for i, r in enumerate(records)]

    @staticmethod
    def _check_count(what: str, value: Any, limit: int, hint: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(f"{what} must be a non-negative integer, got {value!r}",
                                  [Violation(what, "expected an integer >= 0")])
        if value > limit:
            raise TooLarge(f"{what}={value} exceeds this server's limit of {limit}" + (f"; {hint}" if hint else ""),
                           [Violation(what, f"at most {limit}")], limit=limit)

    # -- jobs -------------------------------------------------------------------------
    def create_job(self, request: JobRequest) -> JobStatus:
        return self.jobs.create(request)

    def get_job(self, job_id: str) -> JobStatus:
        return self.jobs.get(job_id)

    def cancel_job(self, job_id: str) -> JobStatus:
        return self.jobs.cancel(job_id)

    def watch_job(self, job_id: str, should_stop: Callable[[], bool] = lambda: False) -> Iterator[JobStatus]:
        return self.jobs.watch(job_id, should_stop)

    def close(self) -> None:
        self.jobs.close()


# ----------------------------------------------------------------------------- argument checks

def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _temperature(t: float | None) -> float:
    if t is None:
        return 1.0
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise InvalidArgument(f"temperature must be a finite number > 0, got {t!r}",
                              [Violation("temperature", "expected a number > 0")])
    return float(t)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be an integer in [0, 2^63), got {seed!r}",
                              [Violation("seed", "expected an integer in [0, 2^63)")])
    return seed


def _chunk_seed(base: int, k: int) -> int:
    if k == 0:
        return base
    return int(np.random.SeedSequence([base, k]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _where(where: Any) -> dict[str, Any]:
    if where is None:
        return {}
    if not isinstance(where, dict) or not all(isinstance(k, str) for k in where):
        raise InvalidArgument("where must map field paths to values", [Violation("where", "expected an object")])
    return dict(where)


def _matrix(latents: Any, dim: int) -> np.ndarray:
    """A rectangular (n, dim) float matrix, or InvalidArgument naming the bad row."""
    if not isinstance(latents, (list, tuple)):
        raise InvalidArgument("latents must be a list of vectors", [Violation("latents", "expected a list")])
    for i, row in enumerate(latents):
        if not isinstance(row, (list, tuple)) or len(row) != dim:
            got = len(row) if isinstance(row, (list, tuple)) else type(row).__name__
            raise InvalidArgument(f"each latent must have {dim} numbers, latents[{i}] has {got}",
                                  [Violation(f"latents[{i}]", f"expected {dim} numbers, got {got}")],
                                  expected=dim)
    try:
        z = np.asarray(latents, dtype=np.float32).reshape(len(latents), dim)
    except (TypeError, ValueError) as e:
        raise InvalidArgument("latents must hold numbers only", [Violation("latents", str(e))]) from e
    if not np.isfinite(z).all():
        raise InvalidArgument("latents contain NaN or infinity", [Violation("latents", "not finite")])
    return z


def _record(record: Any, cls: type[Message], where: str) -> Message:
    """A record as JSON (dict or text), serialized bytes of the user's message, or a message."""
    if isinstance(record, (bytes, bytearray)):
        try:
            return cls.FromString(bytes(record))
        except (DecodeError, ValueError) as e:
            raise DataError(f"record does not fit {cls.DESCRIPTOR.full_name}",
                            [Violation(where, f"not a serialized {cls.DESCRIPTOR.full_name}: {e}")]) from e
    return to_message(record, cls, where=where)
