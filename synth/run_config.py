"""The one run.toml parser: `[model]` (ModelConfig) + `[train]` (TrainConfig) -> RunConfig.

Used by `synth train --config`, the service's job upload (`POST /v1/jobs`, config
part), `Synthesizer.fit(config=...)` and the benchmarks, so a run.toml means the same
thing, and a bad one is refused with the same violations, everywhere. Every problem
of both tables is reported at once, each located by its field path
(`train.steps: expected an integer, got 'ten'`). See docs/training.md.
"""
from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synth.configs import from_dict
from synth.errors import ConfigError, Violation
from synth.model_config import ModelConfig
from synth.train.config import RunConfig, TrainConfig

__all__ = ["RunConfig", "load_run_config", "parse_run_config", "parse_toml", "run_config_from_dict"]

TABLES = ("model", "train")


def run_config_from_dict(data: Mapping[str, Any] | None, **train_overrides: Any) -> RunConfig:
    """A run config from its dict form (parsed TOML/JSON, `RunConfig.to_dict()`).

    `train_overrides` replace `[train]` keys (None values are ignored: an absent
    command-line flag). Raises `ConfigError` with every problem of both tables.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError("a run config is a table with [model] and [train]",
                          [Violation("", f"expected a table, got {type(data).__name__}")])
    problems = [Violation(str(k), "not a table of a run config; use [model] and [train]")
                for k in data if k not in TABLES]
    sections: dict[str, Any] = {}
    for key, cls in (("model", ModelConfig), ("train", TrainConfig)):
        table = data.get(key)
        if key == "train":
            overrides = {k: v for k, v in train_overrides.items() if v is not None}
            if overrides and (table is None or isinstance(table, Mapping)):
                table = {**(table or {}), **overrides}
        try:
            sections[key] = from_dict(cls, table, f"{key}.")
        except ConfigError as e:
            problems += e.violations or [Violation(key, e.message)]
    if problems:
        raise ConfigError(f"invalid run config ({len(problems)} problem{'s' * (len(problems) > 1)})", problems)
    return RunConfig(sections["model"], sections["train"])


def parse_run_config(text: str | bytes | None, name: str = "config", **train_overrides: Any) -> RunConfig:
    """A run config from run.toml text (empty or None: all defaults). `name` locates
    TOML syntax errors (the file name, or `config` for an upload)."""
    return run_config_from_dict(parse_toml(text, name), **train_overrides)


def parse_toml(text: str | bytes | None, name: str = "config") -> dict[str, Any]:
    """run.toml text as a plain table, before any type check (the service bounds its numbers first)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError("the config is not UTF-8 text", [Violation(name, str(e))]) from e
    data: dict[str, Any] = {}
    if text and text.strip():
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("the config is not valid TOML", [Violation(name, str(e))]) from e
    return data


def load_run_config(source: str | Path | Mapping[str, Any] | RunConfig | None = None,
                    **train_overrides: Any) -> RunConfig:
    """A run config from a file path (`.toml`, or `.json` such as a manifest's
    `metadata.run_config`), a dict, a RunConfig, or None (defaults)."""
    if isinstance(source, RunConfig):
        source = source.to_dict()
    if source is None or isinstance(source, Mapping):
        return run_config_from_dict(source, **train_overrides)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the run config {path}", [Violation(str(path), str(e))]) from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError("the config is not valid JSON", [Violation(str(path), str(e))]) from e
        return run_config_from_dict(data, **train_overrides)
    return parse_run_config(text, str(path), **train_overrides)
