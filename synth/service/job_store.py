"""Training jobs on disk: their state, their uploads, and the cleanup after a crash (docs/service.md).

Layout, under the models directory (hidden names, so the registry never lists them):

    <models>/.jobs/<id>.json               one small JSON per job: its last state and owner
    <models>/.jobs/synth-upload-<id>/      the uploaded data file, while the job is queued or running
    <models>/.job-<id8>-*/                 a running job's staging folder (checkpoints, the artifact)
    <models>/.deleted-<name>-*/            a deleted model, renamed away before it is removed

State files are written to a temporary name and renamed, so a crash leaves the old
state or the new one. `recover()` runs when a server starts: it removes staging,
upload and deleted folders (no job can still own them) and rewrites the jobs that were
queued or running as FAILED, "interrupted by a server restart". A lock file (`flock`)
makes sure only one server does that, and only when no other live server uses the
directory. Without a models directory the jobs live in a temporary folder and are not
kept across restarts.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from synth_contract.results import Job, JobError, job_from_json, to_json

log = logging.getLogger(__name__)

JOBS_DIR = ".jobs"
UPLOAD_PREFIX = "synth-upload-"
STAGING_PREFIX = ".job-"
DELETED_PREFIX = ".deleted-"
LOCK = ".lock"
INTERRUPTED = JobError("unavailable", "interrupted by a server restart; the job did not finish (submit it again)")


class JobStore:
    """Job records and uploads of one models directory (or of a temporary folder)."""

    def __init__(self, models_dir: Path | None):
        self.models_dir = models_dir
        self._root: Path | None = None
        self._lock_fd: int | None = None
        self.persistent = False
        if models_dir is not None:
            try:
                (models_dir / JOBS_DIR).mkdir(parents=True, exist_ok=True)
                self._lock_fd = self._lock(models_dir / JOBS_DIR)
            except OSError as e:  # a read-only models directory: serve it, keep jobs in a temporary folder
                log.warning("cannot keep job records in %s (%s): jobs are not kept across restarts",
                            models_dir / JOBS_DIR, e.strerror)
            else:
                self._root, self.persistent = models_dir / JOBS_DIR, True

    @property
    def root(self) -> Path:
        """The folder of job records and uploads (a temporary one, made on first use, when not persistent)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="synth-jobs-"))
        return self._root

    @property
    def owns_directory(self) -> bool:
        """Whether this server keeps jobs in the models directory and no other live server uses it."""
        return self.persistent and self._lock_fd is not None

    @staticmethod
    def _lock(root: Path) -> int | None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock, assume we are alone
            return -1
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.warning("another server uses %s: its jobs are left alone (no cleanup, no recovery)", root)
            return None
        return fd

    def close(self) -> None:
        if self._lock_fd is not None and self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
        self._lock_fd = None
        if not self.persistent and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    # -- uploads ----------------------------------------------------------------------
    def upload_dir(self, job_id: str) -> Path:
        return self.root / f"{UPLOAD_PREFIX}{job_id}"

    def remove_upload(self, job_id: str) -> None:
        shutil.rmtree(self.upload_dir(job_id), ignore_errors=True)

    def staging_dir(self, job_id: str) -> Path:
        """A fresh staging folder beside the published models (one filesystem: the publish is a rename)."""
        parent = self.models_dir if self.models_dir is not None else self.root
        parent.mkdir(parents=True, exist_ok=True)  # read-only: OSError, the job fails
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{job_id[:8]}-", dir=parent))

    # -- job records ------------------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.json"

    def save(self, job: Job, owner: str | None) -> None:
        """Write the job's state atomically; a failure is logged, never raised (the job goes on)."""
        if not self.persistent:
            return  # nothing survives this server anyway
        path = self._path(job.id)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps({"job": to_json(job), "owner": owner}))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("could not record the state of job %s: %s", job.id, e)
            tmp.unlink(missing_ok=True)

    def forget(self, job_id: str) -> None:
        if self.persistent:
            self._path(job_id).unlink(missing_ok=True)

    def load(self) -> list[tuple[Job, str | None]]:
        """Every recorded job (unreadable records are skipped), oldest first."""
        out = []
        for path in self.root.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                out.append((job_from_json(data["job"]), data.get("owner")))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("skipping unreadable job record %s: %s", path.name, e)
        return sorted(out, key=lambda pair: pair[0].created_at)

    # -- after a crash ----------------------------------------------------------------
    def recover(self) -> list[tuple[Job, str | None]]:
        """Clean up after a previous server and return the recorded jobs, unfinished ones as FAILED.

        Does nothing but read when another live server holds the directory."""
        if not self.owns_directory:
            return []  # another live server's jobs: not ours to show or to fail
        jobs = self.load()
        self._remove_leftovers()
        now, out = time.time(), []
        for job, owner in jobs:
            if not job.done:
                log.warning("job %s (%s) was %s when the server stopped: marked failed", job.id, job.name,
                            job.state)
                job = dataclasses.replace(job, state="failed", error=INTERRUPTED, finished_at=now)
                self.save(job, owner)
            out.append((job, owner))
        return out

    def _remove_leftovers(self) -> None:
        leftovers = [*self.root.glob(f"{UPLOAD_PREFIX}*"), *self.root.glob(".*.tmp")]
        if self.models_dir is not None:
            leftovers += [*self.models_dir.glob(f"{STAGING_PREFIX}*"), *self.models_dir.glob(f"{DELETED_PREFIX}*")]
        for path in leftovers:
            log.info("removing %s, left over by a server that stopped", path.name)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

