"""Training jobs over the service API: upload, queue, train, publish (docs/service.md).

A client uploads a schema, a data file and an optional run.toml; `JobManager`
checks all of it up front, trains one job at a time on a background thread,
reports progress to watchers, and saves the finished model into the registry's
models directory so it is servable at once. Kept apart from the inference side
because it owns threads, a queue and temporary files.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import Message

from synth import store
from synth.configs import to_dict
from synth.errors import (AlreadyExists, DataError, FailedPrecondition, NotFound, PermissionDenied, SchemaError,
                          SynthError, TooLarge, Violation)
from synth.model import Model
from synth.model_config import ModelConfig
from synth.run_config import parse_run_config
from synth.schema.loader import LoadedSchema, compile_proto_text, from_file_set
from synth.schema.tree import build_tree
from synth.service.registry import ModelRegistry
from synth.service.types import Caller, JobError, JobRequest, JobStatus, Limits, check_name
from synth.train import Trainer

log = logging.getLogger(__name__)

# A trainer progress row: these fields are `progress`; all but the bookkeeping ones are `losses`.
PROGRESS_FIELDS = ("step", "steps", "loss", "kl", "beta", "records_per_s", "eta_s")
PROGRESS_KEYS = {"step", "steps", "beta", "records_per_s", "eta_s"}


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
    owner: str | None = None  # Caller.id of the token that created it (None: a server without tokens)


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
    def create(self, req: JobRequest, owner: Caller | None = None) -> JobStatus:
        if req.name is not None:
            check_name(req.name)
        if len(req.data) > self.limits.max_upload_bytes:
            raise TooLarge(f"data file is {len(req.data)} bytes; the limit is {self.limits.max_upload_bytes}",
                           limit=self.limits.max_upload_bytes)
        schema = _load_uploaded_schema(req.proto, req.message, req.proto_filename, self.limits)
        run = parse_run_config(req.config)  # the one run.toml parser (also `synth train --config`)
        model_cfg, train_cfg = run.model, run.train
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
            self._jobs[job_id] = _Job(status, schema, records, model_cfg, train_cfg,
                                      owner=owner.id if owner is not None else None)
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

    def cancel(self, job_id: str, caller: Caller | None = None) -> JobStatus:
        """Only the token that created a job, or an admin token, may cancel it (`caller=None`: no tokens)."""
        with self._cond:
            job = self._job(job_id)
            if caller is not None and not caller.admin and job.owner is not None and caller.id != job.owner:
                raise PermissionDenied(f"job {job_id} was created with another token; only that token or an "
                                       "admin token may cancel it")
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
                body = e.to_dict()
                self._set(job, state="failed", error=JobError(body["code"], body["message"], body["details"]),
                          finished_at=time.time())
            except Exception:  # a bug, or torch running out of memory: log it, tell the client little
                log.exception("job %s failed with an internal error", job_id)
                self._set(job, state="failed", finished_at=time.time(),
                          error=JobError("internal", "training failed with an internal error; see the server log"))
            finally:
                job.records = []  # free the training data

    def _run(self, job: _Job) -> None:
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


def _safe_filename(name: str, default: str) -> str:
    """The base name of an uploaded file, reduced to harmless characters."""
    base = Path(name or default).name
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".")
    return base or default


def _load_uploaded_schema(text: str, message: str, filename: str, limits: Limits = Limits()) -> LoadedSchema:
    if not text or not text.strip():
        raise SchemaError("the .proto upload is empty", [Violation("proto", "upload a .proto file")])
    if not message:
        raise SchemaError("a message name is required", [Violation("message", "name the record message")])
    name = _safe_filename(filename, "schema.proto")
    if not name.endswith(".proto"):
        name += ".proto"
    return from_file_set(compile_proto_text(text, filename=name), message,
                         max_fields=limits.max_schema_fields, max_depth=limits.max_schema_depth)


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
