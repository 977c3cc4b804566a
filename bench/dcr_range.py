"""How far the DCR share can move: reference generators scored like protosynth's rows.

The quality benchmark's privacy target is a DCR share (synth/eval/privacy.py) no higher
than the floor, the share of held-out real rows. This script puts protosynth's figure
between generators whose behaviour is known, on the same splits and evaluation seed as
`bench/quality.py` (runs/quality/DATASET/, written by it):

- **held-out rows** (the floor), scored with several evaluation seeds, for its noise;
- **leaf columns shuffled**: as many training rows as the test split, every flattened
  leaf column permuted on its own, so every marginal value is a training one but no
  row, sub-message or list is copied (several shuffle seeds);
- **training rows**: a generator that replays its training rows verbatim;
- **protosynth**: the rows the quality run generated, and fresh samples of its model
  with other sampling seeds, each scored at the same evaluation seeds as the floor, so
  that the excess over the floor is a paired difference (same reference subsamples).

And for each, the **near copies** (the share of rows nearer to a training row than 95% of
held-out rows are, mean over the seeds; the tail check mostlyai-qa and SDMetrics make) and
the **key copies**: the share of rows whose non-number leaf values (every
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
from synth.eval.features import NUMBER, Column, LeafTable, flatten  # noqa: E402
from synth.eval.privacy import dcr_floor, dcr_paired  # noqa: E402
from synth.records import to_dict  # noqa: E402

SEED = 20260501  # the quality benchmark's evaluation seed
FLOOR_SEEDS = 10
SHUFFLE_SEEDS = 5
SAMPLE_SEEDS = 5  # fresh sample sets of the quality run's model (seeds 1..5; the run used 0)


def key_copy_share(rows: LeafTable, train: LeafTable) -> float:
    """Share of `rows` whose non-number leaf tuple occurs among the training rows."""
    def keys(t: LeafTable) -> list[tuple]:
        cols = [c.values.tolist() for c in t.columns if c.kind != NUMBER]
        return list(zip(*cols)) if cols else [() for _ in range(t.n_rows)]
    seen = set(keys(train))
    return float(np.mean([k in seen for k in keys(rows)])) if rows.n_rows else float("nan")


def shuffled_leaves(train: LeafTable, n: int, seed: int) -> LeafTable:
    """n training rows with every leaf column permuted on its own (nothing joint kept)."""
    rng = np.random.default_rng(seed)
    rows = train.take(np.sort(rng.choice(train.n_rows, n, replace=False)))
    return LeafTable(tuple(Column(c.name, c.kind, c.values[rng.permutation(n)]) for c in rows.columns), n)


def paired(tables: list[LeafTable], train: LeafTable, test: LeafTable,
           floors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Row sets scored at the floor's seeds (`dcr_paired`): their shares (tables, seeds), their
    excess over the floor per seed (averaged over the tables), and their mean near-copy share."""
    scored = [dcr_paired(t, train, test, seed=SEED, seeds=FLOOR_SEEDS, floors=floors) for t in tables]
    s = np.array([r["shares"] for r in scored])
    return s, (s - floors).mean(axis=0), float(np.mean([r["below_holdout_q05_mean"] for r in scored]))


def floor_over_seeds(train: LeafTable, test: LeafTable) -> tuple[np.ndarray, float]:
    """The floor's share at each evaluation seed, and its mean near-copy share."""
    rows = [dcr_floor(train, test, seed=SEED + i) for i in range(FLOOR_SEEDS)]
    return np.array([r["share"] for r in rows]), float(np.mean([r["below_holdout_q05"] for r in rows]))


def spread(x: np.ndarray) -> str:
    return f"{np.mean(x):.3f} +- {np.std(x):.3f}"


def main(argv: list[str] | None = None) -> int:
    dataset, model, train_records, test_records, generated = quality_run(__doc__, argv)
    tree = model.tree
    train, test = flatten(tree, train_records), flatten(tree, test_records)
    n = len(generated)
    floors, floor_near = floor_over_seeds(train, test)
    print(f"{dataset}: {train.n_rows} training rows, {test.n_rows} test rows, {n} generated rows; "
          f"floor over {FLOOR_SEEDS} evaluation seeds: {spread(floors)} "
          f"(range {floors.min():.3f} - {floors.max():.3f})")
    print(f"| rows | DCR share at seed {SEED} | over {FLOOR_SEEDS} evaluation seeds | minus the floor, "
          "paired by seed (mean +- sd over seeds) | near copies | key copies |")
    print("|---|---|---|---|---|---|")
    print(f"| held-out rows (the floor) | {floors[0]:.3f} | {spread(floors)} | - | {floor_near:.3f} | "
          f"{key_copy_share(test, train):.3f} |")

    def row(label: str, tables: list[LeafTable]) -> None:
        s, excess, near = paired(tables, train, test, floors)
        copies = np.mean([key_copy_share(t, train) for t in tables])
        print(f"| {label} | {s[0, 0]:.3f} | {spread(s.mean(axis=0))} | {spread(excess)} | {near:.3f} | "
              f"{copies:.3f} |")

    row(f"leaf columns shuffled ({SHUFFLE_SEEDS} shuffles)",
        [shuffled_leaves(train, n, SEED + i) for i in range(SHUFFLE_SEEDS)])
    row("training rows replayed", [flatten(tree, random.Random(SEED).sample(train_records, min(n, len(train_records))))])
    row("protosynth (the quality run's rows)", [flatten(tree, generated)])
    row(f"protosynth, {SAMPLE_SEEDS} fresh sample sets",
        [flatten(tree, [to_dict(r) for r in model.sample(n, seed=s)]) for s in range(1, SAMPLE_SEEDS + 1)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
