"""Packaged benchmark data: the Vermont addresses of Chou & Hathi 2019 (section 2.2).

Why this module exists: users of the project do not have `../shared`, so the
benchmark data ships inside the package (`synth/data/vermont/`, see its README for
provenance, licence and the command that rebuilds the `.gz`). This module is the one
place that knows how to read it, so every test, example and benchmark scores against
the same rows and the same train/test split.

Torch-free on purpose: the evaluation code and the data tooling must import without
the model stack.
"""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from synth.errors import InvalidArgument

VERMONT_ROWS = 33_432
"""Number of data rows in the packaged CSV (the header excluded)."""

# Columns read as floats; every other column stays a string, so POSTCODE keeps its
# leading zero ("05401") and NUMBER keeps forms such as "12A".
_FLOAT_COLUMNS = frozenset({"lat", "lon"})


def vermont_csv_path() -> Path:
    """Path of the packaged, gzip-compressed CSV (`synth/data/vermont/addresses.csv.gz`).

    Located next to this file rather than through `importlib.resources.files(...)`
    traversal of a namespace package, because `synth/data/` has no `__init__.py`; for
    an editable or a wheel install the file sits at the same relative place.
    """
    return Path(__file__).resolve().parent / "data" / "vermont" / "addresses.csv.gz"


def _convert(row: dict[str, str]) -> dict[str, str | float]:
    """One CSV row -> one record: lower-case keys, floats for lat/lon, empties dropped.

    Dropping empty strings mirrors protobuf semantics, where an unset field is absent.
    Whitespace-only values (POSTCODE is " " in 111 rows) are kept verbatim: the data
    is shipped as published, and judging such values is the metrics' job.
    """
    record: dict[str, str | float] = {}
    for column, value in row.items():
        if value == "":
            continue
        key = column.lower()
        record[key] = float(value) if key in _FLOAT_COLUMNS else value
    return record


def vermont_rows() -> list[dict]:
    """All 33,432 rows of the packaged CSV, in file order, as record dicts.

    Keys are the proto field names (`lat`, `lon`, `number`, `street`, `city`,
    `postcode`, ...); `lat`/`lon` are floats, all else strings; empty cells are
    absent (so `unit`, `district` and `region` never appear).
    """
    with gzip.open(vermont_csv_path(), "rt", encoding="utf-8", newline="") as handle:
        return [_convert(row) for row in csv.DictReader(handle)]


def vermont_split(seed: int = 0, test_fraction: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Seeded train/test split of `vermont_rows()`; returns `(train, test)`.

    Rule (documented in `synth/data/vermont/README.md` as well):
    `perm = numpy.random.default_rng(seed).permutation(33432)`; the first
    `n_test = round(test_fraction * 33432)` indices of `perm` are the test rows and
    the rest the training rows; both lists keep the permuted order. `default_rng`
    (PCG64) is stable across platforms and numpy versions for a given seed, so the
    split is deterministic. The default, seed 0 and 10 %, gives 30,089 / 3,343 rows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InvalidArgument(
            f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}; "
            "pass e.g. 0.1 for a 90/10 split"
        )
    rows = vermont_rows()
    perm = np.random.default_rng(seed).permutation(len(rows))
    n_test = round(test_fraction * len(rows))
    test = [rows[i] for i in perm[:n_test]]
    train = [rows[i] for i in perm[n_test:]]
    return train, test
