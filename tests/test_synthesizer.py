"""The estimator API: synth.Synthesizer (fit / sample / encode / decode / interpolate /
evaluate / save / load / from_pretrained), on the address proto and a few hundred
Vermont rows, with a tiny model and a few steps so that each test takes seconds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import Message

import synth
from synth.datasets import vermont_split
from synth.errors import ConfigError, DataError, FailedPrecondition, InvalidArgument

ROOT = Path(__file__).resolve().parents[1]
PROTO = str(ROOT / "protos/examples/address.proto")
FIELDS = ["lat", "lon", "number", "street", "unit", "city", "district", "region", "postcode"]
TINY = {"model": {"latent_dim": 16, "char_dim": 8},
        "train": {"batch_size": 32, "eval_every": 0, "log_every": 5, "checkpoint_every": 0}}


@pytest.fixture(scope="module")
def rows() -> tuple[list[dict], list[dict]]:
    train, test = vermont_split()
    return train[:300], test[:40]


@pytest.fixture(scope="module")
def fitted(rows) -> synth.Synthesizer:
    return synth.Synthesizer(PROTO, "Address", config=TINY).fit(rows[0], steps=8, progress=False)


def test_the_readme_example_runs(rows, tmp_path):
    train, test = rows
    s = synth.Synthesizer(PROTO, "Address", config=TINY)
    assert s.fit(train, minutes=0.01, progress=False) is s  # a time budget alone: the clock decides
    assert s.result is not None and s.result.step > 0 and not s.result.stopped
    out = s.sample(5, seed=0, where={"city": "BURLINGTON"})
    assert len(out) == 5 and all(r["city"] == "BURLINGTON" for r in out)
    z = s.encode(test[:5])
    assert isinstance(z, np.ndarray) and z.shape == (5, 16) and z.dtype == np.float32
    assert len(s.decode(z)) == 5
    assert len(s.interpolate(test[0], test[1], steps=8)) == 8
    report = s.evaluate(test, n_samples=20, chains=1, recon_rows=20)
    assert report["model"] == "synth.examples.Address" and "memorization" in report
    s.save(tmp_path / "address")
    again = synth.Synthesizer.load(tmp_path / "address")
    assert again.sample(5, seed=3) == s.sample(5, seed=3)
    assert again.config.train.steps < 10**9 and again.config.train.time_budget_s == 0.0  # not carried on


def test_from_schema_and_minutes_with_steps(rows):
    s = synth.Synthesizer.from_schema(PROTO, "Address", config=TINY)
    s.fit(rows[0], steps=3, minutes=5, progress=False)
    assert s.result.step == 3
    assert s.model.metadata["run_config"]["train"]["time_budget_s"] == 300.0
    assert s.config.train.time_budget_s == 0.0  # the settings stay as given; overrides are per fit


def test_fit_from_a_file(rows, tmp_path):
    from synth.io import write_records

    path = tmp_path / "train.csv"
    s = synth.Synthesizer(PROTO, "Address", config=TINY)
    write_records(rows[0], path, s.message_class)
    s.fit(path, steps=2, progress=False)
    assert s.result.step == 2 and len(s.sample(2, seed=0)) == 2
    jsonl = tmp_path / "train.jsonl"
    write_records(rows[0][:50], jsonl, s.message_class)
    assert s.fit(str(jsonl), steps=1, progress=False).result.step == 1


def test_fit_from_messages_and_run_toml(rows, tmp_path):
    s = synth.Synthesizer(PROTO, "Address")
    msgs = [s.message_class(**{k: v for k, v in r.items()}) for r in rows[0][:100]]
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\nlatent_dim = 8\nchar_dim = 4\n[train]\nbatch_size = 16\neval_every = 0\n")
    s.fit(msgs, steps=2, config=cfg, progress=False)
    assert s.model.config.latent_dim == 8 and s.config.train.batch_size == 16


def test_fit_config_objects_and_bad_config(rows):
    s = synth.Synthesizer(PROTO, "Address")
    s.fit(rows[0][:64], steps=1, config=synth.ModelConfig(latent_dim=8, char_dim=4), progress=False)
    assert s.model.config.latent_dim == 8
    s.fit(rows[0][:64], config=synth.TrainConfig(steps=2, batch_size=8, eval_every=0), progress=False)
    assert s.result.step == 2 and s.model.config.latent_dim == 8  # the other part is kept
    with pytest.raises(ConfigError) as e:
        s.fit(rows[0], config={"train": {"steps": "ten", "lr": "0.001"}})
    assert {v.path for v in e.value.violations} == {"train.steps", "train.lr"}
    with pytest.raises(ConfigError):
        s.fit(rows[0], steps=True)
    with pytest.raises(InvalidArgument):
        s.fit(rows[0], minutes=-1)


def test_fit_from_a_dataframe(rows):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(rows[0])
    frame.columns = [c.upper() for c in frame.columns]  # matched case-insensitively, as CSV headers
    s = synth.Synthesizer(PROTO, "Address", config=TINY).fit(frame, steps=2, progress=False)
    assert s.result.step == 2
    from synth.synthesizer import frame_to_messages

    msgs = frame_to_messages(frame, s.message_class)
    assert [synth_dict(m) for m in msgs] == [synth_dict(s.message_class(**r)) for r in rows[0]]
    assert s.encode(frame.head(3)).shape == (3, 16)


def synth_dict(m: Message) -> dict:
    from synth.records import to_dict

    return to_dict(m)


def test_bad_dataframes_name_the_row_and_field(fitted):
    pd = pytest.importorskip("pandas")
    with pytest.raises(DataError) as e:
        fitted.encode(pd.DataFrame({"lat": [1.0], "colour": ["red"]}))
    assert "colour" in str(e.value)
    with pytest.raises(DataError) as e:
        fitted.encode(pd.DataFrame({"lat": [1.0, "north", 2.0], "city": ["A", "B", "C"]}, index=[10, 11, 12]))
    [v] = e.value.violations
    assert v.path == "row 11" and "lat" in v.message


def test_sample_in_all_three_forms(fitted):
    pd = pytest.importorskip("pandas")
    dicts = fitted.sample(6, seed=1)
    assert isinstance(dicts, list) and all(isinstance(r, dict) for r in dicts) and len(dicts) == 6
    msgs = fitted.sample(6, seed=1, output="messages")
    assert all(isinstance(m, fitted.message_class) for m in msgs)
    frame = fitted.sample(6, seed=1, output="dataframe")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == FIELDS and len(frame) == 6
    assert frame["city"].tolist() == [m.city for m in msgs]
    assert frame["lat"].dtype.kind == "f"
    # a DataFrame the synthesizer wrote reads back as the same records
    from synth.synthesizer import frame_to_messages

    assert frame_to_messages(frame, fitted.message_class) == msgs
    assert fitted.decode(fitted.encode(msgs), greedy=True, output="dataframe").shape == (6, 9)
    with pytest.raises(InvalidArgument):
        fitted.sample(1, output="table")


def test_dataframe_without_pandas_names_the_extra(fitted, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(FailedPrecondition) as e:
        fitted.sample(2, seed=0, output="dataframe")
    assert "pip install protosynth[pandas]" in str(e.value)


def test_encode_decode_interpolate(fitted, rows):
    test = rows[1]
    mean, std = fitted.encode(test[:4], return_std=True)
    assert mean.shape == std.shape == (4, 16) and (std > 0).all()
    assert fitted.decode(mean, greedy=True) == fitted.decode(mean.tolist(), greedy=True)
    assert fitted.decode(mean[0], seed=0, output="messages")[0].DESCRIPTOR.name == "Address"
    path = fitted.interpolate(test[0], test[1], steps=5, method="slerp", output="messages")
    assert len(path) == 5
    assert fitted.encode(test[0]).shape == (1, 16)  # one record


def test_save_load_gives_identical_samples(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = synth.Synthesizer.load(tmp_path / "m")
    assert loaded.sample(10, seed=7) == fitted.sample(10, seed=7)
    assert loaded.config.model == fitted.model.config
    assert loaded.config.train.steps == 8
    report = loaded.evaluate(train=fitted._train[:50], n_samples=20, chains=1, recon_rows=20)
    assert report["samples"] == 20


def test_from_pretrained():
    from synth import store

    s = synth.Synthesizer.from_pretrained("vermont-address")
    assert s.fitted and s.schema.message_name == "synth.examples.Address"
    assert s.sample(3, seed=0) == [synth_dict(m) for m in store.load("vermont-address").sample(3, seed=0)]
    with pytest.raises(synth.errors.NotFound):
        synth.Synthesizer.from_pretrained("no-such-model")


def test_unfitted_synthesizer_says_what_to_do():
    s = synth.Synthesizer(PROTO, "Address")
    assert "not fitted" in repr(s)
    with pytest.raises(FailedPrecondition, match="fit"):
        s.sample(1)


def test_import_synth_is_torch_and_pandas_free():
    code = ("import synth, sys; assert 'torch' not in sys.modules; assert 'pandas' not in sys.modules; "
            "assert 'Synthesizer' in dir(synth); synth.ModelConfig; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_lazy_exports():
    from synth.model import Model
    from synth.synthesizer import Synthesizer
    from synth.train import Trainer, TrainConfig

    assert (synth.Synthesizer, synth.Model, synth.Trainer, synth.TrainConfig) == (
        Synthesizer, Model, Trainer, TrainConfig)
    with pytest.raises(AttributeError):
        synth.NoSuchThing  # noqa: B018
