"""Palmer penguins: 344 birds of three species on three islands (ecology; no coordinates).

Source: the `palmerpenguins` PyPI package 0.1.6, file palmerpenguins/data/penguins.csv
(the cleaned table of Horst, Hill & Gorman's R package). Data: Gorman KB, Williams TD,
Fraser WR (2014) "Ecological sexual dimorphism and environmental variability within a
community of Antarctic penguins (genus Pygoscelis)", PLoS ONE 9(3): e90081, Palmer
Station Antarctica LTER. Licence: CC0 (the package README: "Data are available by CC-0
license"); the package's code is MIT.

Left out: the 2 birds with no measurement at all (342 remain). A missing `sex` (9 of
them) is SEX_UNSPECIFIED, i.e. absent in proto3 JSON.
"""
from __future__ import annotations

import csv

from bench.datasets import ROOT, Dataset, canonical, package_dir

PROTO = ROOT / "protos/examples/penguin.proto"
MESSAGE = "synth.examples.Penguin"


def load() -> list[dict]:
    path = package_dir("palmerpenguins") / "data" / "penguins.csv"
    records = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["bill_length_mm"] == "NA":
                continue
            r = {"species": row["species"].upper(), "island": row["island"].upper(),
                 "bill_length_mm": float(row["bill_length_mm"]), "bill_depth_mm": float(row["bill_depth_mm"]),
                 "flipper_length_mm": int(float(row["flipper_length_mm"])),
                 "body_mass_g": int(float(row["body_mass_g"])), "year": int(row["year"])}
            if row["sex"] not in ("NA", ""):
                r["sex"] = row["sex"].upper()
            records.append(r)
    return canonical(records, PROTO, MESSAGE)


DATASET = Dataset(
    name="penguins",
    proto=PROTO,
    message=MESSAGE,
    domain="ecology (animal measurements)",
    source="palmerpenguins 0.1.6 (PyPI), data/penguins.csv; Gorman, Williams & Fraser 2014, Palmer Station LTER",
    licence="CC0 (data; package code MIT)",
    features="flat, small (342 records); 3 enums, 2 doubles, 3 int32s; no coordinates",
    load=load,
    test_fraction=0.2,
    notes="2 birds with no measurements left out; missing sex is SEX_UNSPECIFIED.",
)
