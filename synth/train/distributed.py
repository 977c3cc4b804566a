"""Data-parallel training on torch.distributed: one process per device (docs/training.md).

Started by torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
(MASTER_ADDR/MASTER_PORT); gloo on CPU, NCCL on CUDA. A run on W ranks is the
single-process run with the same global batch, split W ways:

- Every rank draws the same global batch (same seed, same data order) and keeps its
  positions: position g of step s goes to rank (g + shift) mod W (`Dist.positions`).
  Record g uses beta level (g + s) mod n_levels (trainer.py), so with shift = s and W
  dividing n_levels, rank r always trains the levels l = r (mod W): the beta levels are
  spread across the ranks as Chou & Hathi (2019, section 6) spread them across workers.
  (With n_levels dividing W, the ranks r = l (mod n_levels) share level l.)
- DDP averages the gradients; shares are equal (W divides the batch), so the average of
  the shares' mean losses is the global batch's mean loss. Parameters that a rank did
  not use this step (an absent oneof case, an unset optional field, another rank's beta
  level) are found by `find_unused_parameters`.
- The latent noise of the global batch is drawn on every rank from the shared generator
  and each rank takes its rows. Draws whose count depends on the share (scheduled
  sampling coins, decoding augmented variants) use a per-rank generator, reseeded from
  (seed, step, rank) every step, so no rank-local state needs a checkpoint.
- Running statistics (the ScalarTuple whitening, the latent moving moments) are
  updated from the global batch's moments (all-reduced sums), so every rank holds the
  same values, the values a single process would hold.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from synth.errors import ConfigError, Violation

__all__ = ["Dist", "leave_process", "setup", "teardown"]

WAIT = timedelta(hours=6)  # how long a collective may wait for the other ranks


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank of world (a single process: 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates, checkpoints and writes the artifact."""
        return self.rank == 0

    def device(self, base: torch.device) -> torch.device:
        """One GPU per process on a machine: cuda -> cuda:LOCAL_RANK."""
        if self.active and base.type == "cuda" and base.index is None:
            return torch.device("cuda", self.local_rank)
        return base

    def shift(self, step: int, n_levels: int) -> int:
        if n_levels > 1 and (n_levels % self.world == 0 or self.world % n_levels == 0):
            return step  # ownership follows the beta level
        return 0

    def positions(self, n: int, step: int, n_levels: int, start: int = 0) -> np.ndarray:
        """This rank's global positions among [start, start + n)."""
        g = np.arange(start, start + n)
        return g[(g + self.shift(step, n_levels)) % self.world == self.rank]

    def step_seed(self, seed: int, step: int) -> int:
        """The seed of this rank's own generator at `step`."""
        return int(np.random.SeedSequence([seed, step, self.rank]).generate_state(1)[0])


def from_env() -> Dist:
    return Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> Dist:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError("distributed training needs torchrun's environment (RANK, WORLD_SIZE)",
                          [Violation("distributed", "start it with torchrun --nproc_per_node=N -m synth.train ...")])
    d = from_env()
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.set_device(d.local_rank)
        # rank 0 alone makes the first pass over a streamed file while the others wait
        dist.init_process_group("nccl" if cuda else "gloo", timeout=WAIT)
    return d


def teardown(together: bool) -> None:
    """Leave the process group. After a run that ended normally the ranks leave together:
    a rank that destroys its gloo pairs while another still holds them (rank 0 tuning and
    saving) can abort the other's exit (SIGABRT). After an error no rank waits, since the
    others may never reach the barrier (torchrun stops them)."""
    if dist.is_initialized():
        try:
            if together:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def leave_process(code: int) -> NoReturn:
    """End a worker whose run ended normally, without the interpreter's own teardown.

    After `teardown`, gloo's threads can still abort the interpreter's exit ("terminate
    called without an active exception", SIGABRT: one run in 35 of two CPU processes
    here), which torchrun reports as a failed run although the artifact was written. Every
    file of the run is closed by then, so the process flushes its streams and exits."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def check_config(cfg: Any, d: Dist) -> None:
    """Equal shares: W must divide the batch and the augmented latents."""
    problems = []
    if cfg.batch_size % d.world:
        problems.append(Violation("batch_size", f"must be a multiple of the number of processes ({d.world})"))
    if cfg.augment.n_augmented % d.world:
        problems.append(Violation("augment.n_augmented", f"must be a multiple of the number of processes ({d.world})"))
    if problems:
        raise ConfigError("invalid config for distributed training", problems)


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    # Buffers are kept equal by hand (sync_whitening, sync_latent_stats): DDP's default
    # broadcast before every forward would overwrite them with rank 0's. (Both spellings
    # still copy rank 0's parameters and buffers once, at construction.)
    newer = "forward_sync_buffers" in inspect.signature(DDP).parameters
    no_sync = {"forward_sync_buffers": False} if newer else {"broadcast_buffers": False}
    return DDP(module, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=True, **no_sync)


# -- collectives ------------------------------------------------------------------------

def all_mean(values: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The mean over ranks of scalar tensors (logged values)."""
    keys = sorted(values)
    flat = torch.stack([values[k].detach().float().to(device).reshape(()) for k in keys])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return dict(zip(keys, flat.unbind()))


def all_mean_float(value: float, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def agree(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's values (stop decisions, its clock) on every rank."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return t.tolist()


def broadcast_object(obj: Any, d: Dist) -> Any:
    """Rank 0's object on every rank (torch pickles it between the processes of one run)."""
    box = [obj if d.is_main else None]
    dist.broadcast_object_list(box, 0)
    return box[0]


def gather_rows(local: torch.Tensor, n: int, step: int, n_levels: int, d: Dist, start: int = 0) -> torch.Tensor:
    """The global (n, ...) tensor from every rank's rows at its positions in [start, start + n)."""
    parts = [torch.empty_like(local) for _ in range(d.world)]
    dist.all_gather(parts, local.contiguous())
    out = local.new_empty((n, *local.shape[1:]))
    for r, part in enumerate(parts):
        out[Dist(r, d.world).positions(n, step, n_levels, start) - start] = part
    return out


def share_directory(path: Path, d: Dist) -> Path:
    """Rank 0's copy of a directory (the checkpoint) on every rank: machines need not share a disk."""
    files = None
    if d.is_main:
        files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    files = broadcast_object(files, d)
    if d.is_main:
        return path
    local = Path(tempfile.mkdtemp(prefix="synth-ckpt-")) / path.name
    for rel, data in files.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    return local


def remove_shared(local: Path, original: Path) -> None:
    if local != original:
        shutil.rmtree(local.parent, ignore_errors=True)


# -- running statistics from the global batch -------------------------------------------

def _scalar_nodes(vae: Any) -> list:
    from synth.kinds import kind_of
    from synth.kinds.number import ScalarTupleKind
    from synth.plan import walk

    return [n for n in walk(vae.plan) if isinstance(kind_of(n), ScalarTupleKind)]


@torch.no_grad()
def sync_whitening(vae: Any, batch: Any) -> None:
    """Update every ScalarTuple's whitening statistics from the global batch, before the forward.

    A single process updates them inside the forward from the whole batch (real records
    only); here each rank sends the count, sum and cross products of its real values
    (centred on the current mean, against cancellation), the sums are all-reduced, and
    every rank applies the same step. The forward then leaves them alone.
    """
    nodes = _scalar_nodes(vae)
    if not nodes:
        return
    pieces, shapes = [], []
    for node in nodes:
        m = vae.module_for(node)
        m.stats_from_outside = True
        x = torch.zeros(0, m.k, dtype=torch.float64, device=vae.device)
        data = batch.nodes.get(node.path)
        if data is not None and data.n:
            values = torch.as_tensor(np.asarray(data.values, dtype=np.float64), device=vae.device).reshape(data.n, m.k)
            real = torch.as_tensor(batch.real_rows(np.asarray(data.root)), device=vae.device)
            x = m.to_scores(values[real]) - m.mean  # the moments are the whitened space's
        pieces += [torch.tensor([float(len(x))], dtype=torch.float64, device=vae.device), x.sum(0),
                   (x.T @ x).reshape(-1)]
        shapes.append((m, m.mean.clone()))
    flat = torch.cat(pieces)
    dist.all_reduce(flat)
    at = 0
    for m, centre in shapes:
        k = m.k
        n, s, xx = flat[at], flat[at + 1: at + 1 + k], flat[at + 1 + k: at + 1 + k + k * k].reshape(k, k)
        at += 1 + k + k * k
        if n < 2:
            continue
        dm = s / n
        m.apply_stats(centre + dm, (xx - n * torch.outer(dm, dm)) / (n - 1))


@torch.no_grad()
def sync_latent_stats(vae: Any, z: torch.Tensor) -> None:
    """The latent moving moments from the global batch's sampled latents."""
    z = z.detach().to(torch.float64)
    flat = torch.cat([torch.tensor([float(len(z))], dtype=torch.float64, device=z.device), z.sum(0),
                      (z.T @ z).reshape(-1)])
    dist.all_reduce(flat)
    n, dim = flat[0], z.shape[1]
    vae.apply_latent_moments(flat[1: 1 + dim] / n, flat[1 + dim:].reshape(dim, dim) / n)
