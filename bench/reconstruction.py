"""Reconstruction of held-out rows, with and without the refinement of `encode`.

    python bench/reconstruction.py            # bundled model + runs/quality/*/protosynth/model
    python bench/reconstruction.py --no-doc   # print only

For each model, its test rows (the bundle: bench/vermont.py's test split; a quality
benchmark model: runs/quality/<dataset>/test.jsonl, written by bench/quality.py) are
encoded twice, with `refine_steps=0` (the encoder's mean) and with the model's own
refinement, then greedily decoded and scored per leaf column by
synth/eval/reconstruction.py. A model trained before the tuner chose the encoding gets
that choice first, on its own validation split, in memory (the artifact is not changed).

Columns: the mean error over leaf columns (0: every field back); the worst string
column's Levenshtein per character (issue 8: <= 0.15); the lowest share exact among
category, count and presence columns (>= 0.95); the worst number column's median
|error| in standard deviations; the share of rows whose every non-number column comes
back exactly, which is also the share of interpolation paths (`interpolate`) whose end
latents decode to the given records; and the encoding's wall time (1 thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from doc import cpu_name, replace_block  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.features import NUMBER, flatten  # noqa: E402
from synth.eval.reconstruction import mean_error, reconstruction_by_column  # noqa: E402
from synth.records import to_dict  # noqa: E402
from synth.train.config import TuneConfig  # noqa: E402
from synth.train.tune import tune_generation  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def cases() -> list[tuple[str, Path, list[dict], list[dict]]]:
    """(name, model dir, test rows, validation rows) for each model found."""
    from vermont import benchmark_data, run_split

    out = []
    bundle = ROOT / "synth/pretrained/vermont-address"
    _, test = benchmark_data()
    out.append(("vermont (bundled model)", bundle, test, run_split(store.load(bundle))[1]))
    for ds in ("vermont", "flights", "penguins"):
        d = ROOT / "runs/quality" / ds
        if (d / "protosynth/model").exists():
            out.append((f"{ds} (quality benchmark, 10 min)", d / "protosynth/model",
                        read_jsonl(d / "test.jsonl"), read_jsonl(d / "validation.jsonl")))
    return out


def whole_rows_exact(tree, a: list[dict], b: list[dict]) -> float:
    """Share of rows whose every non-number leaf column is returned exactly."""
    ta, tb = flatten(tree, a), flatten(tree, b)
    ok = np.ones(len(a), dtype=bool)
    for ca, cb in zip(ta.columns, tb.columns):
        if ca.kind != NUMBER:
            ok &= np.array([x == y for x, y in zip(ca.values.tolist(), cb.values.tolist())])
    return float(ok.mean())


def score(model, rows: list[dict], steps: int | None) -> dict:
    t = time.time()
    mu, _ = model.encode(rows, refine_steps=steps)
    wall = time.time() - t
    decoded = [to_dict(m) for m in model.decode(mu, greedy=True)]
    by = reconstruction_by_column(model.tree, rows, decoded)
    strings = {k: c["levenshtein_per_char"] for k, c in by.items() if "levenshtein_per_char" in c}
    exact = {k: c["exact"] for k, c in by.items() if c["kind"] in ("category", "count", "presence")}
    numbers = {k: c["median_abs_error_sd"] for k, c in by.items() if c["kind"] == NUMBER
               and np.isfinite(c["median_abs_error_sd"])}
    worst = lambda d, f: (f(d, key=d.get), d[f(d, key=d.get)]) if d else ("-", float("nan"))  # noqa: E731
    return {"mean_error": mean_error(by), "worst_string": worst(strings, max), "least_exact": worst(exact, min),
            "worst_number": worst(numbers, max), "rows_exact": whole_rows_exact(model.tree, rows, decoded),
            "encode_s": wall}


def run(name: str, path: Path, test: list[dict], validation: list[dict]) -> list[str]:
    model = store.load(path)
    tuning = (model.metadata.get("tuning") or {}).get("encoding") or {}
    note = ""
    if "chosen" not in tuning:
        cfg = TuneConfig(prior=False, calibrate=False, temperatures=False)
        tuning = tune_generation(model, None, validation, cfg, budget_s=0)["encoding"]
        note = " (chosen here)" if "chosen" in tuning else f" (the default: {len(validation)} validation records, too few to choose)"
    test = [to_dict(m) for m in model.messages(test)]
    lines = []
    for label, steps in (("encoder's mean", 0), (f"refined: {model.config.encode_refine_steps} steps, guard "
                                                 f"{model.config.encode_refine_guard:g}{note}", None)):
        r = score(model, test, steps)
        f = lambda t: f"{t[1]:.3f} ({t[0]})" if np.isfinite(t[1]) else "-"  # noqa: E731
        lines.append(f"| {name} | {len(test)} | {label} | {r['mean_error']:.4f} | {f(r['worst_string'])} | "
                     f"{f(r['least_exact'])} | {f(r['worst_number'])} | {r['rows_exact']:.3f} | {r['encode_s']:.1f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    a = ap.parse_args()
    torch.set_num_threads(1)
    head = ["| model | test rows | encoding | mean error | worst string: Lev/char | least exact category "
            "| worst number: median abs error / sd | rows exact | encode s |", "|" + "---|" * 9]
    print("\n".join(head))
    rows = [line for case in cases() for line in run(*case)]
    if not a.no_doc:
        body = (f"Command: `python {' '.join(sys.argv)}`  \nHardware: {cpu_name()}, torch 1 thread\n\n"
                + "\n".join(head + rows))
        replace_block("reconstruction", "Reconstruction of held-out rows", body)


if __name__ == "__main__":
    main()
