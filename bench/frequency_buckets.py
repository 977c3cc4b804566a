"""How often generated rows use values by how often training saw them (Good-Turing buckets).

For one field of a `bench/quality.py` run (runs/quality/DATASET/, written by it), the
training count of each row's value, grouped in buckets (0 = never seen in training, 1, 2,
3, 4-5, 6-10, 11-30, more), and the share of training, test and generated rows in each.
Fresh rows use values seen c times less often than training rows do (c/N over-estimates
a seen value's frequency, Good-Turing), and values never seen about as often as training
holds values seen once. A generator that follows its training frequencies shows the
training column instead of the test one. docs/benchmarks.md ("The default recipe", item 26)
quotes it.

    python bench/frequency_buckets.py vermont street
    python bench/frequency_buckets.py flights plane.model    # a dotted path; a list's first element
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 30), (31, None))


def value_at(record: Any, path: str) -> Any:
    """The value at a dotted path; a repeated field's first element; None when absent."""
    for key in path.split("."):
        if isinstance(record, list):
            record = record[0] if record else None
        record = record.get(key) if isinstance(record, dict) else None
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("field", help="a dotted path in the records (street, plane.model, flights.dest)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/quality")
    a = ap.parse_args(argv)
    root = a.runs / a.dataset
    values = {}
    for name, rel in (("training", "train.jsonl"), ("test", "test.jsonl"), ("generated", "protosynth/generated.jsonl")):
        with (root / rel).open() as f:
            values[name] = [value_at(json.loads(line), a.field) for line in f]
    counts = collections.Counter(values["training"])
    print(f"{a.dataset} {a.field}: {len(counts)} distinct training values; share of rows by the training count "
          "of their value")
    print("| training count | training values | training rows | test rows | generated rows |")
    print("|---|---|---|---|---|")
    for lo, hi in BUCKETS:
        inside = (lambda c: c >= lo) if hi is None else (lambda c: lo <= c <= hi)
        share = {k: sum(inside(counts.get(v, 0)) for v in vs) / max(1, len(vs)) for k, vs in values.items()}
        label = f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}")
        print(f"| {label} | {sum(inside(c) for c in counts.values())} | {share['training']:.3f} | "
              f"{share['test']:.3f} | {share['generated']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
