"""Training jobs over the service API: upload, queue, train in a worker process, publish (docs/service.md).

A client uploads a schema, a data file and an optional run.toml; `JobManager`
checks all of it up front (settings against the server's maxima first, before any
data is parsed), keeps the upload on disk while the job waits in a bounded queue,
and trains each job in its own process (`synth.service.worker`, "spawn"), with
memory, thread and time limits. Progress rows come back over a pipe, so watchers see
every step; cancelling a job ends its process. A crash, an out-of-memory or a kill of
the worker fails the job, never the server. A finished model is published into the
registry's models directory with one rename, so it is servable at once.

Job state is recorded on disk (`synth.service.job_store`): after a server restart the
jobs are still listed, and the ones that were queued or running are reported as FAILED.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import queue
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth import store
from synth.errors import (AlreadyExists, DataError, FailedPrecondition, NotFound, PermissionDenied,
                          ResourceExhausted, SchemaError, SynthError, TooLarge, Violation)
from synth.run_config import parse_toml, run_config_from_dict
from synth.schema.loader import LoadedSchema, compile_proto_text, from_file_set
from synth.schema.tree import build_tree
from synth.service import worker
from synth.service.job_checks import check_job_settings
from synth.service.job_store import JobStore
from synth.service.registry import ModelRegistry
from synth.service.types import Caller, JobError, JobRequest, JobStatus, Limits, check_name

log = logging.getLogger(__name__)

# A trainer progress row: these fields are `progress`; all but the bookkeeping ones are `losses`.
PROGRESS_FIELDS = ("step", "steps", "loss", "kl", "beta", "records_per_s", "eta_s")
PROGRESS_KEYS = {"step", "steps", "beta", "records_per_s", "eta_s"}
ANONYMOUS = "anonymous"  # the queue identity of callers without a token
POLL_S = 0.2  # how often a supervisor checks cancel, the time limit and the worker
PERSIST_PROGRESS_S = 2.0  # progress rows reach the job's record at most this often
STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
SHUTDOWN = JobError("unavailable", "the server shut down before the job finished; submit it again")


# ----------------------------------------------------------------------------- jobs

@dataclass
class _Job:
    """Mutable job state, guarded by the manager's condition variable."""

    status: JobStatus
    spec: dict[str, Any] | None  # what the worker needs; None once the job has run (or was recovered)
    cancel: threading.Event = field(default_factory=threading.Event)
    version: int = 0
    owner: str | None = None  # Caller.id of the token that created it (None: a server without tokens)
    persisted_at: float = 0.0

    @property
    def client(self) -> str:
        return self.owner or ANONYMOUS


class JobManager:
    """Training jobs, `limits.job_workers` at a time, each in its own process; the rest wait in a queue.

    Everything that can be checked before training (name, settings, schema, data,
    queue quotas) is checked in `create`, so a bad upload fails the request instead
    of becoming a failed job.
    """

    def __init__(self, registry: ModelRegistry, limits: Limits):
        self.registry, self.limits = registry, limits
        self.store = JobStore(registry.models_dir)
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        for status, owner in self.store.recover():  # jobs of the previous run, unfinished ones failed
            self._jobs[status.id] = _Job(status, None, owner=owner, persisted_at=time.time())
        self._cond = threading.Condition()
        self._persist_lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._closed = False
        with self._cond:
            self._forget_old()

    # -- create -----------------------------------------------------------------------
    def create(self, req: JobRequest, owner: Caller | None = None) -> JobStatus:
        if req.name is not None:
            check_name(req.name)
        if len(req.data) > self.limits.max_upload_bytes:
            raise TooLarge(f"data file is {len(req.data)} bytes; the limit is {self.limits.max_upload_bytes}",
                           limit=self.limits.max_upload_bytes)
        raw = parse_toml(req.config)
        check_job_settings(raw, self.limits)  # explicit settings over the maxima: refused before anything runs
        schema = _load_uploaded_schema(req.proto, req.message, req.proto_filename, self.limits)
        run = _checked_run_config(raw, self.limits)
        build_tree(schema.descriptor, run.model.schema_options())  # unsupported schema: fail now
        job_id = uuid.uuid4().hex
        name = req.name or f"{schema.descriptor.name.lower()}-{job_id[:8]}"
        check_name(name)
        client = owner.id if owner is not None else None
        with self._cond:
            self._admit(name, client)  # a full queue is refused before the data is even written
        data = self._keep_upload(job_id, req.data, req.data_filename, schema)
        spec = {"id": job_id, "name": name, "message": schema.message_name, "data": str(data),
                "file_descriptor_set": _b64(schema.file_set), "run_config": run.to_dict(), "owner": client}
        try:
            with self._cond:
                self._admit(name, client)  # again: other uploads may have been admitted meanwhile
                status = JobStatus(job_id, name, "queued", steps=run.train.steps, created_at=time.time())
                self._jobs[job_id] = job = _Job(status, spec, owner=client)
                self._forget_old()
                self._ensure_workers()
        except BaseException:
            self.store.remove_upload(job_id)
            raise
        self._persist(job, force=True)
        self._queue.put(job_id)
        return status

    def _admit(self, name: str, client: str | None) -> None:
        """Refuse a job when the server is closing, its name is taken, or a queue quota is used up."""
        if self._closed:
            raise FailedPrecondition("the server is shutting down")
        pending = [j for j in self._jobs.values() if not j.status.done]
        if name in {j.status.name for j in pending} or self.registry.exists(name):
            raise AlreadyExists(f"a model or job named {name!r} already exists",
                                [Violation("name", "choose another name")])
        queued = [j for j in pending if j.status.state == "queued"]
        limit = self.limits.max_queued_jobs
        if len(queued) >= limit:
            raise ResourceExhausted(f"the job queue is full ({len(queued)} jobs waiting, the server's limit is "
                                    f"{limit}); retry when one has started", limit=limit, queued=len(queued))
        mine = sum(1 for j in queued if j.client == (client or ANONYMOUS))
        limit = self.limits.max_queued_jobs_per_client
        if mine >= limit:
            who = "anonymous callers have" if client is None else "this API token has"
            raise ResourceExhausted(f"{who} {mine} jobs waiting, the limit per client is {limit}; retry when "
                                    "one has started, or cancel one", limit=limit, queued=mine)

    def _keep_upload(self, job_id: str, data: bytes, filename: str, schema: LoadedSchema) -> Path:
        """Write the data file into the job's upload folder and check that it parses (the records are
        dropped again: the worker reads the file). The folder is removed when the upload is refused."""
        from synth.io import read_records

        folder = self.store.upload_dir(job_id)
        folder.mkdir(parents=True)
        try:
            path = folder / _safe_filename(filename, "data")
            path.write_bytes(data)
            if not read_records(path, schema.message_class).records:
                raise DataError("the data file holds no records", [Violation(path.name, "no records")])
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs past `jobs_kept` (caller holds the condition)."""
        done = [k for k, j in self._jobs.items() if j.status.done]
        for k in done[: max(0, len(done) - self.limits.jobs_kept)]:
            del self._jobs[k]
            self.store.forget(k)

    def _ensure_workers(self) -> None:
        self._workers = [t for t in self._workers if t.is_alive()]
        while len(self._workers) < max(1, self.limits.job_workers):
            t = threading.Thread(target=self._work, name=f"synth-train-{len(self._workers)}", daemon=True)
            t.start()
            self._workers.append(t)

    # -- read / list / cancel / watch ---------------------------------------------------
    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise NotFound(f"no job with id {job_id!r}", [Violation("id", "unknown job")])
        return job

    def get(self, job_id: str) -> JobStatus:
        with self._cond:
            return self._job(job_id).status

    def list(self, caller: Caller | None = None) -> list[JobStatus]:
        """The caller's jobs, newest first: an admin sees every job; `caller=None` (a server without
        tokens, or an anonymous public read) sees the jobs created without a token."""
        with self._cond:
            jobs = list(self._jobs.values())
        mine = [j for j in jobs if (caller is not None and caller.admin) or
                j.owner == (caller.id if caller is not None else None)]
        return [j.status for j in sorted(mine, key=lambda j: j.status.created_at, reverse=True)]

    def cancel(self, job_id: str, caller: Caller | None = None) -> JobStatus:
        """Only the token that created a job, or an admin token, may cancel it (`caller=None`: no tokens).

        A queued job is cancelled at once; a running one when its supervisor ends the
        worker process (within `POLL_S`)."""
        with self._cond:
            job = self._job(job_id)
            if caller is not None and not caller.admin and job.owner is not None and caller.id != job.owner:
                raise PermissionDenied(f"job {job_id} was created with another token; only that token or an "
                                       "admin token may cancel it")
            if job.status.done:
                raise FailedPrecondition(f"job {job_id} is already {job.status.state}",
                                         state=job.status.state)
            job.cancel.set()
            queued = job.status.state == "queued"
            if queued:
                self._update(job, state="cancelled", cancel_requested=True, finished_at=time.time())
            else:
                self._update(job, cancel_requested=True)
            status = job.status
        if queued:
            self.store.remove_upload(job_id)
        self._persist(job, force=True)
        return status

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
        self._persist(job, force=job.status.done or "state" in changes)

    def _persist(self, job: _Job, force: bool = False) -> None:
        """Record the job's current state on disk (progress alone at most every PERSIST_PROGRESS_S)."""
        now = time.time()
        if not force and now - job.persisted_at < PERSIST_PROGRESS_S:
            return
        with self._persist_lock:  # the newest snapshot is written last
            with self._cond:
                status, owner, kept = job.status, job.owner, job.status.id in self._jobs
                job.persisted_at = now
            if kept:  # a job forgotten meanwhile (jobs_kept) must not come back
                self.store.save(status, owner)

    # -- the worker threads -------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._cond:
                job = self._jobs.get(job_id)
                if job is None or job.status.done or job.spec is None:
                    continue
                self._update(job, state="running", started_at=time.time())
            self._persist(job, force=True)
            try:
                self._run(job)
            except Exception:  # a bug in the supervisor itself: the job fails, the thread goes on
                log.exception("job %s failed with an internal error", job_id)
                self._set(job, state="failed", finished_at=time.time(),
                          error=JobError("internal", "training failed with an internal error; see the server log"))
            finally:
                job.spec = None
                self.store.remove_upload(job_id)  # also on a supervisor bug

    def _run(self, job: _Job) -> None:
        """Train the job in a worker process, publish its model, clean up, then settle its final state
        (watchers that see the final state see a clean disk too)."""
        staging = self.store.staging_dir(job.status.id)
        spec = {**(job.spec or {}), "staging": str(staging)}
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        here, there = ctx.Pipe()
        process = ctx.Process(target=worker.main, name=f"synth-job-{job.status.id[:8]}", daemon=True,
                              args=(spec, there, self.limits.job_threads, self.limits.job_memory_mb))
        try:
            process.start()
            there.close()  # the child holds its end; ours closing lets recv() see the child's exit
            log.info("job %s (%s) training in process %s", job.status.id, job.status.name, process.pid)
            outcome, payload = self._supervise(job, process, here)
            final = self._settle(job, outcome, payload, staging)
        finally:
            _stop(process)
            here.close()
            shutil.rmtree(staging, ignore_errors=True)
            self.store.remove_upload(job.status.id)
        if final.get("error") is not None:
            log.warning("job %s failed: %s", job.status.id, final["error"].message)
        self._set(job, finished_at=time.time(), **final)

    def _supervise(self, job: _Job, process: Any, conn: Any) -> tuple[str, Any]:
        """Relay progress until the worker reports, dies, is cancelled or runs out of time."""
        timeout = self.limits.job_timeout_s
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            if job.cancel.is_set():
                _stop(process)
                return ("cancelled" if not self._closed else "shutdown"), None
            if deadline is not None and time.monotonic() > deadline:
                _stop(process)
                return "timeout", timeout
            rss = worker.resident_mb(process.pid) if self.limits.job_memory_mb else None
            if rss is not None and rss > self.limits.job_memory_mb:
                _stop(process)
                return "memory", rss
            try:
                message = conn.recv() if conn.poll(POLL_S) else None
            except (EOFError, OSError):  # the worker's end closed: it exited
                process.join(STOP_GRACE_S)
                return "died", process.exitcode
            if message is None:
                if not process.is_alive() and not conn.poll(0):
                    return "died", process.exitcode
                continue
            kind, payload = message
            if kind == "progress":
                self._progress(job, payload)
            elif kind in ("done", "error"):
                process.join(STOP_GRACE_S)
                return kind, payload

    def _settle(self, job: _Job, outcome: str, payload: Any, staging: Path) -> dict[str, Any]:
        """The job's final changes for an outcome of `_supervise`; a finished model is published here."""
        if outcome == "done":
            try:
                store.publish(staging / "model", self.registry.target_dir(job.status.name))
            except SynthError as e:
                return _failed(e.code, e.message)
            except OSError as e:
                return _failed("resource_exhausted" if e.errno in worker.DISK_ERRNOS else "internal",
                               f"the model could not be published ({e.strerror}); nothing was published")
            return {"state": "succeeded", "step": int(payload.get("step", job.status.step)),
                    "losses": payload.get("losses") or job.status.losses}
        if outcome == "cancelled":
            return {"state": "cancelled"}
        if outcome == "shutdown":
            return {"state": "failed", "error": SHUTDOWN}
        if outcome == "timeout":
            return _failed("resource_exhausted", f"the job ran past its time limit of {payload:g} s "
                                                 "(server setting job_timeout_s) and was stopped")
        if outcome == "memory":
            return _failed("resource_exhausted", f"training used {payload:.0f} MB of memory, more than the job "
                                                 f"memory limit of {self.limits.job_memory_mb} MB (server setting "
                                                 "job_memory_mb), and was stopped")
        if outcome == "error":
            return _failed(payload.get("code", "internal"), payload.get("message", ""), payload.get("details"))
        # died without a word: killed (the OOM killer, an operator), or a crash in native code
        memory = f" (its memory limit is {self.limits.job_memory_mb} MB)" if self.limits.job_memory_mb else ""
        return _failed("internal", f"the training process {_how_it_ended(payload)}{memory}; the server is "
                                   "unaffected, submit the job again")

    def _progress(self, job: _Job, row: dict[str, float]) -> None:
        progress = {k: v for k, v in row.items() if k in PROGRESS_FIELDS}
        losses = {k: v for k, v in row.items() if k not in PROGRESS_KEYS}
        self._set(job, step=int(row.get("step", job.status.step)),
                  steps=int(row.get("steps", job.status.steps)), progress=progress,
                  losses=losses or job.status.losses)

    def close(self, timeout: float = 10.0) -> None:
        """Stop running jobs (they end FAILED, "the server shut down"), fail queued ones, stop the workers."""
        with self._cond:
            self._closed = True
            pending = [j for j in self._jobs.values() if not j.status.done]
            for job in pending:
                job.cancel.set()
                if job.status.state == "queued":
                    self._update(job, state="failed", error=SHUTDOWN, finished_at=time.time())
            self._cond.notify_all()
        for job in pending:
            self._persist(job, force=True)
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self.store.close()


# ----------------------------------------------------------------------------- helpers

def _stop(process: Any) -> None:
    """End a worker process: SIGTERM, then SIGKILL after STOP_GRACE_S."""
    if process.pid is None or process.exitcode is not None:
        return
    process.terminate()
    process.join(STOP_GRACE_S)
    if process.exitcode is None:
        process.kill()
        process.join(STOP_GRACE_S)


def _failed(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"state": "failed", "error": JobError(code, message, dict(details or {}))}


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed ({name})"
    return f"exited unexpectedly (exit code {exitcode})"


def _checked_run_config(raw: dict[str, Any], limits: Limits) -> Any:
    """The upload's run config (its raw TOML table, already checked against the maxima), refused when
    a default is above a lowered maximum or its steps above `max_train_steps`."""
    run = run_config_from_dict(raw)  # the one run.toml parser (also `synth train --config`)
    check_job_settings(run.to_dict(), limits)  # defaults above a lowered maximum
    steps = int(run.train.steps or 0)
    if steps > limits.max_train_steps:
        raise TooLarge(f"train.steps={steps} exceeds this server's limit of {limits.max_train_steps}",
                       [Violation("train.steps", f"at most {limits.max_train_steps}")],
                       limit=limits.max_train_steps)
    return run


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


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
