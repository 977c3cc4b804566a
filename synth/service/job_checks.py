"""A job's run.toml against the server's maxima (docs/service.md, "Jobs").

A training job's settings decide how much memory and time it takes: `batch_size =
100000000` or `latent_dim = 1e8` would make the worker allocate until it dies. The
server refuses such settings when the job is submitted, with InvalidArgument (400 /
INVALID_ARGUMENT) naming every field, before the data is parsed or a model is built.

The check runs twice: on the raw TOML table, before the typed parse (so `1e8`, a float
where an integer belongs, is reported as too large rather than as a type error), and on
the parsed config, so that a default above a lowered maximum is caught too. The maxima
are `Limits` fields, hence server settings (`--max-job-latent-dim`, ...).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from synth.errors import InvalidArgument, Violation
from synth.service.types import Limits

# (field path in a run config, the Limits field that bounds it)
MAXIMA: tuple[tuple[str, str], ...] = (
    ("train.batch_size", "max_job_batch_size"),
    ("train.augment.n_augmented", "max_job_batch_size"),
    ("model.latent_dim", "max_job_latent_dim"),
    ("model.char_dim", "max_job_latent_dim"),
    ("model.max_string_len", "max_job_string_len"),
    ("model.max_sequence_len", "max_job_sequence_len"),
    ("model.n_levels", "max_job_levels"),
    ("model.std_layers", "max_job_levels"),
    ("model.max_recursion", "max_job_levels"),
    ("model.latent_prior_components", "max_job_prior_components"),
    ("train.tune.prior_candidates", "max_job_prior_components"),
    ("train.eval_records", "max_job_eval_records"),
    ("train.validation_max_records", "max_job_eval_records"),
    ("train.tune.samples", "max_job_eval_records"),
)


def check_job_settings(config: Mapping[str, Any], limits: Limits) -> None:
    """Raise InvalidArgument listing every setting of `config` (a run config as a dict,
    raw or parsed) above its maximum; values of the wrong type are left to the parser."""
    problems = over_maxima(config, limits)
    if problems:
        raise InvalidArgument(f"the job's settings exceed this server's maxima ({', '.join(v.path for v in problems)})",
                              problems)


def over_maxima(config: Mapping[str, Any], limits: Limits) -> list[Violation]:
    problems = []
    for path, limit_name in MAXIMA:
        limit = getattr(limits, limit_name)
        for value in _values(config, path):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # a type error: the typed parse reports it with the expected type
            if not math.isfinite(value) or value > limit:
                problems.append(Violation(path, f"{_show(value)} is above this server's maximum of {limit} "
                                                f"(server setting {limit_name})"))
                break
    return problems


def _values(config: Any, path: str) -> Iterator[Any]:
    """The value at a dotted path (each item when it is a list); nothing when absent."""
    node = config
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return
        node = node[key]
    if isinstance(node, (list, tuple)):
        yield from node
    else:
        yield node


def _show(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return repr(value)
