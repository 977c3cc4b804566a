"""Conditional sampling (`where`): the figures per condition, written to docs/benchmarks.md.

    python bench/conditional.py [--model vermont-address] [--n 500]

Conditions: a postcode (several towns), a town, a street, one coordinate alone (a
member of the (lat, lon) ScalarTuple), and values the model never saw or an empty one
(they go through a categorical leaf's "other" escape). For each, records are sampled
with the condition (seed 0), their coordinates are scored against their postcode's
training statistics (BENCHMARK.md metric; an unknown postcode scores 0), and the
(street, postcode) pairs found in the training data are counted. Unconditioned samples
of the same model are scored alongside.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.pvalue import fit_group_stats, pvalues  # noqa: E402
from synth.eval.report import as_dicts  # noqa: E402
from vermont import benchmark_data, hardware  # noqa: E402

CONDITIONS: list[dict[str, Any]] = [
    {"postcode": "05401"},  # Burlington
    {"postcode": "05602"},  # Montpelier
    {"postcode": "05301"},  # Brattleboro
    {"postcode": "05701"},  # Rutland
    {"postcode": "05819"},  # St Johnsbury
    {"city": "BURLINGTON"},
    {"street": "MAIN ST"},
    {"lat": 44.48},  # Burlington's latitude, lon left free
    {"lon": -72.58},  # Montpelier's longitude, lat left free
    {"city": "NEW HAVEN JUNCTION"},  # a town name never seen in training
    {"city": ""},  # empty
    {"postcode": "05999"},  # a postcode never seen (it scores 0: no statistics)
]


def held(records: list[dict], where: dict[str, Any]) -> float:
    return float(np.mean([all(r.get(k, "" if isinstance(v, str) else 0.0) == v for k, v in where.items())
                          for r in records]))


def row(label: str, records: list[dict], stats, pairs: set, dt: float, where: dict | None) -> str:
    rep = pvalues(records, stats)
    below = float(np.mean(rep.values < 0.05))
    in_train = np.mean([(r.get("street", ""), r.get("postcode", "")) in pairs for r in records])
    top = lambda f: ", ".join(v or '""' for v, _ in Counter(r.get(f, "") for r in records).most_common(2))  # noqa: E731
    kept = f"{held(records, where):.0%}" if where else "-"
    return (f"| {label} | {rep.n} | {rep.mean:.3f} | {rep.median:.3f} | {rep.std:.3f} | {below:.3f} | "
            f"{rep.unknown} | {in_train:.3f} | {kept} | {top('postcode')} | {top('city')} | {dt:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vermont-address")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    model = store.load(a.model)
    train, test = benchmark_data()
    stats = fit_group_stats(train, "postcode", ["lat", "lon"])
    pairs = {(r.get("street", ""), r.get("postcode", "")) for r in train}
    lines = ["| where | n | p mean | p median | p std | P(p<0.05) | unknown zip | (street, postcode) in training | "
             "condition held | top postcodes | top cities | seconds |", "|" + "---|" * 12]
    for where in CONDITIONS:
        t0 = time.time()
        records = as_dicts(model.sample(a.n, seed=0, where=where))
        label = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:g}" for k, v in where.items())
        lines.append(row(label, records, stats, pairs, time.time() - t0, where))
    t0 = time.time()
    lines.append(row("(none)", as_dicts(model.sample(a.n, seed=0)), stats, pairs, time.time() - t0, None))
    real = test[: a.n]
    lines.append(row("real held-out rows", real, stats, pairs, 0.0, None))
    table = "\n".join(lines)
    print(table)
    replace_block("conditional", "Conditional sampling (`where`)",
                  f"Command: `python {' '.join(sys.argv)}`  \nHardware: {hardware('cpu')}\n\n{table}")


if __name__ == "__main__":
    main()
