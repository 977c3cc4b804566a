"""`synth split`: a seeded, disjoint train/test split of a data file, in its own format."""
from __future__ import annotations

import json
from collections import Counter

from synth.cli import main
from synth.datasets import vermont_csv_path
from synth.io import read_records
from synth.records import to_dict
from synth.schema.loader import load_schema

ADDRESS = "protos/examples/address.proto"


def _rows(path) -> Counter:
    cls = load_schema(ADDRESS, "Address").message_class
    return Counter(json.dumps(to_dict(m), sort_keys=True) for m in read_records(path, cls).records)


def test_split_is_seeded_disjoint_and_complete(tmp_path):
    src = vermont_csv_path()
    args = [str(src), "--proto", ADDRESS, "--message", "Address", "--test-fraction", "0.2"]
    assert main(["split", *args, "--seed", "3", "--out-dir", str(tmp_path / "a")]) == 0
    assert main(["split", *args, "--seed", "3", "--out-dir", str(tmp_path / "b")]) == 0
    assert main(["split", *args, "--seed", "4", "--out-dir", str(tmp_path / "c")]) == 0
    train, test = _rows(tmp_path / "a" / "train.csv.gz"), _rows(tmp_path / "a" / "test.csv.gz")
    n_train, n_test = sum(train.values()), sum(test.values())
    assert abs(n_test / (n_train + n_test) - 0.2) < 0.001
    assert train + test == _rows(src)  # every source record lands in exactly one side
    assert _rows(tmp_path / "b" / "test.csv.gz") == test  # same seed, same split
    assert _rows(tmp_path / "c" / "test.csv.gz") != test


def test_split_refuses_a_bad_fraction(tmp_path, capsys):
    code = main(["split", str(vermont_csv_path()), "--proto", ADDRESS, "--message", "Address",
                 "--test-fraction", "1.5", "--out-dir", str(tmp_path)])
    assert code == 2 and "--test-fraction" in capsys.readouterr().err
