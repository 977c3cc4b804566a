"""Train one peer synthesizer on a flat training table under a wall-clock budget, sample,
un-flatten to records of the benchmark's proto and write them as JSON Lines.

Runs in the peers' own virtualenv (.venv-peers, `make peers`), never the project's:

    .venv-peers/bin/python bench/peers/run_peer.py --peer tvae \\
        --train runs/quality/flights/train_flat.jsonl --layout runs/quality/flights/layout.json \\
        --minutes 15 --n 800 --seed 0 --threads 1 --out runs/quality/flights/tvae/generated.jsonl

Peers (settings: bench/README.md):
  gaussian_copula  sdv.single_table.GaussianCopulaSynthesizer, defaults
  tvae             sdv.single_table.TVAESynthesizer, default 300 epochs, stopped at the budget
  ctgan            sdv.single_table.CTGANSynthesizer, default 300 epochs, stopped at the budget
  mostlyai         mostlyai-engine TabularARGN (engine.split/analyze/encode/train/generate),
                   max_training_time = what is left of the budget, validation = our split;
                   a layout with one repeated message of scalars (flights) is given to it as
                   two tables (parent + sequential child), not flattened

Besides OUT it writes OUT with `.meta.json` for `.jsonl`: versions, settings, fit and
sample seconds, epochs run.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.datasets.flatten import columns, unflatten  # noqa: E402

PEERS = ("gaussian_copula", "tvae", "ctgan", "mostlyai")


def read_table(path: str):
    import pandas as pd

    with open(path, encoding="utf-8") as f:
        return pd.DataFrame([json.loads(line) for line in f if line.strip()])


def frame_rows(df) -> list[dict]:
    """DataFrame -> list of dicts, with every kind of missing value (NaN, NA, NaT) as None."""
    df = df.astype(object).where(df.notna(), None)
    return df.to_dict(orient="records")


def typed(df, kinds: dict[str, str]):
    """Columns in layout order, with the dtypes a careful user would declare."""
    import pandas as pd

    df = df.reindex(columns=list(kinds))
    for col, kind in kinds.items():
        if kind == "numerical":
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        elif kind in ("count", "present"):
            df[col] = df[col].astype("Int64").astype(object).where(df[col].notna(), None).astype("string")
        elif kind == "bool":
            df[col] = df[col].astype(object)
        else:
            df[col] = df[col].astype(object).where(df[col].notna(), None).astype("string")
    return df


class _Deadline:
    """Stands in for tqdm in ctgan's epoch loops: stops yielding epochs at the deadline."""

    deadline = float("inf")
    epochs = 0

    def __init__(self, iterable, *args, **kwargs):
        self.iterable = iterable

    def __iter__(self):
        for x in self.iterable:
            if time.time() >= _Deadline.deadline:
                return
            _Deadline.epochs += 1
            yield x

    def set_description(self, *args, **kwargs):
        pass


def run_sdv(peer: str, train, kinds: dict[str, str], budget_s: float, t0: float, n: int, seed: int) -> tuple:
    import ctgan.synthesizers.ctgan as ctgan_mod
    import ctgan.synthesizers.tvae as tvae_mod
    import sdv
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    ctgan_mod.tqdm = tvae_mod.tqdm = _Deadline
    _Deadline.deadline = t0 + budget_s
    metadata = Metadata.load_from_dict({"tables": {"table": {"columns": {
        col: ({"sdtype": "numerical"} if kind == "numerical" else
              {"sdtype": "boolean"} if kind == "bool" else {"sdtype": "categorical"})
        for col, kind in kinds.items()}}}})
    if peer == "gaussian_copula":
        model, settings = GaussianCopulaSynthesizer(metadata), {}
    elif peer == "tvae":
        settings = {"epochs": 300, "enable_gpu": False}
        model = TVAESynthesizer(metadata, **settings)
    else:
        settings = {"epochs": 300, "enable_gpu": False}
        model = CTGANSynthesizer(metadata, **settings)
    model.fit({"table": train})  # sdv 2: a dict of one table
    fit_s = time.time() - t0
    t1 = time.time()
    out = model.sample(num_rows=n)
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out, {"package": f"sdv {sdv.__version__}", "class": type(model).__name__, "settings": settings,
                 "epochs_run": _Deadline.epochs if peer != "gaussian_copula" else None,
                 "fit_seconds": fit_s, "sample_seconds": time.time() - t1}


def run_mostlyai(train, validation, kinds: dict[str, str], geo: list[str] | None, budget_s: float,
                 t0: float, n: int, seed: int, workdir: Path) -> tuple:
    import importlib.metadata
    import shutil

    import pandas as pd
    from mostlyai import engine

    engine.init_logging()
    ws = workdir / "engine-ws"
    shutil.rmtree(ws, ignore_errors=True)
    df = pd.concat([train, validation], ignore_index=True) if validation is not None else train
    n_train = len(train)
    df.insert(0, "_rid", range(len(df)))
    encodings = {col: ("TABULAR_NUMERIC_AUTO" if kind == "numerical" else "TABULAR_CATEGORICAL")
                 for col, kind in kinds.items()}
    if geo:  # the coordinates as one TABULAR_LAT_LONG column, "lat,lon"
        lat, lon = geo
        df["__latlon"] = [None if pd.isna(a) or pd.isna(b) else f"{a},{b}" for a, b in zip(df[lat], df[lon])]
        df = df.drop(columns=[lat, lon])
        for c in (lat, lon):
            encodings.pop(c)
        encodings["__latlon"] = "TABULAR_LAT_LONG"
    if validation is not None:  # our validation rows, not a fresh random 20 %
        split = lambda keys: (keys[keys < n_train], keys[keys >= n_train])  # noqa: E731
    else:
        split = 0.9
    engine.split(tgt_data=df, tgt_primary_key="_rid", model_type="TABULAR", tgt_encoding_types=encodings,
                 trn_val_split=split, workspace_dir=ws)
    engine.analyze(workspace_dir=ws)  # value protection on (the default)
    engine.encode(workspace_dir=ws)
    left_min = max((budget_s - (time.time() - t0)) / 60.0, 0.05)
    engine.train(max_training_time=left_min, workspace_dir=ws, device="cpu")
    fit_s = time.time() - t0
    t1 = time.time()
    engine.generate(sample_size=n, rare_category_replacement_method="SAMPLE", workspace_dir=ws, device="cpu")
    out = pd.concat([pd.read_parquet(f) for f in sorted((ws / "SyntheticData").glob("*.parquet"))],
                    ignore_index=True)
    out = out.drop(columns=["_rid"], errors="ignore")
    if geo:
        parts = out.pop("__latlon").astype(object).map(
            lambda s: [float(x) for x in str(s).split(",")] if s is not None and str(s).count(",") == 1 else [None, None])
        out[geo[0]] = [p[0] for p in parts]
        out[geo[1]] = [p[1] for p in parts]
    settings = {"model": "TabularARGN (default)", "max_training_time_min": left_min, "max_epochs": 100,
                "value_protection": True, "rare_category_replacement_method": "SAMPLE",
                "encodings": "categorical / TABULAR_NUMERIC_AUTO" + (" / TABULAR_LAT_LONG(lat,lon)" if geo else ""),
                "validation": "the benchmark's validation split" if validation is not None else "random 10 %"}
    return out, {"package": f"mostlyai-engine {importlib.metadata.version('mostlyai-engine')}",
                 "class": "TabularARGN", "settings": settings, "epochs_run": None,
                 "fit_seconds": fit_s, "sample_seconds": time.time() - t1}


def sequence_field(layout: dict) -> dict | None:
    """The one top-level repeated message of scalars, if the layout has exactly one (and no
    other repeated or nested-repeated field): mostlyai then models it as a sequence table."""
    reps = [f for f in layout["fields"] if f["kind"] == "repeated"]
    nested_reps = any(g["kind"] == "repeated" for f in layout["fields"] if f["kind"] == "message"
                      for g in f["sub"]["fields"])
    if len(reps) != 1 or nested_reps or "sub" not in reps[0] or layout.get("geo"):
        return None
    if any(g["kind"] != "scalar" for g in reps[0]["sub"]["fields"]):
        return None
    return reps[0]


def run_mostlyai_two_table(train, validation, kinds: dict[str, str], layout: dict, rep: dict, budget_s: float,
                           t0: float, n: int, seed: int, workdir: Path) -> tuple:
    """mostlyai's own way with one level of nesting: a flat model of the parent table, then a
    sequential TabularARGN of the child rows in the context of their parent; half the budget each."""
    import importlib.metadata
    import shutil

    import pandas as pd
    from mostlyai import engine

    from bench.datasets.flatten import SEP

    engine.init_logging()
    name, max_len = rep["name"], rep["max_len"]
    sub = [f["name"] for f in rep["sub"]["fields"]]
    sub_kind = {f["name"]: f["dtype"] for f in rep["sub"]["fields"]}
    df = pd.concat([train, validation], ignore_index=True) if validation is not None else train
    n_train = len(train)
    parent_cols = [c for c in kinds if not c.startswith(name + SEP)]
    parent = df[parent_cols].copy()
    parent.insert(0, "_rid", range(len(df)))
    children = []
    for rid, row in zip(parent["_rid"], df.to_dict(orient="records")):
        count = row.get(name + SEP + "n")
        for i in range(int(count) if count is not None and not pd.isna(count) else 0):
            children.append({"_rid": rid, **{c: row.get(f"{name}{SEP}{i}{SEP}{c}") for c in sub}})
    child = pd.DataFrame(children, columns=["_rid", *sub])
    for c in sub:
        child[c] = pd.to_numeric(child[c], errors="coerce") if sub_kind[c] == "numerical" else child[c].astype("string")
    enc = lambda cols, kk: {c: ("TABULAR_NUMERIC_AUTO" if kk[c] == "numerical" else "TABULAR_CATEGORICAL")  # noqa: E731
                             for c in cols}
    split = ((lambda keys: (keys[keys < n_train], keys[keys >= n_train])) if validation is not None else 0.9)
    ws_p, ws_c = workdir / "engine-ws-parent", workdir / "engine-ws-child"
    for ws in (ws_p, ws_c):
        shutil.rmtree(ws, ignore_errors=True)
    # parent model: budget up to half-time
    engine.split(tgt_data=parent, tgt_primary_key="_rid", model_type="TABULAR",
                 tgt_encoding_types=enc(parent_cols, kinds), trn_val_split=split, workspace_dir=ws_p)
    engine.analyze(workspace_dir=ws_p)
    engine.encode(workspace_dir=ws_p)
    half = t0 + budget_s / 2
    engine.train(max_training_time=max((half - time.time()) / 60.0, 0.05), workspace_dir=ws_p, device="cpu")
    # child model: sequences of `name` rows in the context of the parent row
    engine.split(tgt_data=child, ctx_data=parent, tgt_context_key="_rid", ctx_primary_key="_rid",
                 model_type="TABULAR", tgt_encoding_types=enc(sub, sub_kind),
                 ctx_encoding_types=enc(parent_cols, kinds), trn_val_split=split, workspace_dir=ws_c)
    engine.analyze(workspace_dir=ws_c)
    engine.encode(workspace_dir=ws_c)
    engine.train(max_training_time=max((budget_s - (time.time() - t0)) / 60.0, 0.05), workspace_dir=ws_c,
                 device="cpu")
    fit_s = time.time() - t0
    t1 = time.time()
    read = lambda ws: pd.concat([pd.read_parquet(f) for f in sorted((ws / "SyntheticData").glob("*.parquet"))],  # noqa: E731
                                ignore_index=True)
    engine.generate(sample_size=n, rare_category_replacement_method="SAMPLE", workspace_dir=ws_p, device="cpu")
    gen_p = read(ws_p)
    gen_p["_rid"] = range(len(gen_p))
    engine.generate(ctx_data=gen_p, rare_category_replacement_method="SAMPLE", workspace_dir=ws_c, device="cpu")
    gen_c = read(ws_c)
    by_parent: dict = {}
    for r in frame_rows(gen_c):
        by_parent.setdefault(r["_rid"], []).append(r)
    rows, truncated = [], 0
    for p in frame_rows(gen_p):
        kids = by_parent.get(p["_rid"], [])
        truncated += max(len(kids) - max_len, 0)
        row = {k: v for k, v in p.items() if k != "_rid"}
        row[name + SEP + "n"] = min(len(kids), max_len)
        for i, kid in enumerate(kids[:max_len]):
            for c in sub:
                row[f"{name}{SEP}{i}{SEP}{c}"] = kid.get(c)
        rows.append(row)
    settings = {"model": "TabularARGN, two tables: parent (flat) + sequential child in the parent's context",
                "sequence_field": name, "max_len": max_len, "children_truncated": truncated,
                "budget": "half for the parent model, the rest for the child model", "max_epochs": 100,
                "value_protection": True, "rare_category_replacement_method": "SAMPLE",
                "validation": "the benchmark's validation split" if validation is not None else "random 10 %"}
    return pd.DataFrame(rows), {"package": f"mostlyai-engine {importlib.metadata.version('mostlyai-engine')}",
                                "class": "TabularARGN", "settings": settings, "epochs_run": None,
                                "fit_seconds": fit_s, "sample_seconds": time.time() - t1, "flattened": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", required=True, choices=PEERS)
    ap.add_argument("--train", required=True, help="flat training table, JSON Lines")
    ap.add_argument("--validation", help="flat validation table (used by peers that validate: mostlyai)")
    ap.add_argument("--layout", required=True, help="layout.json written by bench.datasets.prepare")
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock budget for fitting")
    ap.add_argument("--n", type=int, required=True, help="records to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    layout = json.loads(Path(a.layout).read_text())
    kinds = columns(layout)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train = typed(read_table(a.train), kinds)
    budget_s = a.minutes * 60.0
    if a.peer == "mostlyai":
        validation = typed(read_table(a.validation), kinds) if a.validation else None
        rep = sequence_field(layout)
        if rep is not None:
            gen, meta = run_mostlyai_two_table(train, validation, kinds, layout, rep, budget_s, t0, a.n, a.seed,
                                               out.parent)
        else:
            gen, meta = run_mostlyai(train, validation, kinds, layout.get("geo"), budget_s, t0, a.n, a.seed,
                                     out.parent)
    else:
        gen, meta = run_sdv(a.peer, train, kinds, budget_s, t0, a.n, a.seed)
    rows = frame_rows(gen)
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(unflatten(row, layout), ensure_ascii=False, separators=(",", ":")) + "\n")
    meta.setdefault("flattened", True)
    meta.update({"peer": a.peer, "threads": a.threads, "seed": a.seed, "minutes": a.minutes, "n": len(rows),
                 "torch": torch.__version__})
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
