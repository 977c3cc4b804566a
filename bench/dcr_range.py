"""How far the DCR share can move: reference generators scored like protosynth's rows.

The quality benchmark's privacy target is a DCR share (synth/eval/privacy.py) no higher
than the floor, the share of held-out real rows. This script puts protosynth's figure
between generators whose behaviour is known, on the same splits and evaluation seed as
`bench/quality.py` (runs/quality/DATASET/, written by it):

- **held-out rows** (the floor), scored with several seeds, for its noise;
- **training columns shuffled**: every column of the training rows permuted on its own,
  so every marginal is the training one but no row is copied;
- **training rows**: a generator that replays its training rows verbatim;
- **protosynth**: the rows the quality run generated.

And for each, the **key copies**: the share of rows whose non-number leaf values (every
category, string, count and presence column) all equal those of some training row, the
coordinates or measurements aside. Real held-out rows show how often new records repeat
the key of an old one.

    python bench/dcr_range.py vermont
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dcr_columns import quality_run  # noqa: E402
from synth.eval.features import NUMBER, LeafTable, flatten  # noqa: E402
from synth.eval.privacy import dcr_floor, dcr_share  # noqa: E402

SEED = 20260501  # the quality benchmark's evaluation seed
FLOOR_SEEDS = 10


def key_copy_share(rows: LeafTable, train: LeafTable) -> float:
    """Share of `rows` whose non-number leaf tuple occurs among the training rows."""
    def keys(t: LeafTable) -> list[tuple]:
        cols = [c.values.tolist() for c in t.columns if c.kind != NUMBER]
        return list(zip(*cols)) if cols else [() for _ in range(t.n_rows)]
    seen = set(keys(train))
    return float(np.mean([k in seen for k in keys(rows)])) if rows.n_rows else float("nan")


def shuffled_columns(records: list[dict], n: int, seed: int) -> list[dict]:
    """n records whose top-level fields are drawn from different training records."""
    rng = random.Random(seed)
    fields = sorted({k for r in records for k in r})
    picks = {f: [rng.randrange(len(records)) for _ in range(n)] for f in fields}
    return [{f: records[picks[f][i]][f] for f in fields if f in records[picks[f][i]]} for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    dataset, tree, train_records, test_records, generated = quality_run(__doc__, argv)
    train, test = flatten(tree, train_records), flatten(tree, test_records)
    n = len(generated)
    floors = [dcr_floor(train, test, seed=SEED + i)["share"] for i in range(FLOOR_SEEDS)]
    print(f"{dataset}: {train.n_rows} training rows, {test.n_rows} test rows, {n} generated rows; "
          f"floor over {FLOOR_SEEDS} evaluation seeds: {np.mean(floors):.3f} +- {np.std(floors):.3f} "
          f"(range {min(floors):.3f} - {max(floors):.3f})")
    print("| rows | DCR share | key copies |")
    print("|---|---|---|")
    print(f"| held-out rows (the floor, seed {SEED}) | {dcr_floor(train, test, seed=SEED)['share']:.3f} | "
          f"{key_copy_share(test, train):.3f} |")
    cases = (("training columns shuffled", flatten(tree, shuffled_columns(train_records, n, SEED))),
             ("training rows", flatten(tree, random.Random(SEED).sample(train_records, min(n, len(train_records))))),
             ("protosynth", flatten(tree, generated)))
    for label, rows in cases:
        print(f"| {label} | {dcr_share(rows, train, test, seed=SEED)['share']:.3f} | {key_copy_share(rows, train):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
