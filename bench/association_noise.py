"""How much of the association difference is noise: a bootstrap over the quality benchmark's saved rows.

`bench/quality.py` scores each system's generated rows against the test split with one
number per dataset, the mean |Cramer's V difference| over column pairs (synth/eval/
fidelity.py). On a small test split that number moves a lot with the rows that happen to be
in it: penguins has 68 test rows, and held-out real rows score worse there than
GaussianCopula does. This script resamples the test rows and each system's generated rows
with replacement (`--rounds` times, the same test resample for every system in a round, so
the systems are compared on paired draws) and prints, per dataset and system:

* the figure on the saved rows (what the table shows) and its bootstrap standard error;
* protosynth minus the best peer on the table, with a 95% percentile interval of that
  difference over the rounds: an interval that holds 0 means the table cannot tell them apart.

Binnings are fitted once on the whole test split, as `compare_records` fits them.

    python bench/association_noise.py                       # every dataset; writes the doc block
    python bench/association_noise.py --datasets penguins --rounds 500 --no-doc
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import cpu_name, replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.binning import fit_binning  # noqa: E402
from synth.eval.features import LeafTable, flatten  # noqa: E402
from synth.eval.fidelity import association  # noqa: E402

SYSTEMS = ("protosynth", "gaussian_copula", "tvae", "ctgan", "mostlyai")


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f]


def mean_abs_diff(real: LeafTable, generated: LeafTable, binnings: list) -> float:
    return association(real, generated, binnings)["mean_abs_diff"]


def dataset_rows(root: Path, rounds: int, seed: int) -> list[str]:
    tree = store.load(root / "protosynth/model").tree
    real = flatten(tree, read(root / "test.jsonl"))
    binnings = [fit_binning(c) for c in real.columns]
    systems = {s: flatten(tree, read(root / s / "generated.jsonl")) for s in SYSTEMS
               if (root / s / "generated.jsonl").exists()}
    rng = np.random.default_rng(seed)
    saved = {s: mean_abs_diff(real, g, binnings) for s, g in systems.items()}
    draws: dict[str, list[float]] = {s: [] for s in systems}
    for _ in range(rounds):
        r = real.take(rng.integers(0, real.n_rows, real.n_rows))
        for s, g in systems.items():
            draws[s].append(mean_abs_diff(r, g.take(rng.integers(0, g.n_rows, g.n_rows)), binnings))
    peers = [s for s in systems if s != "protosynth"]
    best = min(peers, key=saved.get) if peers else None
    lines = []
    for s in systems:
        d = np.asarray(draws[s])
        gap = ""
        if s == "protosynth" and best is not None:
            diff = d - np.asarray(draws[best])
            lo, hi = np.percentile(diff, [2.5, 97.5])
            gap = f"{saved[s] - saved[best]:+.3f} vs {best} (95%: {lo:+.3f} .. {hi:+.3f})"
        lines.append(f"| {root.name} | {s} | {real.n_rows} / {systems[s].n_rows} | {saved[s]:.3f} | "
                     f"{d.std(ddof=1):.3f} | {gap} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/quality")
    ap.add_argument("--datasets", default="vermont,flights,penguins")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    a = ap.parse_args(argv)
    command = "python bench/association_noise.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{command.strip()}`  ",
             f"Hardware: {cpu_name()}; {a.rounds} bootstrap rounds, seed {a.seed}; the rows of the quality "
             "table above (runs/quality/<dataset>/<system>/generated.jsonl against the test split).", "",
             "| dataset | system | test / generated rows | association diff | bootstrap SE | protosynth - best peer |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in a.datasets.split(","):
        root = a.runs / name
        if not (root / "protosynth/model").exists():
            rows = [f"| {name} | (no saved protosynth run under {root}) | | | | |"]
        else:
            rows = dataset_rows(root, a.rounds, a.seed)
        print("\n".join(rows), flush=True)
        lines += rows
    if not a.no_doc:
        replace_block("association_noise", "Noise in the association difference", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
