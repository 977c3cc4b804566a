"""Config plumbing: frozen dataclasses <-> plain dicts, JSON and TOML.

Every config object of the project is a frozen dataclass of plain values (and nested
config dataclasses); these helpers give each of them `from_dict` / `to_dict`. A dict
from a run.toml, a manifest or a service upload is checked on entry: unknown keys are
refused by name (a typo in `run.toml` is an error, not a no-op), and every field's
value must have the field's type, checked by pydantic in strict mode (so `"0.001"` is
not a learning rate: TOML and JSON have real numbers; an integer is accepted where a
float is expected). All problems are reported at once, each with its field path
(`train.steps: expected an integer, got 'ten'`), in one `ConfigError`; the classes'
own range checks (`__post_init__`) then run, with their findings located the same way.
See docs/training.md for the run.toml reference.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from synth.errors import ConfigError, Violation

T = TypeVar("T")

# pydantic error types -> what the value should have been, in the words of a TOML user
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
    "dict_type": "a table", "list_type": "an array", "tuple_type": "an array",
}


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (recursively)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: Mapping[str, Any] | T | None, where: str = "") -> T:
    """Build config dataclass `cls` from a dict, checking names and types of every field.

    `where` prefixes the field paths in error messages (`"train."`). Nested config
    dataclasses are built from nested dicts. An instance of `cls` is returned as is.
    Raises `ConfigError` listing every problem found (unknown keys, wrong types, then
    out-of-range values), each as a `Violation(path, message)`.
    """
    value, problems = _build(cls, {} if data is None else data, where)
    if problems:
        raise ConfigError(f"invalid {cls.__name__} ({len(problems)} problem{'s' * (len(problems) > 1)})",
                          problems)
    return value


def check(cfg: Any, where: str = "") -> Any:
    """Re-validate a config object built in code (`TrainConfig(lr="0.1")` is not checked by
    Python): round-trips it through `to_dict` / `from_dict`. Returns it (as rebuilt)."""
    return from_dict(type(cfg), to_dict(cfg), where)


def _build(cls: Any, data: Any, where: str) -> tuple[Any, list[Violation]]:
    if isinstance(data, cls):
        return data, []
    if not isinstance(data, Mapping):
        return None, [Violation(where.rstrip(".") or cls.__name__,
                                f"expected a table of {cls.__name__} options, got {_show(data)}")]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    problems: list[Violation] = []
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(names))}"
            problems.append(Violation(f"{where}{key}", f"not a {cls.__name__} option; {hint}"))
            continue
        value, found = _field(hints[key], raw, f"{where}{key}")
        problems += found
        if not found:
            kwargs[key] = value
    if not problems:
        return _construct(cls, kwargs, where)
    # Still run the class's own checks on the fields that are fine (the others at their
    # defaults), so that one pass reports everything; findings on a field that already
    # has a problem are dropped.
    if all(f.name in kwargs or f.default is not dataclasses.MISSING
           or f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls) if f.init):
        bad = {v.path.split(".")[where.count(".")] for v in problems}
        _, more = _construct(cls, kwargs, where)
        problems += [v for v in more if v.path.split(".")[where.count(".")] not in bad]
    return None, problems


def _construct(cls: Any, kwargs: dict[str, Any], where: str) -> tuple[Any, list[Violation]]:
    try:
        return cls(**kwargs), []
    except ConfigError as e:  # the class's own range checks, located under `where`
        return None, [Violation(f"{where}{v.path}" if v.path else where.rstrip("."), v.message)
                      for v in e.violations] or [Violation(where.rstrip("."), e.message)]
    except (TypeError, ValueError) as e:
        return None, [Violation(where.rstrip(".") or cls.__name__, str(e))]


def _field(hint: Any, value: Any, path: str) -> tuple[Any, list[Violation]]:
    """One field's value, converted to its type, or the problems with it."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path + ".")
    if origin in (typing.Union, types.UnionType) and isinstance(value, Mapping):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg):
                return _build(arg, value, path + ".")
    if origin is dict and isinstance(value, Mapping):
        args = typing.get_args(hint)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            out, problems = {}, []
            for k, v in value.items():
                out[k], found = _build(args[1], v, f"{path}.{k}.")
                problems += found
            return out, problems
    if origin is tuple and isinstance(value, list):
        value = tuple(value)  # TOML and JSON have arrays, not tuples
    import pydantic

    try:
        return _adapter(hint).validate_python(value, strict=True), []
    except pydantic.ValidationError as e:
        return None, [_violation(path, err) for err in e.errors()]


@functools.lru_cache(maxsize=None)
def _adapter(hint: Any) -> Any:
    import pydantic

    return pydantic.TypeAdapter(hint)


def _violation(path: str, err: Any) -> Violation:
    where = ".".join([path, *(str(p) for p in err["loc"])])
    expected = _EXPECTED.get(err["type"])
    if expected is None:
        return Violation(where, err["msg"])
    return Violation(where, f"expected {expected}, got {_show(err['input'])}")


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
