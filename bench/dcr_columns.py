"""The DCR share by column: which fields make generated rows sit closer to training rows.

Scores the rows a `bench/quality.py` run generated for protosynth (runs/quality/DATASET/
protosynth/generated.jsonl, against that run's train and test splits) with `dcr_share` and
`dcr_floor` (synth/eval/privacy.py) on all leaf columns, on each column alone, and with each
column left out; then, per column, how much more often each row's nearest training row
agrees with it there than its nearest held-out row does (`neighbour_agreement`), for the
generated rows and for half the test rows against the other half. Tables to the terminal;
docs/benchmarks.md ("The default recipe", items 15 and 26) quotes them.

    python bench/dcr_columns.py vermont
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synth import store  # noqa: E402
from synth.eval.features import LeafTable, flatten  # noqa: E402
from synth.eval.privacy import dcr_floor, dcr_share, neighbour_agreement  # noqa: E402

SEED = 20260501  # the quality benchmark's evaluation seed


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f]


def keep(table: LeafTable, names: list[str]) -> LeafTable:
    return LeafTable(tuple(c for c in table.columns if c.name in names), table.n_rows)


def quality_run(doc: str, argv: list[str] | None) -> tuple[str, Any, list[dict], list[dict], list[dict]]:
    """The command line's quality run: (dataset, its protosynth model, training, test and
    generated records)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a dataset of bench/quality.py with a protosynth run (vermont, flights, ...)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/quality")
    a = ap.parse_args(argv)
    root = a.runs / a.dataset
    model = store.load(root / "protosynth/model")
    return (a.dataset, model, *(read(root / f) for f in ("train.jsonl", "test.jsonl", "protosynth/generated.jsonl")))


def main(argv: list[str] | None = None) -> int:
    _, model, *records = quality_run(__doc__, argv)
    train, test, generated = (flatten(model.tree, r) for r in records)
    names = train.names
    print("| columns | generated | floor (held-out rows) | generated at distance 0 | held-out at distance 0 |")
    print("|---|---|---|---|---|")
    subsets = [("all", names)] + [(f"only {n}", [n]) for n in names] + \
              [(f"without {n}", [x for x in names if x != n]) for n in names]
    for label, cols in subsets:
        g = dcr_share(keep(generated, cols), keep(train, cols), keep(test, cols), seed=SEED)
        f = dcr_floor(keep(train, cols), keep(test, cols), seed=SEED)
        print(f"| {label} | {g['share']:.3f} | {f['share']:.3f} | {g['zero_share']:.3f} | {f['zero_share']:.3f} |")
    half = test.n_rows // 2
    perm = np.random.default_rng(SEED).permutation(test.n_rows)
    gen = neighbour_agreement(generated, train, test.take(perm[half:]), seed=SEED)
    real = neighbour_agreement(test.take(perm[:half]), train, test.take(perm[half:]), seed=SEED)
    print("\n| column | nearest training row agrees more than nearest held-out row: generated | held-out rows |")
    print("|---|---|---|")
    for name, v in gen.items():
        print(f"| {name} | {v:+.3f} | {real[name]:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
