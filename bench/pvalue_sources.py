"""Where a Vermont model's p-value outliers come from: the latents, or the decoder given a latent.

The paper's p-value (synth/eval/pvalue.py) asks whether a record's coordinates fit its
postcode. Real rows have P(p < 0.05) of about 0.06; generated rows about 0.18. This script
decodes held-out rows' own latents (the encoder's means, no refinement) and latents drawn
from the prior, and scores each with the same statistics fitted on the training split:

* real held-out rows: the floor;
* their encoder means, decoded greedily and sampled (the model's sample temperature), and
  means plus posterior noise, sampled: what the decoder does with a latent of a real row;
* prior latents, sampled: what `synth sample` does.

For the greedy reconstructions it also says how many outliers kept the row's postcode, how
far their coordinates moved, and how many come from real rows that are outliers themselves.

    python bench/pvalue_sources.py                          # the bundled model
    python bench/pvalue_sources.py --model runs/bench/default/model --rows 3000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from synth import store  # noqa: E402
from synth.allocator import keep_freed_memory  # noqa: E402
from synth.eval.pvalue import GroupStats, fit_group_stats, pvalues  # noqa: E402
from synth.records import to_dict  # noqa: E402
from vermont import benchmark_data  # noqa: E402


def pv(records: list[dict], stats: GroupStats) -> np.ndarray:
    return pvalues(records, stats).values


def row(label: str, p: np.ndarray) -> str:
    return f"| {label} | {np.mean(p < 0.05):.3f} | {np.nanmean(p):.3f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vermont-address", help="a model name or artifact directory")
    ap.add_argument("--rows", type=int, default=2000, help="held-out rows (and prior samples) scored")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args(argv)
    keep_freed_memory()
    train, test = benchmark_data()
    model = store.load(a.model)
    stats = fit_group_stats(train, "postcode", ["lat", "lon"])
    rows = test[: a.rows]
    mu, sigma = model.encode(rows, refine_steps=0)
    noisy = mu + sigma * torch.randn(mu.shape, generator=torch.Generator().manual_seed(a.seed))
    greedy = [to_dict(x) for x in model.decode(mu, greedy=True)]
    real_p, greedy_p = pv(rows, stats), pv(greedy, stats)
    lines = [f"Model `{a.model}`, {len(rows)} held-out rows of the benchmark split, seed {a.seed}.", "",
             "| records | P(p < 0.05) | p mean |", "|---|---|---|",
             row("real held-out rows", real_p),
             row("their encoder means, greedy", greedy_p),
             row("their encoder means, sampled", pv([to_dict(x) for x in model.decode(mu, seed=a.seed)], stats)),
             row("means + posterior noise, sampled", pv([to_dict(x) for x in model.decode(noisy, seed=a.seed)],
                                                        stats)),
             row("prior latents, sampled", pv([to_dict(x) for x in model.sample(len(rows), seed=a.seed)], stats))]
    low = greedy_p < 0.05
    kept = np.array([r["postcode"] == g.get("postcode") for r, g in zip(rows, greedy)])
    moved = np.array([np.hypot(r["lat"] - g.get("lat", 0.0), r["lon"] - g.get("lon", 0.0))
                      for r, g in zip(rows, greedy)])
    lines += ["", f"Greedy reconstructions with p < 0.05: {int(low.sum())}; postcode kept in "
              f"{np.mean(kept[low]):.1%} of them ({np.mean(kept[~low]):.1%} of the others); median coordinate "
              f"error {np.median(moved[low]):.4f} degrees ({np.median(moved[~low]):.4f} for the others); "
              f"{np.mean(real_p[low] < 0.05):.1%} of them reconstruct a real row that is an outlier itself."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
