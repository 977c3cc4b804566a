"""A Vermont generator that knows streets but copies no row, scored like protosynth's rows.

It draws a training (street, town, postcode) ∝ its number of training rows, coordinates
from a Gaussian fitted to that key's training coordinates (the postcode's when the key has
fewer than 3 rows) and a house number uniform between the key's smallest and largest.
No training row is returned, yet every street agrees with its town, postcode and area as
in training. A second row draws the keys at their Good-Turing frequencies instead (a key
seen c times weighs (c + 1) N(c + 1) / N(c), N(c) keys being seen c times; c for c >= 30),
the frequencies fresh data would show. Its DCR share is compared with the floor at 10 evaluation seeds, paired, as
`bench/dcr_range.py` compares protosynth's (run `bench/quality.py` first: it reads
runs/quality/vermont/). docs/benchmarks.md ("The default recipe", item 26) quotes it.

    python bench/dcr_street_level.py
"""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dcr_range import FLOOR_SEEDS, floor_over_seeds, paired, spread  # noqa: E402
from synth import store  # noqa: E402
from synth.eval.features import flatten  # noqa: E402

SETS = 3  # generated sets (seeds 0-2)
MIN_ROWS = 3  # a key with fewer training rows takes its postcode's coordinates


def gaussian(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.array(points)
    cov = np.cov(pts.T) if len(pts) >= MIN_ROWS else np.eye(2) * 1e-4
    return pts.mean(axis=0), cov + np.eye(2) * 1e-10


def good_turing(counts: np.ndarray) -> np.ndarray:
    """Good-Turing adjusted counts (c + 1) N(c + 1) / N(c), the raw count where N(c + 1) is 0 or c >= 30."""
    n_of = collections.Counter(counts.tolist())
    return np.array([(c + 1) * n_of[c + 1] / n_of[c] if c < 30 and n_of.get(c + 1) else c
                     for c in counts.tolist()], dtype=float)


def street_level(train: list[dict], n: int, seed: int, adjusted: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    by_postcode: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for r in train:
        groups[(r.get("street", ""), r.get("city", ""), r.get("postcode", ""))].append(r)
        by_postcode[r.get("postcode", "")].append((r["lat"], r["lon"]))
    keys = list(groups)
    weights = np.array([len(groups[k]) for k in keys], dtype=float)
    if adjusted:
        weights = good_turing(weights.astype(int))
    out = []
    for i in rng.choice(len(keys), n, p=weights / weights.sum()):
        street, city, postcode = keys[i]
        rows = groups[keys[i]]
        points = [(r["lat"], r["lon"]) for r in rows]
        lat, lon = rng.multivariate_normal(*gaussian(points if len(rows) >= MIN_ROWS else by_postcode[postcode]))
        numbers = [int(r["number"]) for r in rows if r.get("number", "").isdigit()]
        number = str(int(rng.integers(min(numbers), max(numbers) + 1))) if numbers else rows[0].get("number", "")
        out.append({"lat": float(lat), "lon": float(lon), "number": number, "street": street, "city": city,
                    "postcode": postcode})
    return out


def main() -> int:
    root = ROOT / "runs/quality/vermont"
    train_records, test_records = ([json.loads(x) for x in (root / f).open()] for f in ("train.jsonl", "test.jsonl"))
    tree = store.load(root / "protosynth/model").tree
    train, test = flatten(tree, train_records), flatten(tree, test_records)
    floors, _ = floor_over_seeds(train, test)
    print(f"vermont, {SETS} generated sets of {test.n_rows} rows each; DCR share minus the floor over "
          f"{FLOOR_SEEDS} evaluation seeds, paired")
    print("| keys drawn | DCR share minus the floor | near copies |")
    print("|---|---|---|")
    for label, adjusted in (("by training count", False), ("by Good-Turing count", True)):
        sets = [flatten(tree, street_level(train_records, test.n_rows, s, adjusted)) for s in range(SETS)]
        _, excess, near = paired(sets, train, test, floors)
        print(f"| {label} | {spread(excess)} | {near:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
