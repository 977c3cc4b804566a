"""Build the bundled pretrained Vermont address model (`synth/pretrained/vermont-address`).

    python bench/bundle_vermont.py --minutes 15          # train the default recipe, then bundle it
    python bench/bundle_vermont.py --from-run runs/bench/default   # bundle an existing benchmark run

Training uses the default recipe (bench/configs/default.toml: `synth train` with no
--config) on the benchmark's training split (see bench/vermont.py). The artifact is copied without its checkpoint and logs, then scored
with `synth evaluate` (10,000 samples); the numbers go to docs/benchmarks.md and into
the artifact's manifest (`metadata.metrics`), where the server shows them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.report import evaluate, format_table  # noqa: E402
from vermont import benchmark_data, hardware, run_regime, run_split  # noqa: E402

TARGET = ROOT / "synth/pretrained/vermont-address"


def bundle(run_dir: Path) -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in (store.WEIGHTS, store.MANIFEST):
        shutil.copy2(run_dir / name, TARGET / name)


def write_doc(report: dict, command: str, device: str) -> None:
    body = f"Command: `{command}`  \nHardware: {hardware(device)}\n\n```\n{format_table(report)}\n```"
    replace_block("bundled", "Bundled model: `synth evaluate vermont-address`", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--from-run", help="bundle this run directory instead of training")
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--retune", action="store_true",
                    help="with --from-run: choose the prior and temperatures again with this code's tuner, on "
                         "the run's own validation split (what training does at its end); the weights are kept")
    ap.add_argument("--retune-only", default="",
                    help="with --from-run: choose only these parts of the tuning again (comma-separated: "
                         "closed_pairs, encoding), on the run's own validation split, for runs trained "
                         "before the tuner made those choices; the rest is kept")
    ap.add_argument("--retune-encoding", action="store_true", help="the same as --retune-only encoding")
    a = ap.parse_args()
    if a.from_run:
        run_dir = Path(a.from_run)
    else:
        run_regime("default", a.minutes, a.device, a.samples, ROOT / "runs/bench")
        run_dir = ROOT / "runs/bench/default"
    bundle(run_dir)
    model = store.load("vermont-address")
    only = [p for p in a.retune_only.split(",") if p] + (["encoding"] if a.retune_encoding else [])
    if a.retune:
        retune(model)
    elif only:
        retune(model, only=only)
    train, test = benchmark_data()
    t0 = time.time()
    report = evaluate(model, train, test, n_samples=a.samples, seed=0)
    model.metadata["metrics"] = {k: report[k] for k in ("pvalue", "levenshtein_per_char", "memorization",
                                                         "loss", "posterior") if k in report}
    store.save(model, TARGET)
    print(format_table(report))
    print(f"evaluated in {time.time() - t0:.0f} s", file=sys.stderr)
    write_doc(report, "python " + " ".join(sys.argv), a.device)
    (TARGET / "README.md").write_text(provenance(model, "python " + " ".join(sys.argv)))


PARTS = {"closed_pairs": "closed_pairs", "encoding": "encoding"}  # tuning record part -> TuneConfig switch


def retune(model, only: list[str] | None = None) -> None:
    """Run the end-of-training tuner again on the run's own split (bench/vermont.py's run_regime);
    with `only`, those parts' choices alone (the other parts' records are kept)."""
    import dataclasses

    from synth.configs import from_dict
    from synth.train.config import TrainConfig
    from synth.train.calibrate import end_regime
    from synth.train.tune import tune_generation

    cfg = from_dict(TrainConfig, model.metadata["run_config"]["train"])
    fit, validation = run_split(model)
    budget = min(cfg.tune.max_seconds, cfg.tune.max_fraction * cfg.time_budget_s)  # as the trainer's
    if only:
        unknown = sorted(set(only) - set(PARTS))
        if unknown:
            raise SystemExit(f"--retune-only: unknown part(s) {unknown}; choose from {sorted(PARTS)}")
        switches = {s: s in only for s in PARTS.values()}
        tune_cfg = dataclasses.replace(cfg.tune, prior=False, calibrate=False, temperatures=False, **switches)
        fresh = tune_generation(model, fit, validation, tune_cfg, budget, end_regime(cfg))
        tuning = dict(model.metadata.get("tuning") or {})
        for part in only:
            tuning[part] = {**fresh[part], "retuned": f"bench/bundle_vermont.py --retune-only {','.join(only)}, "
                                                      "on the trained weights"}
        model.metadata["tuning"] = tuning
        return
    model.metadata["tuning"] = tune_generation(model, fit, validation, cfg.tune, budget, end_regime(cfg))
    model.metadata["tuning"]["retuned"] = "bench/bundle_vermont.py --retune: the tuner run again on the trained weights"


def provenance(model, command: str) -> str:
    """The artifact's README: what trained it, and what was chosen on the validation split."""
    md = model.metadata
    s, t = md.get("summary", {}), md.get("tuning", {})
    prior = (t.get("prior") or {}).get("chosen")
    temps = (t.get("temperatures") or {}).get("chosen") or {}
    encoding = (t.get("encoding") or {}).get("chosen") or {}
    return ("# vermont-address\n\nThe bundled pretrained model of `protos/examples/address.proto` (synth.examples.Address),\n"
            "trained with the default recipe (`synth train` with no --config; bench/configs/default.toml) on the\n"
            "Vermont address benchmark's training split (synth/data/vermont), less a seeded validation split.\n\n"
            f"Training: {s.get('steps')} steps in {s.get('wall_s', 0) / 60:.1f} min on {s.get('device')}. Chosen on the "
            f"validation split: a {prior}-component mixture prior, temperatures {temps}"
            + (f", encoding {encoding}" if encoding else "") + ".\n\n"
            f"Rebuild: `{command}` (or `make bundle`, which trains it afresh for 15 minutes). "
            "Numbers: docs/benchmarks.md.\n")

if __name__ == "__main__":
    main()
