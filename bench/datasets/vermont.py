"""Vermont addresses (Chou & Hathi 2019, section 2.2): the packaged copy in synth/data/vermont.

Source and licence: synth/data/vermont/README.md (OpenAddresses, Vermont statewide,
data of VCGI; licence notice VCGI_Warranty_Copyright_Notice_2013.pdf beside it). Split: synth.datasets.vermont_split(seed, 0.1), as bench/vermont.py; rows whose
postcode is empty or blank (140 of 33,432) are left out of every split, since the
p-value scores such a record as malformed. Validation: 10 % of the training rows.
"""
from __future__ import annotations

from bench.datasets import ROOT, Dataset


def _keep(r: dict) -> bool:
    return bool(str(r.get("postcode", "")).strip())


def load() -> list[dict]:
    from synth.datasets import vermont_rows

    return [r for r in vermont_rows() if _keep(r)]


def split(seed: int) -> tuple[list[dict], list[dict]]:
    from synth.datasets import vermont_split

    train, test = vermont_split(seed=seed, test_fraction=0.1)
    return [r for r in train if _keep(r)], [r for r in test if _keep(r)]


DATASET = Dataset(
    name="vermont",
    proto=ROOT / "protos/examples/address.proto",
    message="synth.examples.Address",
    domain="postal addresses (geography)",
    source="synth/data/vermont, shipped with the project (OpenAddresses Vermont statewide, VCGI data, the paper's \"valid\" split)",
    licence="VCGI warranty/copyright notice 2013 (synth/data/vermont/VCGI_Warranty_Copyright_Notice_2013.pdf)",
    features="flat; 6 strings of very different cardinality (street, number, city, postcode) "
             "plus coordinates (lat, lon) that must agree with the postcode",
    load=load,
    split=split,
    test_fraction=0.1,
    geo=("postcode", ["lat", "lon"]),
    notes="140 rows with an empty or blank postcode are left out.",
)
