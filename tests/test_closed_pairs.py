"""Closed label pairs (synth/closed_pairs.py): found on the validation split after training,
they keep sampled labels to the combinations seen in training; decoding given latents is
left free; the choice is stored in the artifact and redone by `synth tune`."""
from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

from schemas import schema, tiny
from synth import store
from synth.cli import main
from synth.errors import ConfigError
from synth.model import EXACT_ROWS, Model
from synth.records import to_dict
from synth.train.config import TuneConfig
from synth.train.tune import choose_closed_pairs

PROTO = """
syntax = "proto3";
package closed_test;
message Row { string town = 1; string code = 2; string colour = 3; }
"""


def rows(n: int, seed: int) -> list[dict]:
    """Each town has two codes of its own; the colour is independent of both."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.randrange(6)
        out.append({"town": f"T{t}", "code": f"C{2 * t + rng.randrange(2)}", "colour": f"K{rng.randrange(4)}"})
    return out


TOWNS = {f"T{t}" for t in range(6)}
SEEN = {(f"T{t}", f"C{2 * t + k}") for t in range(6) for k in range(2)}


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    return Model.create(schema(PROTO, "Row"), records=rows(300, 0), config=tiny())


def pairs(records) -> set[tuple[str, str]]:
    """The (town, code) pairs of records whose town is a known one (an untrained model also
    spells new towns through the escape class, which leaves the code free)."""
    return {(r.get("town", ""), r.get("code", "")) for r in (to_dict(m) for m in records) if r.get("town") in TOWNS}


def test_only_the_pair_that_constrains_and_holds_on_validation_is_closed(model):
    m = Model.create(schema(PROTO, "Row"), records=rows(300, 0), config=tiny())
    rec = choose_closed_pairs(m, rows(300, 0), m.messages(rows(150, 1)), TuneConfig())
    assert rec["chosen"] == ["town -> code"]
    checked = {c["pair"]: c for c in rec["checked"]}
    # every colour goes with every town: all seen on validation, but nothing to restrict
    assert checked["colour -> town"]["validation_coverage"] == 1.0 and not checked["colour -> town"]["closed"]
    assert checked["town -> code"]["training_pairs"] == 12
    # a validation split whose combinations training never saw closes nothing
    unseen = [{**r, "code": f"C{(int(r['code'][1:]) + 4) % 12}"} for r in rows(150, 1)]
    assert choose_closed_pairs(m, rows(300, 0), m.messages(unseen), TuneConfig())["chosen"] == []
    with pytest.raises(ConfigError):
        TuneConfig(closed_min_coverage=0.0)


def test_sampled_records_keep_to_the_closed_combinations(model):
    m = model
    m.config = dataclasses.replace(m.config, closed_pairs={})
    free = pairs(m.sample(200, seed=3))
    assert free - SEEN  # the untrained decoder pairs towns and codes at random ...
    choose_closed_pairs(m, rows(300, 0), m.messages(rows(150, 1)), TuneConfig())
    for n in (EXACT_ROWS, 200):  # the small-request path and the chunked one
        assert pairs(m.sample(n, seed=3)) <= SEEN  # ... and keeps to the seen ones when closed
    assert pairs(m.sample(50, seed=4, where={"colour": "K1"})) <= SEEN
    assert {town for town, _ in pairs(m.sample(200, seed=3))} == TOWNS
    # decoding given latents is not restricted (a record with an unseen pair must come back)
    z = m.sample_latents(200, torch.Generator().manual_seed(5))
    assert pairs(m.decode(z, seed=5)) - SEEN
    assert pairs(m.decode(z, seed=5, closed=True)) <= SEEN


def test_the_pairs_survive_save_and_load_and_synth_tune_finds_them(model, tmp_path):
    m = model
    choose_closed_pairs(m, rows(300, 0), m.messages(rows(150, 1)), TuneConfig())
    store.save(m, tmp_path / "m")
    back = store.load(tmp_path / "m")
    assert back.config.closed_pairs == m.config.closed_pairs
    assert [to_dict(r) for r in back.sample(30, seed=9)] == [to_dict(r) for r in m.sample(30, seed=9)]
    # `synth tune` with the training records finds them again, and records every pair it checked
    back.config = dataclasses.replace(back.config, closed_pairs={})
    store.save(back, tmp_path / "bare")
    for name, data in (("train.jsonl", rows(300, 0)), ("val.jsonl", rows(150, 1))):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in data))
    args = ["tune", str(tmp_path / "bare"), "--validation", str(tmp_path / "val.jsonl"), "--no-prior",
            "--no-temperatures", "--no-calibrate", "--no-encoding"]
    assert main([*args, "--train", str(tmp_path / "train.jsonl")]) == 0
    tuned = store.read_manifest(tmp_path / "bare")
    assert tuned["metadata"]["tuning"]["closed_pairs"]["chosen"] == ["town -> code"]
    assert store.load(tmp_path / "bare").config.closed_pairs == m.config.closed_pairs
    # without training records they are kept as they are
    assert main(args) == 0
    assert store.load(tmp_path / "bare").config.closed_pairs == m.config.closed_pairs
