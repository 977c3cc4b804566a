"""The Vermont address benchmark (BENCHMARK.md): train the paper's regimes at a stated
budget on this machine, score them, print a table beside the paper's numbers and write
it to docs/benchmarks.md.

    python bench/vermont.py                       # every regime, 15 min each on this machine
    python bench/vermont.py --regimes best --minutes 60 --samples 10000

Each regime is a run config in bench/configs/<regime>.toml. The data is the packaged
copy (synth/data/vermont), split 90/10 with seed 0 (synth.datasets.vermont_split);
rows whose postcode is empty or blank (140 of 33,432) are left out of training, since
the metric scores such a record as malformed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import cpu_name, replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.datasets import vermont_split  # noqa: E402
from synth.eval.memorization import record_copy_share  # noqa: E402
from synth.eval.pvalue import fit_group_stats, pvalues  # noqa: E402
from synth.eval.report import as_dicts, evaluate  # noqa: E402
from synth.model import Model  # noqa: E402
from synth.train import RunConfig, Trainer  # noqa: E402
from synth.configs import from_dict  # noqa: E402
from synth.train.config import UNBOUNDED_STEPS, TrainConfig  # noqa: E402
from synth.train.validation import split_validation  # noqa: E402

REGIMES = ["beta_vae", "augmented", "multiscale", "best", "default"]
PAPER = {  # mean, median, stddev, Levenshtein/char (paper tables 1-3; 2M steps x 32 workers)
    "beta_vae": (0.261, 0.061, 0.329, 0.11),
    "augmented": (0.401, 0.324, 0.376, 0.20),
    "multiscale": (0.509, 0.494, 0.384, 0.92),
}
PROTO = ROOT / "protos/examples/address.proto"
VALIDATION_SEED = 7  # sampling seed of --validate: not the test split's scoring seed (0)


def hardware(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, torch {torch.get_num_threads()} threads"


def benchmark_data() -> tuple[list[dict], list[dict]]:
    train, test = vermont_split(seed=0, test_fraction=0.1)
    keep = lambda r: bool(str(r.get("postcode", "")).strip())  # noqa: E731
    return [r for r in train if keep(r)], [r for r in test if keep(r)]


def score(model: Model, train: list[dict], test: list[dict], samples: int, seed: int) -> dict:
    """The benchmark's columns, taken from `synth evaluate`'s report (one metrics code path)."""
    r = evaluate(model, train, test, n_samples=samples, seed=seed, chains=0)
    p, memo, loss = r["pvalue"], r["memorization"], r["loss"]
    examples = as_dicts(model.sample(3, seed=seed))
    return {
        "p_mean": p["mean"], "p_median": p["median"], "p_std": p["std"],
        "malformed": p["malformed"], "unknown": p["unknown"], "unknown_pct": 100.0 * p["unknown"] / samples,
        "levenshtein": r["levenshtein_per_char"]["street"],
        "street_in_training": memo["values_in_training"]["street"],
        "record_copies": memo["records_in_training"],
        "train_loss": loss["train"], "test_loss": loss["test"], "generated_loss": loss["generated"],
        "examples": [{k: g.get(k) for k in ("number", "street", "city", "postcode", "lat", "lon")} for g in examples],
    }


GENERATION_FIELDS = ("generation_feedback", "latent_prior_components", "sample_temperature", "latent_temperature")


def rescore(name: str, device: str, samples: int, out: Path, config: str | None = None) -> dict:
    """Score an existing run again, keeping its training numbers.

    With `config` (a regime name), first apply that regime's generation settings, which
    do not touch the weights (feedback, mixture prior, temperatures), fitting the mixture
    prior if it asks for one; the artifact is saved with them.
    """
    row = json.loads((out / name / "bench.json").read_text())
    train, test = benchmark_data()
    model = store.load(out / name, device=device)
    if config:
        wanted = RunConfig.from_file(ROOT / f"bench/configs/{config}.toml").model
        model.config = dataclasses.replace(model.config, **{f: getattr(wanted, f) for f in GENERATION_FIELDS})
        if model.config.latent_prior_components:
            model.fit_latent_prior(train, model.config.latent_prior_components)
        model.metadata.setdefault("run_config", {})["model"] = dataclasses.asdict(model.config)
        store.save(model, out / name)
        row["generation_config"] = config
    row.update(score(model, train, test, samples, seed=0))
    (out / name / "bench.json").write_text(json.dumps(row, indent=1))
    return row


def run_split(model: Model) -> tuple[list[dict], list[dict]]:
    """(fit, validation): the benchmark's training split divided as the model's run divided it."""
    train_cfg = from_dict(TrainConfig, model.metadata["run_config"]["train"])
    fit, validation, _ = split_validation(benchmark_data()[0], train_cfg)
    return fit, validation


def validate(name: str, device: str, samples: int, out: Path, seed: int = VALIDATION_SEED) -> dict:
    """Score a run on its own validation split: the rows `split_validation` held out of the
    training split under the run's config, which it never trained on. Recipe-level choices
    (beta, coverage, field order) are made on these figures, never on the test split's."""
    model = store.load(out / name, device=device)
    fit, validation = run_split(model)
    r = evaluate(model, fit, validation, n_samples=samples, seed=seed, chains=0)
    s, pairs = r["comparison"]["summary"], {(p["a"], p["b"]): p["generated"] for p in r["comparison"]["pairs"]["pairs"]}
    return {"regime": name, "validation_rows": len(validation), "samples": samples, "seed": seed,
            "p_mean": s["p_mean"], "p_median": s["p_median"], "p_below_0_05": s["p_below_0_05"],
            "detection_auc": s["detection_auc"], "street_postcode": pairs[("street", "postcode")],
            "street_levenshtein": r["levenshtein_per_char"]["street"]}


def validation_table(rows: list[dict]) -> str:
    lines = ["| run | p mean / median | P(p<0.05) | detection AUC | (street, postcode) found | street Lev/char |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['regime']} | {r['p_mean']:.3f} / {r['p_median']:.3f} | {r['p_below_0_05']:.3f} | "
              f"{r['detection_auc']:.3f} | {100 * r['street_postcode']:.1f}% | {r['street_levenshtein']:.3f} |"
              for r in rows]
    return "\n".join(lines)


def run_regime(name: str, minutes: float, device: str, samples: int, out: Path) -> dict:
    run = RunConfig.from_file(ROOT / f"bench/configs/{name}.toml", device=device)
    # the clock alone ends the run, and every schedule given as a fraction fits in it
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, time_budget_s=minutes * 60,
                                                             steps=UNBOUNDED_STEPS))
    train, test = benchmark_data()
    # The validation split is held out before the model is compiled, as `synth train` does:
    # the data-dependent choices, early stopping and the tuning after training see only it.
    fit, validation, info = split_validation(train, run.train)
    torch.manual_seed(run.train.seed)
    model = Model.create(PROTO, "Address", records=fit, config=run.model)
    t0 = time.time()
    result = Trainer(model, run.train, fit, test, out_dir=out / name, progress=True, run_config=run,
                     validation_records=validation, validation_info=info).run()
    wall = time.time() - t0
    model = store.load(out / name, device=device)
    row = {"regime": name, "steps": result.step, "train_minutes": wall / 60, "hardware": hardware(device),
           "threads": torch.get_num_threads(),
           "device": device, **score(model, train, test, samples, seed=0)}
    (out / name / "bench.json").write_text(json.dumps(row, indent=1))
    return row


def independent_fields(train: list[dict], samples: int, seed: int) -> dict:
    """The peer a field-wise faker stands for: every field drawn independently from its
    training marginal. Scored in the same run, by the same metric."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t0 = time.time()
    fields = ("number", "street", "city", "postcode", "lat", "lon")
    columns = {f: [r.get(f) for r in train] for f in fields}
    draws = ({f: columns[f][rng.integers(len(train))] for f in fields} for _ in range(samples))
    generated = [{f: v for f, v in d.items() if v is not None} for d in draws]
    stats = fit_group_stats(train, "postcode", ["lat", "lon"])
    p = pvalues(generated, stats)
    return {"regime": "independent fields (peer)", "steps": 0, "train_minutes": (time.time() - t0) / 60,
            "p_mean": p.mean, "p_median": p.median, "p_std": p.std, "malformed": p.malformed,
            "unknown": p.unknown, "unknown_pct": 100.0 * p.unknown / samples, "levenshtein": float("nan"),
            "street_in_training": 1.0, "record_copies": record_copy_share(generated, train),
            "train_loss": float("nan"), "test_loss": float("nan"), "generated_loss": float("nan"),
            "examples": [{k: g.get(k) for k in ("number", "street", "city", "postcode")} for g in generated[:3]]}


def table(rows: list[dict]) -> str:
    head = ("| regime | steps | train min | p mean | p median | p std | malformed | unknown zip | "
            "Levenshtein/char | street in training | record copies | train / test / generated loss | paper (mean / median / std / Lev) |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        paper = PAPER.get(r["regime"])
        ref = " / ".join(f"{v:.3f}" for v in paper) if paper else "-"
        lines.append(
            f"| {r['regime']} | {r['steps']} | {r['train_minutes']:.1f} | {r['p_mean']:.3f} | {r['p_median']:.3f} | "
            f"{r['p_std']:.3f} | {r['malformed']} | {r['unknown']} ({r['unknown_pct']:.2f}%) | {r['levenshtein']:.3f} | "
            f"{r['street_in_training']:.3f} | {r['record_copies']:.3f} | "
            f"{r['train_loss']:.2f} / {r['test_loss']:.2f} / {r['generated_loss']:.2f} | {ref} |")
    return "\n".join(lines)


def write_doc(rows: list[dict], command: str, minutes: float | None, samples: int, note: str = "") -> None:
    body = "\n".join([
        f"Command: `{command}`  ",
        f"Hardware: {rows[0]['hardware']} ({rows[0]['device']}); "
        + (f"budget {minutes:g} min of training per regime; " if minutes else "training budget: the `train min` column; ")
        + f"{samples} samples scored against the training split.",
        *([note] if note else []),
        "",
        table(rows),
        "",
        "Examples (first three samples of each regime):",
        "",
        *[f"- {r['regime']}: " + "; ".join(
            f"{e['number'] or ''} {e['street'] or ''}, {e['city'] or ''} {e['postcode'] or ''}" for e in r["examples"])
          for r in rows],
    ])
    replace_block("vermont", "Vermont address benchmark", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per regime")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "runs/bench"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--collect", action="store_true",
                    help="train nothing: tabulate the bench.json of runs made earlier (e.g. in parallel)")
    ap.add_argument("--rescore", action="store_true", help="train nothing: score existing runs again")
    ap.add_argument("--generation-from", help="with --rescore: apply this regime's generation settings first")
    ap.add_argument("--validate", action="store_true",
                    help="train nothing: score existing runs on their validation split (choosing recipes)")
    ap.add_argument("--note", default="", help="a line for the doc, e.g. how the runs shared the machine")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    names = a.regimes.split(",")
    if a.validate:
        rows = [validate(n, a.device, a.samples, Path(a.out)) for n in names]
        for r in rows:
            (Path(a.out) / r["regime"] / "validation.json").write_text(json.dumps(r, indent=1))
        print(validation_table(rows))
        return
    if a.collect:
        rows = [json.loads((Path(a.out) / n / "bench.json").read_text()) for n in names]
    elif a.rescore:
        rows = [rescore(n, a.device, a.samples, Path(a.out), a.generation_from) for n in names]
    else:
        rows = [run_regime(name, a.minutes, a.device, a.samples, Path(a.out)) for name in names]
    print(table(rows))
    peer = independent_fields(benchmark_data()[0], a.samples, seed=0)
    best = max(rows, key=lambda r: r["p_mean"])
    print(f"\npeer: {peer['regime']}: p mean {peer['p_mean']:.3f}; best regime ({best['regime']}) / peer = "
          f"{best['p_mean'] / max(peer['p_mean'], 1e-9):.0f}x")
    rows = rows + [peer]
    if not a.no_doc:
        write_doc(rows, "python " + " ".join(sys.argv), None if (a.collect or a.rescore) else a.minutes,
                  a.samples, a.note)


if __name__ == "__main__":
    main()
