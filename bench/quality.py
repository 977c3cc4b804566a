"""Quality benchmark: protosynth against peers on several real datasets, one report.

    python bench/quality.py                                   # everything, 15 min per system
    python bench/quality.py --datasets penguins,flights --systems protosynth,gaussian_copula \\
        --minutes 1 --samples 300 --no-doc                    # a smoke run
    python bench/quality.py --collect                         # re-tabulate saved results
    python bench/quality.py --rescore                         # score saved samples with today's report

Protocol (bench/README.md):
- each dataset (bench/datasets/) is split once with --split-seed into train / validation
  / test, validation taken from the training part; files under runs/quality/<dataset>/;
- every system gets the same wall-clock budget (--minutes) and the same torch thread
  count (--threads) on the same training split. protosynth: `synth train` with its
  defaults, the budget as its time budget, the validation split as --test-data; then
  `synth sample`. Peers (bench/peers/run_peer.py, in .venv-peers): trained on the
  flattened training split (mostlyai also validates on the flattened validation split);
- every system samples --samples records (default: as many as the test split) with
  --sample-seed, and all are scored by synth.eval.compare.compare_records against the
  test split, with the training split for privacy and the floors, and --eval-seed.
  The test split and the evaluation seed are used only there;
- the row "real held-out" scores the validation split (real records nobody trained
  on) the same way: what a perfect generator would get with that many records.
Results: runs/quality/<dataset>/<system>/result.json (--collect rebuilds the table
from them); the table goes to docs/benchmarks.md (block "quality") unless --no-doc.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.datasets import NAMES, RUNS, get, prepare, read_jsonl  # noqa: E402
from doc import cpu_name, replace_block  # noqa: E402
from synth.eval.privacy import PAIRED_SEEDS  # noqa: E402

SYSTEMS = ("protosynth", "gaussian_copula", "tvae", "ctgan", "mostlyai")
PEERS = SYSTEMS[1:]
REFERENCE = "real_heldout"
LABELS = {"protosynth": "protosynth", "gaussian_copula": "SDV GaussianCopula", "tvae": "SDV TVAE",
          "ctgan": "SDV CTGAN", "mostlyai": "mostlyai-engine TabularARGN", REFERENCE: "real held-out"}
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
SYNTH = Path(sys.executable).parent / "synth"


def log(msg: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_logged(cmd: list[str], logfile: Path, env: dict) -> float:
    """Run a command with its output in `logfile`; return its wall seconds; raise on failure."""
    t0 = time.time()
    with logfile.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if rc != 0:
        tail = "".join(logfile.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed (exit {rc}); log {logfile}:\n{tail}")
    return time.time() - t0


def train_protosynth(info: dict, d: Path, minutes: float, n: int, seed: int, threads: int) -> dict:
    model_dir = d / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    logfile = d / "log.txt"
    logfile.write_text("")
    help_text = subprocess.run([str(SYNTH), "train", "--help"], capture_output=True, text=True).stdout
    cmd = [str(SYNTH), "train", str(ROOT / info["proto"]), "--message", info["message"],
           "--data", f"{info['dir']}/train.jsonl", "--test-data", f"{info['dir']}/validation.jsonl",
           "--out", str(model_dir), "--device", "cpu"]
    if "--minutes" in help_text:
        cmd += ["--minutes", f"{minutes:g}"]
        budget = "--minutes"
    else:  # only the time budget: every other setting is synth train's default
        cfg = d / "budget.toml"
        cfg.write_text(f"[train]\ntime_budget_s = {minutes * 60.0}\n")
        cmd += ["--config", str(cfg)]
        budget = "[train] time_budget_s"
    env = thread_env(threads)
    train_s = run_logged(cmd, logfile, env)
    sample_s = run_logged([str(SYNTH), "sample", str(model_dir), "-n", str(n), "--seed", str(seed),
                           "--format", "jsonl", "-o", str(d / "generated.jsonl")], logfile, env)
    steps = None
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        summary = manifest.get("metadata", {}).get("summary") or manifest.get("summary") or {}
        steps = summary.get("steps") or summary.get("step")
    except (OSError, ValueError, AttributeError):
        pass
    return {"fit_seconds": train_s, "sample_seconds": sample_s, "steps": steps, "budget_via": budget,
            "minutes": minutes, "seed": seed,
            "settings": "synth train defaults (no config besides the time budget)", "threads": threads}


def train_peer(system: str, info: dict, d: Path, minutes: float, n: int, seed: int, threads: int) -> dict:
    logfile = d / "log.txt"
    logfile.write_text("")
    out = d / "generated.jsonl"
    cmd = [str(PEER_PYTHON), str(ROOT / "bench/peers/run_peer.py"), "--peer", system,
           "--train", f"{info['dir']}/train_flat.jsonl", "--layout", f"{info['dir']}/layout.json",
           "--minutes", f"{minutes:g}", "--n", str(n), "--seed", str(seed), "--threads", str(threads),
           "--out", str(out)]
    if system == "mostlyai":
        cmd += ["--validation", f"{info['dir']}/validation_flat.jsonl"]
    wall = run_logged(cmd, logfile, thread_env(threads))
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    meta["wall_seconds"] = wall
    return meta


def generate(dataset: str, system: str, info: dict, a: argparse.Namespace, n: int) -> dict | None:
    d = RUNS / dataset / system
    d.mkdir(parents=True, exist_ok=True)
    log(f"{dataset} / {system}: training ({a.minutes:g} min budget, {a.threads} thread(s)), then {n} samples")
    t0 = time.time()
    try:
        if system == "protosynth":
            meta = train_protosynth(info, d, a.minutes, n, a.sample_seed, a.threads)
        else:
            meta = train_peer(system, info, d, a.minutes, n, a.sample_seed, a.threads)
    except RuntimeError as e:
        log(f"{dataset} / {system}: FAILED: {e}")
        (d / "failed.txt").write_text(str(e))
        return None
    (d / "failed.txt").unlink(missing_ok=True)
    log(f"{dataset} / {system}: done in {(time.time() - t0) / 60:.1f} min")
    meta["dataset"], meta["system"] = dataset, system
    (d / "generation.json").write_text(json.dumps(meta, indent=1))
    return meta


def canonical_generated(ds, records: list[dict]) -> tuple[list[dict], int]:
    """Generated records through the schema (proto3 JSON, defaults out); count those that don't parse."""
    from synth.errors import DataError
    from synth.records import to_dict, to_message
    from synth.schema.loader import load_schema

    cls = load_schema(ds.proto, ds.message).message_class
    good, bad = [], 0
    for r in records:
        try:
            good.append(to_dict(to_message(r, cls)))
        except DataError:
            bad += 1
    return good, bad


def score(dataset: str, system: str, info: dict, eval_seed: int, seeds: dict) -> dict:
    from synth.eval.compare import compare_records
    from synth.schema.loader import load_schema
    from synth.schema.tree import build_tree

    ds = get(dataset)
    tree = build_tree(load_schema(ds.proto, ds.message).descriptor)
    train = read_jsonl(Path(info["dir"]) / "train.jsonl")
    test = read_jsonl(Path(info["dir"]) / "test.jsonl")
    d = RUNS / dataset / system
    if system == REFERENCE:
        generated, meta = read_jsonl(Path(info["dir"]) / "validation.jsonl"), {"fit_seconds": 0.0}
        d.mkdir(parents=True, exist_ok=True)
    else:
        meta = json.loads((d / "generation.json").read_text())
        generated = read_jsonl(d / "generated.jsonl")
    generated, unparsed = canonical_generated(ds, generated)
    log(f"{dataset} / {system}: scoring {len(generated)} records against {len(test)} test records")
    t0 = time.time()
    report = compare_records(tree, real=test, generated=generated, train=train, seed=eval_seed, geo=ds.geo)
    result = {"dataset": dataset, "system": system, "label": LABELS[system], "generation": meta,
              "unparsed": unparsed, "seeds": seeds, "split": info, "summary": report["summary"],
              "compare": report, "score_seconds": time.time() - t0}
    (d / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _nested(dataset: str) -> bool:
    p = RUNS / dataset / "layout.json"
    return p.exists() and any(f["kind"] != "scalar" for f in json.loads(p.read_text())["fields"])


def _excess(s: dict) -> str:
    """The DCR share's excess over its floor, paired over evaluation seeds (mean +- sd)."""
    if s.get("dcr_excess") is None:
        return "-"
    return f"{s['dcr_excess']:+.3f} +- {_f(s.get('dcr_excess_sd'))}"


def table(results: list[dict]) -> str:
    head = ("| dataset | system | train min | trained | detection AUC (floor) | mean TV | mean KS | association diff | "
            f"DCR share (floor; minus floor, paired over {PAIRED_SEEDS} seeds) | copies (floor) | p mean | p median | "
            "P(p<0.05) (real) | p KS vs real | records |")
    lines = [head, "|" + "---|" * 15]
    for r in results:
        s, g = r["summary"], r["generation"]
        minutes = "-" if r["system"] == REFERENCE else f"{(g.get('fit_seconds') or 0) / 60:.1f}"
        work = g.get("steps") if g.get("steps") is not None else g.get("epochs_run")
        work = "-" if work is None else (f"{work} steps" if "steps" in g else f"{work} epochs")
        ref = r["system"] == REFERENCE
        auc = _f(s["detection_auc"]) + ("" if ref else f" ({_f(s['detection_auc_floor'])})")
        dcr = _f(s["dcr_share"]) + ("" if ref else f" ({_f(s['dcr_share_floor'])}; {_excess(s)})")
        copies = _f(s["copies"]) + ("" if ref else f" ({_f(s['copies_floor'])})")
        geo = r["compare"].get("geo")
        if geo:
            pb = _f(s["p_below_0_05"]) + ("" if ref else f" ({_f(s['p_below_0_05_real'])})")
            p = (_f(s["p_mean"]), _f(s["p_median"]), pb, _f(s["p_ks_vs_real"]))
        else:
            p = ("-", "-", "-", "-")
        n = r["compare"]["rows"]["generated"] + r.get("unparsed", 0)
        label = r["label"]
        if g.get("flattened") and _nested(r["dataset"]):
            label += " (flattened)"
        elif g.get("flattened") is False:
            label += " (two tables)"
        lines.append(f"| {r['dataset']} | {label} | {minutes} | {work} | {auc} | {_f(s['mean_tv'])} | {_f(s['mean_ks'])} | "
                     f"{_f(s['association_mean_abs_diff'])} | {dcr} | {copies} | {p[0]} | {p[1]} | {p[2]} | {p[3]} | {n} |")
    return "\n".join(lines)


def dataset_table(names: list[str]) -> str:
    lines = ["| dataset | domain | source | licence | train / validation / test | schema |", "|---|---|---|---|---|---|"]
    for name in names:
        ds = get(name)
        info_path = RUNS / name / "split.json"
        sizes = "-"
        if info_path.exists():
            i = json.loads(info_path.read_text())
            sizes = f"{i['train']:,} / {i['validation']:,} / {i['test']:,}"
        lines.append(f"| {name} (`{ds.proto.relative_to(ROOT)}`, `{ds.message}`) | {ds.domain} | {ds.source} | "
                     f"{ds.licence} | {sizes} | {ds.features} |")
    return "\n".join(lines)


def write_doc(results: list[dict], names: list[str], command: str, a: argparse.Namespace, notes: list[str]) -> None:
    gen = [r["generation"] for r in results if r["system"] != REFERENCE]
    threads = sorted({g.get("threads") for g in gen if g.get("threads") is not None})
    budgets = sorted({g.get("minutes") for g in gen if g.get("minutes") is not None}) or [a.minutes]
    body = "\n".join([
        f"Command: `{command}`  ",
        f"Hardware: {cpu_name()}; wall-clock training budget per system and dataset: "
        f"{' / '.join(f'{m:g}' for m in budgets)} min; torch threads per training process: "
        f"{', '.join(map(str, threads)) or a.threads}.  ",
        f"Seeds: split {a.split_seed}, sampling {a.sample_seed}, evaluation {a.eval_seed}.  ",
        "Scored by `synth.eval.compare.compare_records` against the test split (training split for DCR, "
        "copies and the floors). Floors in brackets: the same figure for held-out real rows. "
        "Train min: fitting wall time (protosynth: the whole `synth train` process; peers: from "
        "reading the table to the end of fitting). "
        "TV: total variation of categorical marginals; KS: Kolmogorov-Smirnov of numeric ones; "
        "p: the paper's postcode p-value (Vermont only); its calibration: P(p<0.05), about 0.05 for real rows "
        "(held-out real in brackets), and the KS distance between generated and real p-values (0: calibrated). `real held-out` scores the validation split, "
        "real records no system trained on.",
        "",
        "Datasets:",
        "",
        dataset_table(names),
        "",
        table(results),
        "",
        "SDV peers take one flat table: nested datasets are flattened for them (bench/datasets/flatten.py: "
        "`m__present`, `r__n` plus `max_len` slots; marked `(flattened)`) and their rows turned back into "
        "records. mostlyai-engine takes one level of nesting itself: where a dataset has one repeated "
        "message (flights) it gets a parent table and a sequential child table (`(two tables)`, half "
        "the budget each). protosynth trains on the records as they are, with `synth train`'s defaults.",
        *notes,
    ])
    replace_block("quality", "Quality against peers on real datasets", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(NAMES))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per system and dataset")
    ap.add_argument("--samples", type=int, default=0, help="records per system (0: as many as the test split)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of every system's training and sampling")
    ap.add_argument("--eval-seed", type=int, default=20260501, help="compare_records' seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    ap.add_argument("--jobs", type=int, default=1, help="trainings run side by side")
    ap.add_argument("--collect", action="store_true", help="train nothing: tabulate the saved results")
    ap.add_argument("--rescore", action="store_true",
                    help="train nothing: score the saved generated records again with the current report")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--note", action="append", default=[], help="a line about how the run was made, for the doc")
    a = ap.parse_args()
    names = [n for n in a.datasets.split(",") if n]
    systems = [s for s in a.systems.split(",") if s]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"unknown system(s) {bad}; choose from {', '.join(SYSTEMS)}")
    notes: list[str] = list(a.note)
    if not (a.collect or a.rescore) and any(s in PEERS for s in systems) and not PEER_PYTHON.exists():
        skipped = [s for s in systems if s in PEERS]
        msg = f"Peers skipped ({', '.join(skipped)}): .venv-peers is missing; `make peers` creates it."
        log(msg)
        notes.append(msg)
        systems = [s for s in systems if s not in PEERS]
    seeds = {"split": a.split_seed, "sample": a.sample_seed, "eval": a.eval_seed}
    infos = {}
    for name in names:
        infos[name] = prepare(name, a.split_seed)
        log(f"{name}: train {infos[name]['train']}, validation {infos[name]['validation']}, test {infos[name]['test']}")
    results: list[dict] = []
    if a.collect or a.rescore:
        for name in names:
            for system in [*systems, REFERENCE]:
                d = RUNS / name / system
                if a.rescore and (system == REFERENCE or (d / "generated.jsonl").exists()):
                    results.append(score(name, system, infos[name], a.eval_seed, seeds))
                elif (d / "result.json").exists():
                    results.append(json.loads((d / "result.json").read_text()))
    else:
        jobs = [(name, system) for name in names for system in systems]
        n_of = {name: a.samples or infos[name]["test"] for name in names}
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            done = list(pool.map(lambda j: (j, generate(j[0], j[1], infos[j[0]], a, n_of[j[0]])), jobs))
        failed = [j for j, meta in done if meta is None]
        for j in failed:
            notes.append(f"{j[0]} / {LABELS[j[1]]}: failed, see runs/quality/{j[0]}/{j[1]}/log.txt")
        for name in names:
            for system in [*systems, REFERENCE]:
                if (name, system) in failed:
                    continue
                results.append(score(name, system, infos[name], a.eval_seed, seeds))
    print(table(results))
    if not a.no_doc and results:
        write_doc(results, names, "python " + " ".join(sys.argv), a, notes)
        log("wrote docs/benchmarks.md (block quality)")


if __name__ == "__main__":
    main()
