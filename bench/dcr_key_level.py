"""Generators that know a dataset's keys but copy no row, scored like protosynth's rows.

Each draws whole training *keys* (the units a realistic record must reuse for its fields to
agree) and fills the rest from what training shows for that key, so no training row is
returned yet every key agrees with itself as in training:

- **vermont, street level:** a training (street, town, postcode) ∝ its number of training
  rows; coordinates from a Gaussian fitted to that key's training coordinates (the
  postcode's when the key has fewer than 3 rows); a house number uniform between the key's
  smallest and largest.
- **flights, schedule level:** a carrier ∝ its rows; the number of departures, the plane
  (or its absence) and the date from training rows of that carrier or all rows, each
  drawn on its own; then that many distinct training schedule entries of the carrier
  (flight number, origin, destination, scheduled times, distance) ∝ their counts, in
  scheduled order, each with the delays and air time of another training departure on
  the same route (the carrier's when the route has no other).

A second row draws the keys at their Good-Turing frequencies instead (a key seen c times
weighs (c + 1) N(c + 1) / N(c), N(c) keys being seen c times; c for c >= 30), the
frequencies fresh data would show. A third breaks the keys: each of a key's fields comes
from its own drawn key (Vermont: the town and postcode from two other keys, the
coordinates following the postcode; flights: each schedule field from its own entry of
the carrier), so the values are training ones but no key is reused whole.

Each row set is scored as `bench/dcr_range.py` scores protosynth's: the DCR share minus
the floor at 10 evaluation seeds, paired, and the near copies. Its first set also gets
the quality benchmark's report (`compare_records` at its evaluation seed): detection AUC,
association and, where there are postcodes, the pairs found and the p-value, so that the
generator's realism is on the same line as its DCR. Run `bench/quality.py` first: it
reads runs/quality/DATASET/. docs/benchmarks.md ("The default recipe", items 26 and 27)
quotes it.

    python bench/dcr_key_level.py vermont
"""
from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dcr_columns import quality_run  # noqa: E402
from dcr_range import FLOOR_SEEDS, SEED, floor_over_seeds, paired, spread  # noqa: E402
from synth.eval.compare import compare_records  # noqa: E402
from synth.eval.features import flatten  # noqa: E402

SETS = 3  # generated sets (seeds 0-2)
MIN_ROWS = 3  # a Vermont key with fewer training rows takes its postcode's coordinates


def gaussian(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.array(points)
    cov = np.cov(pts.T) if len(pts) >= MIN_ROWS else np.eye(2) * 1e-4
    return pts.mean(axis=0), cov + np.eye(2) * 1e-10


def good_turing(counts: np.ndarray) -> np.ndarray:
    """Good-Turing adjusted counts (c + 1) N(c + 1) / N(c), the raw count where N(c + 1) is 0 or c >= 30."""
    n_of = collections.Counter(counts.tolist())
    return np.array([(c + 1) * n_of[c + 1] / n_of[c] if c < 30 and n_of.get(c + 1) else c
                     for c in counts.tolist()], dtype=float)


def weights_of(counts: list[int], adjusted: bool) -> np.ndarray:
    """Drawing probabilities of keys with these training counts."""
    w = good_turing(np.array(counts)) if adjusted else np.array(counts, dtype=float)
    return w / w.sum()


def street_level(train: list[dict], n: int, seed: int, adjusted: bool = False, broken: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    by_postcode: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for r in train:
        groups[(r.get("street", ""), r.get("city", ""), r.get("postcode", ""))].append(r)
        by_postcode[r.get("postcode", "")].append((r["lat"], r["lon"]))
    keys = list(groups)
    p = weights_of([len(groups[k]) for k in keys], adjusted)
    out = []
    for i, j, k in zip(*(rng.choice(len(keys), n, p=p) for _ in range(3))):
        street, city, postcode = keys[i]
        rows = groups[keys[i]]
        if broken:  # town and postcode from two other keys; the coordinates follow the postcode
            city, postcode, rows = keys[j][1], keys[k][2], []
        points = [(r["lat"], r["lon"]) for r in rows]
        lat, lon = rng.multivariate_normal(*gaussian(points if len(rows) >= MIN_ROWS else by_postcode[postcode]))
        own = groups[keys[i]]  # the house number follows the street's key, broken or not
        numbers = [int(r["number"]) for r in own if r.get("number", "").isdigit()]
        number = str(int(rng.integers(min(numbers), max(numbers) + 1))) if numbers else own[0].get("number", "")
        out.append({"lat": float(lat), "lon": float(lon), "number": number, "street": street, "city": city,
                    "postcode": postcode})
    return out


SCHEDULE = ("flight", "origin", "dest", "sched_dep_time", "sched_arr_time", "distance")
OUTCOME = ("dep_delay", "arr_delay", "air_time")


def schedule_level(train: list[dict], n: int, seed: int, adjusted: bool = False, broken: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    by_carrier: dict[str, list[dict]] = collections.defaultdict(list)
    for r in train:
        by_carrier[r["flights"][0]["carrier"]].append(r)
    legs = {c: [f for r in rows for f in r["flights"]] for c, rows in by_carrier.items()}
    entries = {c: collections.Counter(tuple(f.get(k) for k in SCHEDULE) for f in legs[c]) for c in by_carrier}

    def pick(items: list, counts: list[int] | None = None, size: int = 1, replace: bool = False) -> list:
        p = weights_of(counts, adjusted) if counts is not None else None
        return [items[i] for i in rng.choice(len(items), size, replace=replace, p=p)]

    carriers = list(by_carrier)
    out = []
    for carrier in pick(carriers, [len(by_carrier[c]) for c in carriers], n, replace=True):
        rows, keys = by_carrier[carrier], list(entries[carrier])
        k = min(len(pick(rows)[0]["flights"]), len(keys))
        date = pick(train)[0]
        record = {"month": date["month"], "day": date["day"]}
        plane = pick(rows)[0].get("plane")
        if plane is not None:
            record["plane"] = plane
        flights = []
        drawn = pick(keys, [entries[carrier][x] for x in keys], k)
        if broken:  # each schedule field from its own entry of the carrier
            drawn = [tuple(pick(keys, [entries[carrier][x] for x in keys])[0][i] for i in range(len(SCHEDULE)))
                     for _ in drawn]
        for key in sorted(drawn, key=lambda x: x[3]):
            route = [f for f in legs[carrier] if (f["origin"], f["dest"]) == key[1:3] and f.get("flight") != key[0]]
            donor = pick(route or legs[carrier])[0]
            flights.append({"carrier": carrier, **dict(zip(SCHEDULE, key)),
                            **{o: donor[o] for o in OUTCOME if o in donor}})
        record["flights"] = flights
        out.append(record)
    return out


GENERATORS: dict[str, tuple[str, Callable[..., list[dict]]]] = {
    "vermont": ("street level", street_level),
    "flights": ("schedule level", schedule_level),
}


def realism(tree, test_records: list[dict], generated: list[dict], train_records: list[dict]) -> str:
    report = compare_records(tree, real=test_records, generated=generated, train=train_records, seed=SEED)
    pairs = {(p["a"], p["b"]): p["generated"] for p in report.get("pairs", {}).get("pairs", [])}
    found = pairs.get(("street", "postcode"))
    p_mean = report["summary"]["p_mean"]
    return (f"{report['summary']['detection_auc']:.3f} | {report['summary']['association_mean_abs_diff']:.3f} | "
            + (f"{found:.3f} | {p_mean:.3f}" if found is not None and p_mean is not None else "- | -"))


def main(argv: list[str] | None = None) -> int:
    dataset, model, train_records, test_records, _ = quality_run(__doc__, argv)
    if dataset not in GENERATORS:
        sys.exit(f"no key-level generator for {dataset!r}; one of {', '.join(GENERATORS)}")
    label, generate = GENERATORS[dataset]
    tree = model.tree
    train, test = flatten(tree, train_records), flatten(tree, test_records)
    floors, _ = floor_over_seeds(train, test)
    print(f"{dataset}, {label}: {SETS} generated sets of {test.n_rows} rows each; DCR share minus the floor over "
          f"{FLOOR_SEEDS} evaluation seeds, paired; the report's figures for the first set at seed {SEED}")
    print("| keys drawn | DCR share minus the floor | near copies | detection AUC | association | "
          "(street, postcode) found | p mean |")
    print("|---|---|---|---|---|---|---|")
    for how, adjusted, broken in (("by training count", False, False), ("by Good-Turing count", True, False),
                                  ("broken: each key field from its own key", False, True)):
        records = [generate(train_records, test.n_rows, s, adjusted, broken) for s in range(SETS)]
        _, excess, near = paired([flatten(tree, r) for r in records], train, test, floors)
        print(f"| {how} | {spread(excess)} | {near:.3f} | {realism(tree, test_records, records[0], train_records)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
