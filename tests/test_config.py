"""Typed configuration: ModelConfig / TrainConfig / run.toml checked on entry, every
problem reported at once with its field path, one run.toml parser for CLI and service."""
from __future__ import annotations

import json
import tomllib

import pytest

from synth.configs import from_dict, to_dict, to_toml
from synth.errors import ConfigError
from synth.model_config import ModelConfig
from synth.run_config import RunConfig, load_run_config, parse_run_config, run_config_from_dict
from synth.train import TrainConfig
from synth.train.schedules import BetaSchedule

BAD_TOML = """
[model]
latent_dim = "big"
lattent_dim = 3

[train]
steps = "ten"
lr = "0.001"
device = 0

[train.beta]
warmup_steps = 1.5

[extra]
x = 1
"""

BAD_PATHS = ["extra", "model.latent_dim", "model.lattent_dim", "train.steps", "train.lr", "train.device",
             "train.beta.warmup_steps"]


def violations(e: pytest.ExceptionInfo) -> dict[str, str]:
    return {v.path: v.message for v in e.value.violations}


def test_wrong_type_named_with_field_path():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"steps": "ten"}, "train.")
    assert str(e.value.violations[0]) == "train.steps: expected an integer, got 'ten'"


def test_numbers_as_strings_are_refused_and_ints_accepted_for_floats():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"lr": "0.001"}, "train.")
    assert violations(e) == {"train.lr": "expected a number, got '0.001'"}
    cfg = from_dict(TrainConfig, {"lr": 1, "steps": 3})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.steps == 3


def test_bools_are_not_integers_and_floats_not_integers():
    with pytest.raises(ConfigError) as e:
        from_dict(ModelConfig, {"latent_dim": True, "char_dim": 8.0, "share_strings": 1}, "model.")
    assert set(violations(e)) == {"model.latent_dim", "model.char_dim", "model.share_strings"}


def test_nested_tables_and_dict_values_are_checked():
    with pytest.raises(ConfigError) as e:
        from_dict(ModelConfig, {"field_overrides": {"city": 3}}, "model.")
    assert violations(e) == {"model.field_overrides.city": "expected a string, got 3"}
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"beta": {"warmup_steps": "x"}, "objective": 5}, "train.")
    v = violations(e)
    assert v["train.beta.warmup_steps"] == "expected an integer, got 'x'"
    assert v["train.objective"].startswith("expected a table")


def test_several_problems_reported_at_once():
    with pytest.raises(ConfigError) as e:
        parse_run_config(BAD_TOML)
    assert sorted(violations(e)) == sorted(BAD_PATHS)
    text = str(e.value)
    assert "train.steps: expected an integer, got 'ten'" in text
    assert "train.lr: expected a number, got '0.001'" in text
    assert e.value.code == "invalid_config"


def test_unknown_keys_refused_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, {"stepz": 3}, "train.")
    assert "did you mean 'steps'" in violations(e)["train.stepz"]
    with pytest.raises(ConfigError) as e:
        parse_run_config("[modle]\nlatent_dim = 3\n")
    assert "modle" in violations(e)


def test_range_checks_located_by_field_path():
    with pytest.raises(ConfigError) as e:
        parse_run_config("[model]\nscalar_likelihood = 'laplace'\n[train]\nbatch_size = 0\n"
                         "[train.beta]\nkind = 'nope'\n")
    v = violations(e)
    assert set(v) == {"model.scalar_likelihood", "train.batch_size", "train.beta.kind"}


def test_toml_syntax_error():
    with pytest.raises(ConfigError) as e:
        parse_run_config("[train\n")
    assert "not valid TOML" in e.value.message


def test_round_trip_toml_and_json(tmp_path):
    run = run_config_from_dict({"model": {"latent_dim": 16, "field_overrides": {"city": "categorical"}},
                                "train": {"steps": 7, "lr": 2.5e-4, "beta": {"kind": "constant", "end": 0.5}}})
    toml_text = to_toml(run)
    assert "[train.beta]" in toml_text
    (tmp_path / "run.toml").write_text(toml_text)
    assert load_run_config(tmp_path / "run.toml") == run
    assert parse_run_config(toml_text) == run
    (tmp_path / "run.json").write_text(json.dumps(run.to_dict()))
    assert load_run_config(tmp_path / "run.json") == run
    assert load_run_config(run.to_dict()) == run
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(run.model)))) == run.model
    assert tomllib.loads(to_toml(run.train))["steps"] == 7
    assert RunConfig.from_file(tmp_path / "run.toml") == run


def test_overrides_are_checked_too():
    assert load_run_config(None, steps=5, device=None).train.steps == 5
    with pytest.raises(ConfigError) as e:
        load_run_config(None, steps="5")
    assert violations(e) == {"train.steps": "expected an integer, got '5'"}


def test_instances_pass_through_and_defaults():
    beta = BetaSchedule(kind="constant")
    assert from_dict(TrainConfig, {"beta": beta}).beta is beta
    assert from_dict(ModelConfig, None) == ModelConfig()
    assert load_run_config() == RunConfig()


def test_cli_and_service_use_the_same_parser(tmp_path, capsys):
    """A bad run.toml: the same violations from `synth train --config` and a job upload."""
    from synth import cli
    from synth.service import jobs
    from synth import run_config
    from synth.service.types import JobRequest, Limits

    assert jobs.run_config_from_dict is run_config.run_config_from_dict
    cfg = tmp_path / "run.toml"
    cfg.write_text(BAD_TOML)
    proto = tmp_path / "t.proto"
    proto.write_text('syntax = "proto3";\nmessage T { string word = 1; }\n')
    data = tmp_path / "d.jsonl"
    data.write_text('{"word": "a"}\n')
    rc = cli.main(["train", str(proto), "--message", "T", "--data", str(data), "--out", str(tmp_path / "out"),
                   "--config", str(cfg)])
    assert rc == 2
    cli_lines = {ln.strip()[2:] for ln in capsys.readouterr().err.splitlines() if ln.strip().startswith("- ")}

    from synth.service import ModelRegistry

    registry = ModelRegistry(tmp_path / "models", include_bundled=False)
    manager = jobs.JobManager(registry=registry, limits=Limits())
    with pytest.raises(ConfigError) as e:
        manager.create(JobRequest(proto=proto.read_text(), message="T", data=data.read_bytes(),
                                  data_filename="d.jsonl", config=BAD_TOML))
    service_lines = {str(v) for v in e.value.violations}
    assert service_lines == cli_lines
    assert {line.split(":")[0] for line in service_lines} == set(BAD_PATHS)


def test_manifests_still_load():
    """The bundled model's stored ModelConfig and run config pass the typed check."""
    from synth import store

    manifest = store.read_manifest("vermont-address")
    assert from_dict(ModelConfig, manifest["model_config"]) is not None
    run = (manifest.get("metadata") or {}).get("run_config")
    if run is not None:
        assert isinstance(load_run_config(run), RunConfig)
