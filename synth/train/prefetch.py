"""Encoding the next training batches in worker processes (`[train] loader_workers`).

Why: on a GPU the model's step is cheap and the codec is not. On an H200, a step of
16,384 Vermont records took 285 ms, of which 168 ms was `Codec.encode` (Python, per
record) in the training process (docs/benchmarks.md, "Performance on a GPU"). Threads
would not help, since encoding holds the GIL that kernel launches need too; forked
processes do. They inherit the codec and the training messages (nothing is pickled on the
way in but the record indices) and return the encoded Batch (numpy arrays).

The batches are the ones the trainer would draw itself: a shadow of its sampler (numpy
generator, epoch order, position) draws the indices ahead, and the trainer checks each
prefetched batch against its own draw, so training is identical with and without
workers, and checkpoints hold the trainer's real sampler state.
"""
from __future__ import annotations

import copy
import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Callable

import numpy as np

from synth.batch import Batch

# Auto worker count beside a GPU. One worker encodes about 24-31k Vermont records/s on
# the H200 host, and a fp32 step of 65,536 records takes about 0.3 s of GPU time, so about
# ten workers keep the GPU fed; 4 capped training at ~86k records/s (docs/benchmarks.md,
# "Performance on a GPU"). Two cores stay with the trainer (kernel launches) and the OS.
MAX_AUTO_WORKERS = 12


def auto_workers(device_type: str) -> int:
    """Encoding workers when `loader_workers` is -1: none on the CPU (its cores train),
    all usable cores but two (at most MAX_AUTO_WORKERS) beside a GPU."""
    if device_type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(MAX_AUTO_WORKERS, max(0, cores - 2))


# Set in the parent just before the fork; the workers read them (fork start method only)
_CODEC = None
_MESSAGES: list = []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle


def _encode(indices: np.ndarray) -> Batch:
    return _CODEC.encode([_MESSAGES[i] for i in indices])


class BatchPrefetcher:
    """Keeps `depth` upcoming batches in flight in `workers` forked processes."""

    def __init__(self, codec, messages: list, workers: int, depth: int,
                 draw_ahead: Callable[[], np.ndarray]):
        global _CODEC, _MESSAGES
        _CODEC, _MESSAGES = codec, messages
        self.pool = mp.get_context("fork").Pool(workers, initializer=_ignore_sigint)
        self.draw_ahead = draw_ahead
        self.pending: deque[tuple[np.ndarray, mp.pool.AsyncResult]] = deque()
        for _ in range(depth):
            self._submit()

    def _submit(self) -> None:
        indices = self.draw_ahead()
        self.pending.append((indices, self.pool.apply_async(_encode, (indices,))))

    def take(self, expected: np.ndarray) -> Batch:
        """The next batch, which must be the one of `expected` indices (the trainer's own draw)."""
        indices, result = self.pending.popleft()
        if not np.array_equal(indices, expected):
            raise RuntimeError("prefetched batch out of step with the trainer's sampler")
        self._submit()
        return result.get()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class Sampler:
    """The trainer's record order: seeded shuffles, epoch after epoch."""

    def __init__(self, n_records: int, batch_size: int, seed: int):
        self.n, self.batch_size = n_records, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)
        self.pos = 0

    def draw(self) -> np.ndarray:
        parts, need = [], self.batch_size
        while need > 0:
            if self.pos >= len(self.order):
                self.order = self.rng.permutation(self.n)
                self.pos = 0
            take = self.order[self.pos: self.pos + need]
            self.pos += len(take)
            need -= len(take)
            parts.append(take)
        return np.concatenate(parts)

    def shadow(self) -> "Sampler":
        """An independent copy that draws the same indices ahead."""
        return copy.deepcopy(self)
