"""The bundled pretrained Vermont address model: usable right after install, and as good as measured.

The floors are the numbers `bench/bundle_vermont.py` measured (docs/benchmarks.md) minus
a margin for the smaller sample used here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


from synth import store
from synth.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

FLOOR_P_MEAN = 0.43  # measured 0.479 on 10,000 samples (docs/benchmarks.md)
FLOOR_P_MEDIAN = 0.42  # measured 0.492


def test_the_bundled_model_is_listed_and_loads():
    assert "vermont-address" in store.bundled_models()
    model = store.load("vermont-address")
    assert model.schema.message_name == "synth.examples.Address"
    assert "metrics" in model.metadata and "pvalue" in model.metadata["metrics"]


def test_synth_sample_vermont_address_works_offline(capsys):
    assert main(["sample", "vermont-address", "-n", "5", "--seed", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    rows = [json.loads(line) for line in lines]
    assert all(r["postcode"].startswith("05") and 42.7 < r["lat"] < 45.1 and -73.5 < r["lon"] < -71.4 for r in rows)


def test_synth_evaluate_on_the_bundled_model_stays_above_its_floor(tmp_path, capsys):
    from vermont import benchmark_data

    train, _ = benchmark_data()
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in train))
    code = main(["evaluate", "vermont-address", "--data", str(data), "--samples", "2000", "--chains", "1",
                 "--recon-rows", "200", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    p = report["pvalue"]
    assert p["malformed"] == 0
    assert p["unknown"] <= 0.02 * 2000
    assert p["mean"] >= FLOOR_P_MEAN, p
    assert p["median"] >= FLOOR_P_MEDIAN, p
