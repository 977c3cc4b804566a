"""Config plumbing: frozen dataclasses <-> plain dicts, JSON and TOML (STYLE.md a.4).

Every config object of the project is a frozen dataclass of plain values (and nested
config dataclasses); these helpers give each of them `from_dict` / `to_dict` with
unknown keys refused by name, so that a typo in `run.toml` is an error, not a no-op.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from synth.errors import ConfigError, Violation

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (recursively)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build `cls` from a dict, refusing unknown keys and converting nested dataclasses."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} option(s)",
            [Violation(f"{where}{k}", f"not an option; known: {', '.join(sorted(names))}") for k in unknown],
        )
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _convert(hints[k], v, f"{where}{k}.")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {cls.__name__}: {e}") from e


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value, where)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(hint)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return {k: from_dict(args[1], v, f"{where}{k}.") for k, v in value.items()}
    return value


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from e


def to_toml(cfg: Any) -> str:
    import tomli_w

    def strip_none(d: Any) -> Any:  # TOML has no null
        if isinstance(d, dict):
            return {k: strip_none(v) for k, v in d.items() if v is not None}
        return d

    return tomli_w.dumps(strip_none(to_dict(cfg)))
