"""`Synthesizer`: the estimator-style Python API, a thin facade over the library's parts.

    import synth
    s = synth.Synthesizer("address.proto", "Address")
    s.fit("train.csv", minutes=10)           # or dicts, messages, a pandas DataFrame
    s.sample(100, seed=0)                    # -> list of dicts (proto3 JSON mapping)
    s.sample(100, where={"city": "BURLINGTON"}, output="dataframe")
    s.save("runs/address"); synth.Synthesizer.load("runs/address")
    synth.Synthesizer.from_pretrained("vermont-address")

What it wires together, so that people who need more can use the parts directly:
`synth.schema.loader.load_schema` (the schema), `synth.run_config.load_run_config`
(the model and training settings, the same parser as `synth train --config`),
`synth.model.Model.create` (the compiled model), `synth.train.Trainer` (the training
loop, its progress bar and time budget), `synth.store` (artifacts, bundled models),
`synth.io.read_records` (csv / jsonl / binpb files) and `synth.eval.report.evaluate`.
docs/training.md and docs/model.md describe the settings; the model is the paper's
(Chou & Hathi 2019).

Data forms accepted wherever records go in (`fit`, `encode`, `evaluate`, the ends of
`interpolate`): a path to a data file, a list of dicts (proto3 JSON mapping) or
messages, or a pandas DataFrame (one column per field, dotted for nested messages,
cells converted to the field types by the CSV reader's rules). Nothing is dropped
silently: an unknown column or a bad cell raises `DataError` naming the row and field.
pandas is optional (`pip install protosynth[pandas]`); it is imported only when a
DataFrame is passed in or asked for.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from synth.errors import DataError, FailedPrecondition, InvalidArgument, Violation

if TYPE_CHECKING:
    from synth.model import Model
    from synth.run_config import RunConfig
    from synth.train import TrainConfig, TrainResult

__all__ = ["Synthesizer", "OUTPUTS"]

OUTPUTS = ("dicts", "messages", "dataframe")
UNBOUNDED_STEPS = 1_000_000_000  # `fit(minutes=...)` without `steps`: the clock decides
PANDAS_HINT = "pip install protosynth[pandas]"


class Synthesizer:
    """A synthesizer for one protobuf message: fit it on records, then sample, encode,
    decode, interpolate and evaluate, and save or load it as a model artifact.

    `schema` is a .proto path or text, a generated message class, or a Descriptor;
    `message` names the record message (optional when the schema has one, or when a
    class is given). `config` holds the model and training settings (see `fit`).
    """

    def __init__(self, schema: Any, message: str | None = None, *, config: Any = None):
        from synth.schema.loader import load_schema

        self.schema = load_schema(schema, message)
        self.config: RunConfig = _run_config(config)
        self.model: Model | None = None
        self.result: TrainResult | None = None  # the last `fit`: steps, losses, wall time
        self._train: list[Message] | None = None  # the last `fit`'s records, for `evaluate`

    @classmethod
    def from_schema(cls, schema: Any, message: str | None = None, *, config: Any = None) -> "Synthesizer":
        """Same as `Synthesizer(schema, message, config=config)`."""
        return cls(schema, message, config=config)

    @classmethod
    def from_model(cls, model: "Model") -> "Synthesizer":
        """Wrap an already built or loaded `synth.model.Model`."""
        from synth.run_config import RunConfig, load_run_config

        self = cls.__new__(cls)
        self.schema, self.model, self.result, self._train = model.schema, model, None, None
        stored = (model.metadata or {}).get("run_config")
        try:
            self.config = load_run_config(stored) if isinstance(stored, Mapping) else None
        except Exception:  # an older or foreign run config: keep the model's own settings
            self.config = None
        train = self.config.train if self.config is not None else _default_train()
        if train.steps >= UNBOUNDED_STEPS:  # fitted with `minutes` alone: do not carry that on
            train = dataclasses.replace(train, steps=_default_train().steps, time_budget_s=0.0)
        self.config = RunConfig(model.config, train)
        return self

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Synthesizer":
        """Load a model artifact written by `save` (or by `synth train`)."""
        from synth import store

        return cls.from_model(store.load(path, device))

    @classmethod
    def from_pretrained(cls, name: str, device: str = "cpu") -> "Synthesizer":
        """A model bundled with protosynth, by name (`"vermont-address"`); see
        `synth.store.bundled_models()` for the list."""
        from synth import store
        from synth.errors import NotFound

        bundled = store.bundled_models()
        if name not in bundled:
            raise NotFound(f"no bundled model named {name!r}; bundled: {', '.join(sorted(bundled)) or 'none'}",
                           [Violation("name", "use one of the bundled names, or Synthesizer.load(path) "
                                              "for a model directory")], bundled=sorted(bundled))
        return cls.load(bundled[name], device)

    # -- training ------------------------------------------------------------------------------
    def fit(self, data: Any, *, steps: int | None = None, minutes: float | None = None,
            config: Any = None, test: Any = None, validation: Any = None, seed: int | None = None,
            progress: bool = True,
            out: str | Path | None = None, data_format: str | None = None,
            skip_bad: bool = False) -> "Synthesizer":
        """Compile a fresh model for the schema and train it on `data`; returns self.

        `config`: the model and training settings, as a run.toml (or .json) path, a
        dict in run.toml form (`{"model": {...}, "train": {...}}`), a `RunConfig`, a
        `ModelConfig` or a `TrainConfig` (the other part keeps its current value);
        checked on entry, every problem reported with its field path. It replaces the
        settings given to the constructor. `steps` and `seed` override `[train]`.
        `minutes` is a time budget (`train.time_budget_s`): training ends normally
        when it is spent; without `steps` the clock alone decides, with both the
        first limit reached does. Schedules given as fractions of the run (the
        default beta warm-up) then follow elapsed / budget. `validation`: records for
        early stopping and the tuning after training (prior size, temperatures);
        without it a seeded split of `data` is held out (`[train]
        validation_fraction`, default 0.1; 0 turns it off), before the model is
        compiled. `test`: held-out records for the trainer's test loss, logged only
        (never used for a choice). `out`: also keep the run there
        (artifact, checkpoints, metrics.jsonl, as `synth train --out`); without it
        the run lives in a temporary directory. `progress`: the trainer's progress bar.
        `data_format`/`skip_bad`: for data files, as `synth train`'s flags.

        Ctrl-C stops training early; the model trained so far is kept and
        `self.result.stopped` is True.
        """
        import torch

        from synth.model import Model
        from synth.train import Trainer

        if config is not None:
            self.config = _run_config(config, self.config)
        overrides: dict[str, Any] = {}
        if steps is not None:
            overrides["steps"] = steps
        if seed is not None:
            overrides["seed"] = seed
        if minutes is not None:
            if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
                raise InvalidArgument(f"minutes must be a number > 0, got {minutes!r}",
                                      [Violation("minutes", "a time budget in minutes, e.g. 10")])
            overrides["time_budget_s"] = float(minutes) * 60.0
            if steps is None:
                overrides["steps"] = UNBOUNDED_STEPS
        run = _run_config(self.config.to_dict(), train_overrides=overrides) if overrides else self.config
        from synth.train.validation import explicit_validation, split_validation

        train = self._messages(data, data_format, skip_bad)
        test_msgs = self._messages(test, data_format, skip_bad) if test is not None else None
        if not train:
            raise DataError("no training records", [Violation("data", "pass at least one record")])
        if validation is not None:
            val = self._messages(validation, data_format, skip_bad)
            info = explicit_validation(len(train), len(val))
        else:  # held out before the model is compiled: its data-dependent choices never see it
            train, val, info = split_validation(train, run.train)
        torch.manual_seed(run.train.seed)
        model = Model.create(self.schema, records=train, config=run.model)
        work = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="protosynth-fit-"))
        try:
            trainer = Trainer(model, run.train, train, test_msgs, work, progress=progress, run_config=run,
                              validation_records=val, validation_info=info)
            self.result = trainer.run()
        finally:
            if out is None:
                shutil.rmtree(work, ignore_errors=True)
        if self.result.stopped:
            print(f"training stopped at step {self.result.step}; keeping the model trained so far",
                  file=sys.stderr)
        self.model, self._train = model, train
        model.vae.eval()
        return self

    # -- generation and latents ---------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None, *, where: Mapping[str, Any] | None = None,
               temperature: float | None = None, greedy: bool = False, output: str = "dicts") -> Any:
        """`n` synthetic records; the same seed gives the same records.

        `where`: `{field path: value}` conditions every record satisfies exactly (the
        other fields are drawn conditioned on them). `output`: "dicts" (proto3 JSON
        mapping, .proto field names), "messages", or "dataframe" (needs pandas).
        """
        _check_output(output)
        model = self._fitted()
        kwargs = {"where": dict(where)} if where else {}
        return self._out(model.sample(n, seed=seed, temperature=temperature, greedy=greedy, **kwargs), output)

    def encode(self, rows: Any, *, return_std: bool = False, data_format: str | None = None) -> Any:
        """The latent means of `rows`: a numpy float32 array of shape (n, latent_dim).

        These are the posterior means mu (what `decode` and `interpolate` take), refined on
        each record as the model's `encode_refine_steps` says (docs/model.md, "Encoding"). With
        `return_std=True`, returns `(mean, std)` (std: the first level's sigma).
        """
        model = self._fitted()
        mu, sigma = model.encode(self._messages(rows, data_format, False))
        mean = mu.numpy()
        return (mean, sigma.numpy()) if return_std else mean

    def decode(self, z: Any, *, seed: int | None = None, greedy: bool = False,
               temperature: float | None = None, output: str = "dicts") -> Any:
        """Latents (a numpy array, torch tensor or nested list, shape (n, latent_dim) or
        (latent_dim,)) -> records in the `output` form. Deterministic with a seed or greedy."""
        _check_output(output)
        model = self._fitted()
        return self._out(model.decode(z, temperature=temperature, greedy=greedy, seed=seed), output)

    def interpolate(self, a: Any, b: Any, steps: int = 8, *, method: str = "linear", greedy: bool = True,
                    seed: int | None = None, output: str = "dicts") -> Any:
        """`steps` records along the latent path from record `a` to record `b` (both ends
        included); `method` "linear" or "slerp". Greedy decoding by default."""
        _check_output(output)
        model = self._fitted()
        ends = self._messages([a, b], None, False)
        records, _ = model.interpolate(ends[0], ends[1], steps, method=method, greedy=greedy, seed=seed)
        return self._out(records, output)

    def evaluate(self, test: Any = None, train: Any = None, **options: Any) -> dict[str, Any]:
        """The evaluation report of `synth evaluate` (`synth.eval.report.evaluate`).

        `test`: held-out records (real rows the samples are compared with, test loss).
        `train`: the model's training records (memorization, reconstruction); default:
        the records of the last `fit` (none for a loaded model). At least one of them
        is needed. `options` are passed on (`n_samples`, `seed`, `chains`, ...).
        """
        from synth.eval.report import evaluate

        model = self._fitted()
        test_msgs = self._messages(test, None, False) if test is not None else None
        train_msgs = self._messages(train, None, False) if train is not None else self._train
        if not test_msgs and not train_msgs:
            raise InvalidArgument("evaluate needs records: pass test=... (held-out rows) or train=...")
        return evaluate(model, train_msgs, test=test_msgs, **options)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the model artifact (weights.safetensors + manifest.json) to directory `path`;
        `Synthesizer.load(path)`, `synth sample path` and the server read it."""
        from synth import store

        return store.save(self._fitted(), path)

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def message_class(self) -> type[Message]:
        return self.schema.message_class

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def __repr__(self) -> str:
        state = "fitted" if self.model is not None else "not fitted"
        return f"Synthesizer({self.schema.message_name}, {state})"

    def _fitted(self) -> "Model":
        if self.model is None:
            raise FailedPrecondition("this Synthesizer has no model yet: call fit(data) first, or use "
                                     "Synthesizer.load(path) / Synthesizer.from_pretrained(name)")
        return self.model

    def _messages(self, data: Any, data_format: str | None, skip_bad: bool) -> list[Message]:
        return records_of(data, self.message_class, data_format, skip_bad)

    def _out(self, records: list[Message], output: str) -> Any:
        if output == "messages":
            return records
        if output == "dataframe":
            return messages_to_frame(records, self.message_class)
        from synth.records import to_dict

        return [to_dict(r) for r in records]


# ------------------------------------------------------------------------------------ settings


def _default_train() -> "TrainConfig":
    from synth.train import TrainConfig

    return TrainConfig()


def _run_config(config: Any, current: "RunConfig | None" = None,
                train_overrides: Mapping[str, Any] | None = None) -> "RunConfig":
    """Any accepted form of settings -> a checked RunConfig (see `Synthesizer.fit`)."""
    from synth.model_config import ModelConfig
    from synth.run_config import RunConfig, load_run_config
    from synth.train import TrainConfig

    overrides = dict(train_overrides or {})
    if isinstance(config, ModelConfig):
        base = current.to_dict() if current is not None else {}
        return load_run_config({**base, "model": _as_dict(config)}, **overrides)
    if isinstance(config, TrainConfig):
        base = current.to_dict() if current is not None else {}
        return load_run_config({**base, "train": _as_dict(config)}, **overrides)
    if isinstance(config, RunConfig):
        return load_run_config(config.to_dict(), **overrides)
    if config is None or isinstance(config, (Mapping, str, Path)):
        return load_run_config(config, **overrides)
    raise InvalidArgument(f"config must be a run.toml path, a dict, a RunConfig, a ModelConfig or a "
                          f"TrainConfig, not {type(config).__name__}")


def _as_dict(cfg: Any) -> dict[str, Any]:
    """A config object's dict form, so that values set in code are type-checked too."""
    from synth.configs import to_dict

    return to_dict(cfg)


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise InvalidArgument(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}",
                              [Violation("output", f"one of {', '.join(OUTPUTS)}")])


# ------------------------------------------------------------------------------------ records in


def records_of(data: Any, message_class: type[Message], data_format: str | None = None,
               skip_bad: bool = False) -> list[Message]:
    """Any accepted data form -> messages of `message_class` (see the module docstring)."""
    from synth.records import to_messages

    if isinstance(data, (str, Path)):
        from synth.io import read_records

        result = read_records(data, message_class, data_format, skip_bad=skip_bad)
        if result.skipped:
            print(f"skipped {result.skipped} bad record(s) in {data}", file=sys.stderr)
        return result.records
    if _is_frame(data):
        return frame_to_messages(data, message_class, skip_bad)
    if isinstance(data, (Message, Mapping)):
        data = [data]
    if isinstance(data, (bytes, bytearray)) or not isinstance(data, Iterable):
        raise InvalidArgument(f"cannot read records from a {type(data).__name__}; pass a file path, a list "
                              "of dicts or messages, or a pandas DataFrame")
    return to_messages(list(data), message_class)


def _is_frame(data: Any) -> bool:
    """A pandas DataFrame, recognised without importing pandas."""
    return type(data).__module__.split(".")[0] == "pandas" and type(data).__name__ == "DataFrame"


def frame_to_messages(frame: Any, message_class: type[Message], skip_bad: bool = False) -> list[Message]:
    """DataFrame rows -> messages, with the CSV reader's column matching and cell parsing
    (synth/io/csv_format.py): columns are field names (case-insensitive, dotted for nested
    messages), cells are converted to the field's type, a missing cell (None, NaN, "")
    leaves the field unset. Every bad row is reported, by index label and field."""
    from synth.io import csv_format

    header = [str(c) for c in frame.columns]
    try:
        columns = csv_format._plan_columns(header, message_class.DESCRIPTOR, "DataFrame columns")
    except DataError:
        if _has_nested_cells(frame):  # list / dict cells: repeated or map fields, as JSON values
            return _frame_as_json(frame, message_class, skip_bad)
        raise
    out: list[Message] = []
    problems: list[Violation] = []
    for label, row in zip(frame.index, frame.itertuples(index=False, name=None)):
        item = csv_format._row_to_message([_cell_text(v) for v in row], len(header), columns,
                                          message_class, f"row {label}")
        if isinstance(item, Message):
            out.append(item)
        else:
            problems += item
    _bad_rows(problems, message_class, skip_bad)
    return out


def _frame_as_json(frame: Any, message_class: type[Message], skip_bad: bool) -> list[Message]:
    """Rows whose cells hold lists or dicts: each row as a proto3 JSON mapping dict."""
    from synth.records import to_message

    out, problems = [], []
    for label, row in zip(frame.index, frame.to_dict("records")):
        record: dict[str, Any] = {}
        for key, value in row.items():
            value = _plain(value)
            if value is None:
                continue
            target = record
            *parents, leaf = str(key).split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[leaf] = value
        try:
            out.append(to_message(record, message_class, where=f"row {label}"))
        except DataError as e:
            problems += e.violations
    _bad_rows(problems, message_class, skip_bad)
    return out


def _bad_rows(problems: list[Violation], message_class: type[Message], skip_bad: bool) -> None:
    if not problems:
        return
    rows = len({v.path for v in problems})
    if skip_bad:
        print(f"skipped {rows} bad row(s) of the DataFrame", file=sys.stderr)
        return
    raise DataError(f"{rows} DataFrame row(s) do not fit {message_class.DESCRIPTOR.full_name}", problems,
                    hint="fix the rows, or pass skip_bad=True to skip them")


def _has_nested_cells(frame: Any) -> bool:
    return any(isinstance(v, (list, tuple, dict)) or type(v).__name__ == "ndarray"
               for col in frame.columns if frame[col].dtype == object for v in frame[col])


def _plain(value: Any) -> Any:
    """numpy / pandas scalars -> Python values; missing (None, NaN, NA, NaT) -> None."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if type(value).__name__ == "ndarray":
        return [_plain(v) for v in value.tolist()]
    if _missing(value):
        return None
    item = getattr(value, "item", None)  # numpy scalar
    return item() if callable(item) and type(value).__module__ == "numpy" else value


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value  # NaN
    name = type(value).__name__
    if name in ("NAType", "NaTType"):
        return True
    if type(value).__module__ == "numpy" and name.startswith("float"):
        return bool(value != value)
    return False


def _cell_text(value: Any) -> str:
    """One DataFrame cell as the CSV text the CSV reader's field parsers take."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


# ------------------------------------------------------------------------------------ records out


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:
        raise FailedPrecondition(f"DataFrames need pandas, which is not installed: {PANDAS_HINT}",
                                 hint=PANDAS_HINT) from e
    return pandas


def messages_to_frame(records: list[Message], message_class: type[Message]) -> Any:
    """Messages -> a DataFrame with the CSV writer's columns (dotted .proto field names in
    declaration order) holding typed values: numbers, strings, bools, bytes, enum value
    names; None for an unset field with presence. Schemas with repeated or map fields
    (no flat form) get one column per top-level field holding proto3 JSON values."""
    from synth.io import csv_format

    pd = _pandas()
    desc = message_class.DESCRIPTOR
    try:
        paths = csv_format._leaf_paths(desc)
    except DataError:
        from synth.records import to_dict

        return pd.DataFrame([to_dict(r) for r in records], columns=[f.name for f in desc.fields])
    rows = [[_leaf_value(m, p) for p in paths] for m in records]
    return pd.DataFrame(rows, columns=[".".join(f.name for f in p) for p in paths])


def _leaf_value(msg: Message, path: tuple) -> Any:
    obj = msg
    for f in path[:-1]:
        if not obj.HasField(f.name):
            return None
        obj = getattr(obj, f.name)
    leaf = path[-1]
    if leaf.has_presence and not obj.HasField(leaf.name):
        return None
    value = getattr(obj, leaf.name)
    if leaf.enum_type is not None:
        named = leaf.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    return value
