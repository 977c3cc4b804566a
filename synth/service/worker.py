"""The training worker: one job, in its own process (docs/service.md, "Jobs").

`JobManager` starts `main` with multiprocessing's "spawn" context, so the child is a
fresh interpreter that imports torch itself: a crash, an out-of-memory or a runaway
job ends this process, never the server. The child

- limits its own address space (`RLIMIT_AS`, `job_memory_mb`; on CPU) and torch's threads
  (`job_threads`), so a job cannot take the server's memory or all of its cores (the
  server also watches its resident memory, and its wall time);
- reads the uploaded data from the job's upload folder on disk (the server keeps no
  records in memory);
- sends `("progress", row)` after every logged step, then one `("done", summary)` or
  `("error", {code, message})`, over its end of a pipe;
- writes the finished artifact into the job's staging folder; the server publishes it
  with one rename, so a model appears complete or not at all;
- exits when the server goes away (its end of the pipe closes), so a killed server
  leaves no orphan training.
"""
from __future__ import annotations

import base64
import errno
import logging
import math
import os
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MEMORY_WORDS = ("can't allocate memory", "not enough memory", "out of memory", "defaultcpuallocator")
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def main(spec: dict[str, Any], conn: Connection, threads: int, memory_mb: int) -> None:
    """The child's entry point: train the job described by `spec`, report over `conn`."""
    _exit_with_parent(conn)
    if memory_mb > 0 and not _uses_cuda(spec):
        _limit_memory(memory_mb)  # on a GPU the driver maps far more address space than it uses: the
                                  # server then watches the process's resident memory instead
    try:
        import torch

        from synth.allocator import keep_freed_memory

        keep_freed_memory()
        torch.set_num_threads(max(1, threads))
        summary = train(spec, lambda row: conn.send(("progress", row)))
        conn.send(("done", summary))
    except BaseException as e:  # noqa: BLE001 - everything is reported to the server, then we exit
        conn.send(("error", describe(e, memory_mb)))


def train(spec: dict[str, Any], on_progress: Any) -> dict[str, Any]:
    """Read the upload, build and train the model, save the artifact into `spec["staging"]/model`."""
    from synth import store
    from synth.configs import to_dict
    from synth.errors import DataError, Violation
    from synth.io import read_records
    from synth.model import Model
    from synth.run_config import run_config_from_dict
    from synth.schema.loader import from_file_set
    from synth.train import Trainer

    schema = from_file_set(base64.b64decode(spec["file_descriptor_set"]), spec["message"])
    run = run_config_from_dict(spec["run_config"])
    data = Path(spec["data"])
    records = read_records(data, schema.message_class).records
    if not records:
        raise DataError("the data file holds no records", [Violation(data.name, "no records")])
    train_records, test = split(records, int(run.train.seed or 0))
    del records
    model = Model.create(schema, schema.message_name, records=train_records, config=run.model)
    staging = Path(spec["staging"])
    trainer = Trainer(model, run.train, train_records, test_records=test or None, out_dir=staging / "run",
                      progress=False)
    result = trainer.run(on_progress=lambda p: on_progress(floats(p)))
    losses = floats(getattr(result, "losses", {}) or {})
    step = int(getattr(result, "step", 0))
    meta = model.metadata
    meta.setdefault("train_config", to_dict(run.train))
    summary = meta.get("summary") if isinstance(meta.get("summary"), dict) else {}
    summary.setdefault("steps", step)
    summary.setdefault("train_records", len(train_records))
    summary.setdefault("test_records", len(test))
    summary["job_id"] = spec["id"]
    meta["summary"] = summary
    meta["job"] = {"id": spec["id"], "owner": spec.get("owner")}  # who may delete it (not sent on the wire)
    if not meta.get("metrics"):  # the trainer's last evaluation: train/test/generated loss
        meta["metrics"] = {k: v for k, v in losses.items() if k.endswith("_loss")}
    store.save(model, staging / "model")
    return {"step": step, "losses": losses}


def describe(e: BaseException, memory_mb: int) -> dict[str, Any]:
    """What the job's `error` says about an exception of the training process."""
    from synth.errors import SynthError

    if isinstance(e, SynthError):
        body = e.to_dict()
        return {"code": body["code"], "message": body["message"], "details": body["details"]}
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and
                                      any(w in str(e).lower() for w in MEMORY_WORDS)):
        limit = f" of {memory_mb} MB" if memory_mb > 0 else ""
        return {"code": "resource_exhausted",
                "message": f"training ran out of memory (the job memory limit{limit}); use a smaller "
                           "batch_size, latent_dim or data file"}
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        return {"code": "resource_exhausted",
                "message": f"the server could not write the model: {os.strerror(e.errno)}; nothing was published"}
    traceback.print_exc(file=sys.stderr)  # the operator's detail; the client gets a generic message
    return {"code": "internal", "message": "training failed with an internal error; see the server log"}


def split(records: list[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """Hold out 10% (seeded) for evaluation when there are enough records to spare."""
    if len(records) < 50:
        return list(records), []
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(records))
    n_test = max(1, len(records) // 10)
    return [records[i] for i in order[n_test:]], [records[i] for i in order[:n_test]]


def floats(d: dict[str, Any]) -> dict[str, float]:
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


def _uses_cuda(spec: dict[str, Any]) -> bool:
    device = str((spec.get("run_config") or {}).get("train", {}).get("device", "auto"))
    if device == "cpu":
        return False
    import torch

    return device.startswith("cuda") or torch.cuda.is_available()


def resident_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux /proc), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _limit_memory(memory_mb: int) -> None:
    import resource

    limit = memory_mb << 20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _exit_with_parent(conn: Connection) -> None:
    """End this process when the server's end of the pipe closes (the server died or gave up on us).

    The server never sends on the pipe, so `recv` returns only by EOF (or an error)."""
    def watch() -> None:
        try:
            conn.recv()
        except BaseException:  # noqa: BLE001 - EOF, or the pipe broke: either way the server is gone
            pass
        os._exit(3)

    threading.Thread(target=watch, name="synth-job-parent-watch", daemon=True).start()
