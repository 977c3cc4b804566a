"""The core CLI commands (inspect, sample, encode, decode, interpolate) and their errors."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from schemas import ADDRESS_PROTO, address_records, tiny, wire
from synth import store
from synth.cli import main
from synth.io import read_records
from synth.model import Model

PAPER_TOML = Path(__file__).resolve().parents[1] / "bench" / "configs" / "paper.toml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Model.create(ADDRESS_PROTO, "Address", records=address_records(16), config=tiny())
    return store.save(model, tmp_path_factory.mktemp("cli") / "address")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- inspect (the paper's configuration) ------------------------------------------------------------
def test_inspect_address_is_the_papers_model(capsys):
    code, out, err = run(capsys, "inspect", ADDRESS_PROTO, "--message", "Address", "--config", PAPER_TOML)
    assert code == 0, err
    lines = out.splitlines()
    assert "Tuple(synth.examples.Address, 8 children)" in lines[0]
    assert sum(" Tuple(" in ln for ln in lines) == 1
    children = [ln for ln in lines if re.match(r"^[├└]── ", ln)]
    assert len(children) == 8
    names = [c[4:].split()[0] for c in children]
    assert names == ["number", "street", "unit", "city", "district", "region", "postcode", "#floats"]
    strings = [c for c in children if "StringLiteral(utf-8" in c]
    assert len(strings) == 7
    assert out.count("shared") == 6
    assert all("shared" in c for c in strings[1:]) and "shared" not in strings[0]
    assert children[-1].startswith("└── ") and "ScalarTuple(lat, lon)" in children[-1]
    # appendix B sizes: GRU 128 with a 16-dim char embedding; ScalarTuple 2x128 / 128x2
    assert "[$strings, 182,417 params]" in strings[0]
    assert "642 params" in children[-1]
    m = re.search(r"latent: 128-dim;\s+total parameters: ([\d,]+)", out)
    assert m, out
    total = int(m.group(1).replace(",", ""))
    from synth.model_config import PAPER, ModelConfig

    assert total == Model.create(ADDRESS_PROTO, "Address", config=ModelConfig(**PAPER)).n_parameters() == 2_808_467


def test_inspect_with_config_and_data(capsys, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\nlatent_dim = 16\nchar_dim = 8\nshare_strings = false\n")
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in address_records(4)))
    code, out, err = run(capsys, "inspect", ADDRESS_PROTO, "--message", "Address", "--config", cfg,
                         "--data", data)
    assert code == 0, err
    assert "latent: 16-dim" in out
    assert out.count("shared") == 0  # one StringLiteral per field


# -- sample ------------------------------------------------------------------------------------------
def test_sample_jsonl_to_stdout(capsys, model_dir):
    code, out, err = run(capsys, "sample", model_dir, "-n", "7", "--seed", "3")
    assert code == 0, err
    rows = [json.loads(ln) for ln in out.splitlines()]
    assert len(rows) == 7
    model = store.load(model_dir)
    assert wire(model.messages(rows)) == wire(model.sample(7, seed=3))
    code, out2, _ = run(capsys, "sample", model_dir, "-n", "7", "--seed", "3")
    assert out2 == out  # seeded: reproducible


def test_sample_csv_has_a_header(capsys, model_dir, tmp_path):
    out_file = tmp_path / "s.csv"
    code, _, err = run(capsys, "sample", model_dir, "-n", "5", "--seed", "1", "--format", "csv", "-o", out_file)
    assert code == 0, err
    with open(out_file, newline="", encoding="utf-8") as f:  # keep \r inside quoted values
        rows = list(csv.reader(f))
    assert len(rows) == 6
    assert set(rows[0]) >= {"lat", "lon", "number", "street", "city", "postcode"}
    model = store.load(model_dir)
    back = read_records(out_file, model.message_class).records
    assert len(back) == 5


def test_sample_binpb_reads_back(capsys, model_dir, tmp_path):
    out_file = tmp_path / "s.binpb"
    code, _, err = run(capsys, "sample", model_dir, "-n", "9", "--seed", "2", "--format", "binpb", "-o", out_file)
    assert code == 0, err
    model = store.load(model_dir)
    back = read_records(out_file, model.message_class).records
    assert wire(back) == wire(model.sample(9, seed=2))


# -- encode / decode / interpolate via files ----------------------------------------------------------------
def test_encode_then_decode_via_files(capsys, model_dir, tmp_path):
    records = address_records(4, seed=9)
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in records))
    lat = tmp_path / "z.jsonl"
    code, _, err = run(capsys, "encode", model_dir, "-i", inp, "-o", lat)
    assert code == 0, err
    rows = [json.loads(ln) for ln in lat.read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["mean"]) == 16 and len(r["std"]) == 16 for r in rows)
    model = store.load(model_dir)
    mu, sigma = model.encode(records)
    torch.testing.assert_close(torch.tensor([r["mean"] for r in rows]), mu)
    torch.testing.assert_close(torch.tensor([r["std"] for r in rows]), sigma)

    dec = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "decode", model_dir, "-i", lat, "-o", dec, "--greedy")
    assert code == 0, err
    decoded = [json.loads(ln) for ln in dec.read_text().splitlines()]
    assert len(decoded) == 4
    assert wire(model.messages(decoded)) == wire(model.decode(mu, greedy=True))


def test_interpolate_via_files(capsys, model_dir, tmp_path):
    inp = tmp_path / "pair.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in address_records(2, seed=4)))
    code, out, err = run(capsys, "interpolate", model_dir, "-i", inp, "--steps", "4", "--method", "slerp")
    assert code == 0, err
    assert len([json.loads(ln) for ln in out.splitlines()]) == 4
    inp.write_text(json.dumps(address_records(1)[0]) + "\n")
    code, _, err = run(capsys, "interpolate", model_dir, "-i", inp)
    assert code == 2 and err.startswith("error:") and "two records" in err


# -- errors ---------------------------------------------------------------------------------------------
def test_unknown_model_dir_is_an_error(capsys, tmp_path):
    code, out, err = run(capsys, "sample", tmp_path / "nowhere", "-n", "2")
    assert code == 2
    assert err.startswith("error:") and "nowhere" in err
    assert "Traceback" not in err and out == ""


def test_library_errors_exit_2(capsys, tmp_path, model_dir):
    code, _, err = run(capsys, "inspect", ADDRESS_PROTO, "--message", "Nope")
    assert code == 2 and err.startswith("error:") and "synth.examples.Address" in err
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\nmessage A {\n  int32 x = ;\n}\n')
    code, _, err = run(capsys, "inspect", bad, "--message", "A")
    assert code == 2 and "bad.proto:3:" in err
    z = tmp_path / "z.jsonl"
    z.write_text(json.dumps([0.0] * 5) + "\n")
    code, _, err = run(capsys, "decode", model_dir, "-i", z)
    assert code == 2 and err.startswith("error:") and "16" in err
    recs = tmp_path / "r.jsonl"
    recs.write_text(json.dumps({"lat": 1.0}) + "\n" + json.dumps({"nope": 1}) + "\n")
    code, _, err = run(capsys, "encode", model_dir, "-i", recs)
    assert code == 2 and "record[1]" in err


def train_from_files(capsys, tmp_path: Path, proto_text: str, message: str, rows: list[dict],
                     run_toml: str) -> tuple[Path, Path]:
    """`synth train` on a .proto, a JSONL file of `rows` and a run.toml written under tmp_path;
    the model goes to tmp_path / "model". Returns (proto path, config path)."""
    proto, data, cfg = tmp_path / "schema.proto", tmp_path / "rows.jsonl", tmp_path / "run.toml"
    proto.write_text(proto_text)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg.write_text(run_toml)
    code, _, err = run(capsys, "train", proto, "--message", message, "--data", data, "--config", cfg,
                       "--out", tmp_path / "model", "--device", "cpu")
    assert code == 0, err
    return proto, cfg


def test_unshared_message_modules_train_and_sample_a_recursive_schema(capsys, tmp_path):
    """`share_message_modules = false` gives every message path its own Tuple. A repeated message
    inside a message used to take its Sequence's key, and training or sampling failed."""
    from schemas import RECURSIVE_PROTO

    rows = [{"name": "a", "weight": 2, "parent": {"name": "p", "children": [{"name": "c1"}, {"name": "c2"}]},
             "children": [{"name": "k", "children": [{"name": "g"}]}]}, {"name": "b", "weight": 1}] * 8
    proto, cfg = train_from_files(capsys, tmp_path, RECURSIVE_PROTO, "TreeNode", rows,
                                  "[model]\nlatent_dim = 16\nchar_dim = 8\nshare_message_modules = false\n"
                                  "[train]\nsteps = 3\nbatch_size = 8\n[train.tune]\nenabled = false\n")
    code, out, err = run(capsys, "sample", tmp_path / "model", "-n", "50", "--seed", "1")
    assert code == 0, err
    samples = [json.loads(line) for line in out.splitlines()]
    assert len(samples) == 50
    code, out, err = run(capsys, "inspect", proto, "--message", "TreeNode", "--config", cfg)
    assert code == 0, err
    lines = out.splitlines()
    sequences = [ln for ln in lines if "Sequence(repeated" in ln]
    assert len(sequences) == 3  # children, children[].children, parent.children
    assert len({ln.split("[")[-1].split(",", 1)[1] for ln in sequences}) == 1  # all the same Sequence size
    assert not any("Tuple(" in ln and "shared" in ln for ln in lines)  # no message module is shared


def test_generated_float32_extremes_cross_json_lines(capsys, tmp_path):
    """A `float` field trained on values at FLT_MAX and sampled hot reaches FLT_MAX, which protobuf
    writes as 3.4028235e+38 and its own JSON parser refuses; the records are read back all the same."""
    FLT_MAX = 3.4028234663852886e38
    rows = [{"f": v, "tag": t} for v, t in [(FLT_MAX, "hi"), (-FLT_MAX, "lo"), (1e38, "mid"), (-2e38, "x")] * 4]
    proto, _ = train_from_files(capsys, tmp_path, 'syntax = "proto3";\nmessage F { float f = 1; string tag = 2; }\n',
                                "F", rows, "[model]\nlatent_dim = 8\nchar_dim = 4\n[train]\nsteps = 2\nbatch_size = 8\n"
                                "[train.tune]\nenabled = false\n")
    out_file = tmp_path / "samples.jsonl"
    code, _, err = run(capsys, "sample", tmp_path / "model", "-n", "400", "--seed", "3", "--temperature", "50",
                       "--out", out_file)
    assert code == 0, err
    from synth.schema.loader import load_schema

    values = [m.f for m in read_records(out_file, load_schema(proto.read_text(), "F").message_class).records]
    assert len(values) == 400
    assert max(abs(v) for v in values) > 3.40282e38  # some draws did reach the clamp
