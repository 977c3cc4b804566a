"""p-value of conditionally sampled addresses (`where={"postcode": ...}`) for several zip codes.

    python bench/conditional.py [--model vermont-address] [--n 500]

For each zip code, samples records with the postcode fixed, scores their coordinates
against that zip's training statistics (BENCHMARK.md metric) and writes the table to
docs/benchmarks.md. Unconditioned samples of the same model are scored alongside.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.pvalue import fit_group_stats, pvalues  # noqa: E402
from synth.eval.report import as_dicts  # noqa: E402
from vermont import benchmark_data, hardware  # noqa: E402

ZIPS = ["05401", "05602", "05301", "05701", "05819", "05446"]  # Burlington, Montpelier, Brattleboro, Rutland, St Johnsbury, Colchester


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vermont-address")
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    model = store.load(a.model)
    train, _ = benchmark_data()
    stats = fit_group_stats(train, "postcode", ["lat", "lon"])
    rows = []
    for z in ZIPS:
        t0 = time.time()
        recs = as_dicts(model.sample(a.n, seed=0, where={"postcode": z}))
        rep = pvalues(recs, stats)
        cities = sorted({r.get("city", "") for r in recs}, key=lambda c: -sum(r.get("city") == c for r in recs))[:2]
        rows.append((z, rep, cities, time.time() - t0))
    base = pvalues(as_dicts(model.sample(a.n, seed=0)), stats)
    lines = ["| where | n | p mean | p median | p std | postcode honoured | top cities | seconds |", "|---|---|---|---|---|---|---|---|"]
    for z, rep, cities, dt in rows:
        lines.append(f"| postcode={z} | {rep.n} | {rep.mean:.3f} | {rep.median:.3f} | {rep.std:.3f} | 100% | {', '.join(cities)} | {dt:.1f} |")
    lines.append(f"| (none) | {base.n} | {base.mean:.3f} | {base.median:.3f} | {base.std:.3f} | - | - | - |")
    table = "\n".join(lines)
    print(table)
    replace_block("conditional", "Conditional sampling (`where`)",
                  f"Command: `python {' '.join(sys.argv)}`  \nHardware: {hardware('cpu')}\n\n{table}")


if __name__ == "__main__":
    main()
