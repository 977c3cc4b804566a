"""Can a generation setting bring the DCR share down? A sweep on the validation split.

The settings the tuner chooses after training (synth/train/tune.py) are the prior's size
and the two temperatures. This script takes a quality run's protosynth model
(runs/quality/DATASET/protosynth/model, written by `bench/quality.py`), refits the prior
with each size of `--components` on the training posteriors (as the tuner does), and for
each (components, sample temperature, latent temperature) generates `--samples` records
with `--seeds` sampling seeds. Each set is scored against the validation split (never
the test split): detection AUC, mean TV, mean KS, association difference
(`compare_records`, evaluation seed 7 as the tuner's), and the DCR share of the generated
rows between the training rows and the validation rows (3 evaluation seeds). The floor
is the validation rows' own share (half against half, 10 seeds).

    python bench/dcr_knobs.py flights --components 0,64,256
    python bench/dcr_knobs.py flights --model runs/other/model --as-tuned   # one row: its own settings
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dcr_columns import read  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.compare import compare_records  # noqa: E402
from synth.eval.features import flatten  # noqa: E402
from synth.eval.privacy import dcr_floor, dcr_share  # noqa: E402
from synth.latent_prior import fit_mixture  # noqa: E402
from synth.records import to_dict  # noqa: E402
from synth.train.tune import training_sample  # noqa: E402

EVAL_SEED = 7  # the tuner's (synth.train.config.TuneConfig.seed is not the benchmark's)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/quality")
    ap.add_argument("--components", default="0,64,256", help="prior sizes (0: one Gaussian)")
    ap.add_argument("--sample-temperatures", type=floats, default=[0.5, 1.0])
    ap.add_argument("--latent-temperatures", type=floats, default=[0.7, 1.0, 1.5])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", type=Path, help="another model trained on the run's splits")
    ap.add_argument("--as-tuned", action="store_true", help="only the model's own prior and temperatures")
    a = ap.parse_args(argv)
    root = a.runs / a.dataset
    model = store.load(a.model or root / "protosynth/model")
    tree = model.tree
    train_records, val_records = (read(root / f) for f in ("train.jsonl", "validation.jsonl"))
    train, val = flatten(tree, train_records), flatten(tree, val_records)
    floor = [dcr_floor(train, val, seed=s)["share"] for s in range(10)]
    print(f"{a.dataset}: validation floor {np.mean(floor):.3f} +- {np.std(floor):.3f}; the tuner chose "
          f"{model.config.latent_prior_components} components, temperatures "
          f"{model.config.sample_temperature} / {model.config.latent_temperature}")
    base = model.config
    print("| components | sample T | latent T | detection AUC | mean TV | mean KS | association | DCR share |")
    print("|---|---|---|---|---|---|---|---|")
    if a.as_tuned:
        grid = [(base.latent_prior_components, base.sample_temperature, base.latent_temperature)]
    else:
        mu, sigma = model.encode(training_sample(train_records, torch.Generator().manual_seed(0)), refine_steps=0)
        grid = list(itertools.product((int(x) for x in a.components.split(",")), a.sample_temperatures,
                                      a.latent_temperatures))
    for i, (k, st, lt) in enumerate(grid):
        if not a.as_tuned and (i == 0 or k != grid[i - 1][0]):
            model.vae.set_prior(fit_mixture(mu, sigma, k, generator=torch.Generator().manual_seed(0)) if k else None)
        model.config = dataclasses.replace(base, sample_temperature=st, latent_temperature=lt,
                                           latent_prior_components=k)
        rows = []
        for seed in range(a.seeds):
            gen = [to_dict(r) for r in model.sample(a.samples, seed=100 + seed)]
            s = compare_records(tree, val_records, gen, seed=EVAL_SEED)["summary"]
            table = flatten(tree, gen)
            dcr = np.mean([dcr_share(table, train, val, seed=j)["share"] for j in range(3)])
            rows.append((s["detection_auc"], s["mean_tv"], s["mean_ks"], s["association_mean_abs_diff"], dcr))
        m, sd = np.mean(rows, axis=0), np.std(rows, axis=0)
        print(f"| {k} | {st} | {lt} | " + " | ".join(f"{x:.3f} +- {e:.3f}" for x, e in zip(m, sd)) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
