"""The validation split: a seeded part of the training records, held out of training.

Every automatic choice of a run is made on it, and on nothing else: early stopping
(`early_stopping_patience`) and, after training, the prior size and the generation
temperatures (synth/train/tune.py). The test data (`--test-data`) is only logged; the
benchmark's evaluation never sees the validation records' choices being made. The
split is a function of the records' order, `validation_seed` and the sizes, so a
resumed or repeated run takes the same split; its description goes into the
artifact's manifest (`metadata.validation`). See docs/training.md.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["split_validation", "validation_size"]


def validation_size(n: int, fraction: float, max_records: int, min_records: int) -> int:
    """How many of `n` records to hold out: round(fraction x n), at least `min_records`
    and at most `max_records`; 0 when fraction is 0 or when that would leave fewer
    records to train on than to validate with."""
    if fraction <= 0 or n <= 0:
        return 0
    k = min(max_records, max(min_records, int(round(fraction * n))))
    return k if 0 < k <= n - k else 0


def split_validation(records: Sequence[Any], cfg: Any) -> tuple[list, list, dict[str, Any]]:
    """(train, validation, info) from `records` by `cfg` (a TrainConfig).

    info: {source, seed, fraction, train_records, validation_records, indices_sha256}
    (the hash pins the exact rows held out, so the manifest says which they were).
    """
    import hashlib

    records = list(records)
    n = len(records)
    k = validation_size(n, cfg.validation_fraction, cfg.validation_max_records, cfg.validation_min_records)
    info: dict[str, Any] = {"source": "split", "seed": cfg.validation_seed, "fraction": cfg.validation_fraction,
                            "max_records": cfg.validation_max_records, "min_records": cfg.validation_min_records}
    if k == 0:
        info.update(train_records=n, validation_records=0,
                    note="no validation split (validation_fraction is 0, or too few records)")
        return records, [], info
    perm = np.random.default_rng(cfg.validation_seed).permutation(n)
    held = np.sort(perm[:k])
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    train = [r for r, m in zip(records, mask) if not m]
    val = [records[i] for i in held]
    info.update(train_records=len(train), validation_records=len(val),
                indices_sha256=hashlib.sha256(held.astype(np.int64).tobytes()).hexdigest())
    return train, val, info


def explicit_validation(n_train: int, n_val: int) -> dict[str, Any]:
    """The manifest description of a validation set given explicitly (`--validation-data`)."""
    return {"source": "given", "train_records": n_train, "validation_records": n_val}
