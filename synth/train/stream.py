"""Training records streamed from a file larger than memory (docs/training.md, "Input larger than memory").

`StreamingSource` reads a data file (CSV, JSON Lines or length-delimited protobuf,
gzip or not: synth.io) record by record and never holds it:

1. `scan()`, a first pass, holds the validation split out by a hash of each record's
   index, computes the compiler's fit statistics (`synth.fitstats.fit_stats`, fed the
   training records as a stream) and keeps a seeded sample of at most
   `SAMPLE_RECORDS` training records (the trainer evaluates on its head and the tuning
   after training fits the prior to it).
2. `take(n)` then serves training records epoch after epoch, re-reading the file each
   epoch through a shuffle buffer of `[train] shuffle_buffer` records.

The validation split: record i (its index among the file's good records) has the hash
h(i) = blake2b(validation_seed, i) in [0, 1). Candidates are the records with
h(i) < validation_fraction; the validation set is the `validation_max_records`
candidates of smallest hash, spread over the whole file, a function of the indices and
the seed alone. As in `synth.train.validation`, there is no split when that leaves
fewer than `validation_min_records`, or fewer records to train on than to validate with.

Data-parallel runs (synth/train/distributed.py): rank 0 scans and shares the result;
rank r trains on the records with i mod W = r, through its own shuffle buffer. The
position in the stream is a function of the step (step x the rank's share of the
batch, modulo its number of records), so a resumed run needs no stream state: with the
same number of processes it continues exactly, with another it continues at the same
point of the epoch.
"""
from __future__ import annotations

import hashlib
import heapq
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed
from google.protobuf.message import Message

from synth.errors import DataError, Violation
from synth.fitstats import FitStats, fit_stats
from synth.io import ReadResult, iter_records
from synth.train.distributed import Dist, broadcast_object

SAMPLE_RECORDS = 20_000  # training records kept in memory for evaluation and the prior fit


def index_hash(seed: int, i: int) -> float:
    """A uniform number in [0, 1) from (seed, record index), stable across platforms."""
    digest = hashlib.blake2b(struct.pack("<qq", seed, i), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


class StreamingSource:
    """A training file read in passes; see the module docstring."""

    def __init__(self, path: str | Path, message_class: Any, cfg: Any, fmt: str | None = None,
                 skip_bad: bool = False, dist: Dist = Dist(), hold_out: bool = True,
                 sample_records: int = SAMPLE_RECORDS):
        self.path, self.cls, self.cfg, self.fmt, self.skip_bad = Path(path), message_class, cfg, fmt, skip_bad
        self.dist, self.hold_out, self.sample_records = dist, hold_out, sample_records
        self.report = ReadResult(records=[])  # bad records skipped by the first pass
        self.cutoff = -1.0  # records with h(i) <= cutoff are the validation split
        self.sample: list[Message] = []
        self.validation: list[Message] = []
        self.info: dict[str, Any] = {}
        self.shard_sizes: list[int] = []
        self.n_train = 0
        self.epoch, self._it = 0, None

    # -- the first pass -------------------------------------------------------------------
    def scan(self) -> FitStats:
        """Validation split, fit statistics and sample in one pass: rank 0's, shared with the
        other ranks (without a process group, as in a test, each rank makes its own)."""
        shared = self.dist.active and torch.distributed.is_initialized()
        result = self._scan() if self.dist.is_main or not shared else None
        if shared:
            result = self._share(result)
        (stats, self.cutoff, self.sample, self.validation, self.info, self.shard_sizes,
         skipped) = result
        self.report.skipped = skipped
        self.n_train = sum(self.shard_sizes)
        if not self.shard_sizes[self.dist.rank]:
            raise DataError(f"{self.path.name}: no training records for process {self.dist.rank} "
                            f"of {self.dist.world}", [Violation(self.path.name, "fewer records than processes")])
        return stats

    def _share(self, result: tuple | None) -> tuple:
        """Rank 0's scan on every rank; records travel as bytes (generated classes do not pickle)."""
        if result is not None:
            stats, cutoff, sample, validation, *rest = result
            result = (stats, cutoff, [m.SerializeToString() for m in sample],
                      [m.SerializeToString() for m in validation], *rest)
        stats, cutoff, sample, validation, *rest = broadcast_object(result, self.dist)
        return (stats, cutoff, [self.cls.FromString(b) for b in sample],
                [self.cls.FromString(b) for b in validation], *rest)

    def _scan(self) -> tuple:
        cfg, world = self.cfg, self.dist.world
        cap = cfg.validation_max_records if self.hold_out and cfg.validation_fraction > 0 else 0
        heap: list[tuple[float, int, Message]] = []  # (-h, i, record): the smallest hashes
        shard_sizes = [0] * world
        rng = np.random.default_rng(cfg.seed)
        sample: list[Message] = []
        seen = [0]

        def keep(i: int, msg: Message) -> Message:
            shard_sizes[i % world] += 1
            t = seen[0]
            seen[0] += 1
            if t < self.sample_records:  # reservoir sampling (Algorithm R)
                sample.append(msg)
            else:
                j = int(rng.integers(t + 1))
                if j < self.sample_records:
                    sample[j] = msg
            return msg

        def training() -> Iterator[Message]:
            n = 0
            for i, msg in enumerate(iter_records(self.path, self.cls, self.fmt, self.skip_bad, self.report)):
                n = i + 1
                h = index_hash(cfg.validation_seed, i) if cap else 1.0
                if h < cfg.validation_fraction:
                    item = (-h, i, msg)
                    if len(heap) < cap:
                        heapq.heappush(heap, item)
                        continue
                    item = heapq.heappushpop(heap, item)  # the largest hash leaves (maybe this one)
                    yield keep(item[1], item[2])
                    continue
                yield keep(i, msg)
            k = len(heap)
            if k and (k < cfg.validation_min_records or k > n - k):  # too few to split: train on all
                for _, i, msg in sorted(heap, key=lambda e: e[1]):
                    yield keep(i, msg)
                heap.clear()

        stats = fit_stats(training())
        held = sorted(heap, key=lambda e: e[1])
        cutoff = max((-e[0] for e in held), default=-1.0)
        indices = np.asarray([e[1] for e in held], dtype=np.int64)
        info: dict[str, Any] = {
            "source": "hash", "seed": cfg.validation_seed, "fraction": cfg.validation_fraction,
            "max_records": cfg.validation_max_records, "min_records": cfg.validation_min_records,
            "train_records": sum(shard_sizes), "validation_records": len(held)}
        if held:
            info["indices_sha256"] = hashlib.sha256(indices.tobytes()).hexdigest()
        elif self.hold_out:
            info["note"] = "no validation split (validation_fraction is 0, or too few records)"
        return (stats, cutoff, sample, [e[2] for e in held], info, shard_sizes, self.report.skipped)

    # -- the training passes ----------------------------------------------------------------
    def _epoch(self, epoch: int) -> Iterator[Message]:
        """This rank's training records of one pass, through the shuffle buffer."""
        d, size = self.dist, max(1, self.cfg.shuffle_buffer)
        rng = np.random.default_rng([self.cfg.seed, epoch, d.rank, d.world])
        buf: list[Message] = []
        for i, msg in enumerate(iter_records(self.path, self.cls, self.fmt, self.skip_bad)):
            if i % d.world != d.rank or (self.cutoff >= 0 and index_hash(self.cfg.validation_seed, i) <= self.cutoff):
                continue
            if len(buf) < size:
                buf.append(msg)
                continue
            j = int(rng.integers(size))
            out, buf[j] = buf[j], msg
            yield out
        order = rng.permutation(len(buf))
        for j in order:
            yield buf[j]

    def take(self, n: int) -> list[Message]:
        """The next `n` training records of this rank, epoch after epoch."""
        out: list[Message] = []
        while len(out) < n:
            if self._it is None:
                self._it = self._epoch(self.epoch)
            msg = next(self._it, None)
            if msg is None:
                self.epoch, self._it = self.epoch + 1, None
                continue
            out.append(msg)
        return out

    def seek(self, consumed: int) -> None:
        """Continue after `consumed` records of this rank (a resumed run: step x share)."""
        size = self.shard_sizes[self.dist.rank]
        self.epoch, skip = divmod(consumed, size)
        self._it = self._epoch(self.epoch)
        for _ in range(skip):
            next(self._it)
