"""TrainConfig and RunConfig: every knob of a run, serialisable to TOML/JSON.

A run.toml has a `[model]` table (ModelConfig) and a `[train]` table (TrainConfig,
with sub-tables `[train.beta]`, `[train.augment]`, `[train.objective]`). The resolved
RunConfig is written into the artifact manifest, so a run can be repeated exactly.
Parsing (types checked, every problem reported with its field path) is done by one
function, `synth.run_config.load_run_config`, for the CLI, the service and the API.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth.configs import to_dict
from synth.errors import ConfigError, Violation
from synth.model_config import ModelConfig
from synth.train.objectives import ObjectiveConfig
from synth.train.schedules import MODES, BetaSchedule


@dataclass(frozen=True)
class AugmentConfig:
    """Augmented training (section 5): train on variants decoded from carried latents."""

    n_augmented: int = 0  # 0 disables; the paper uses the batch size
    p_sampled: float = 0.2  # chance a carried latent is reset to a training example's
    gen_start_step: int = 0  # start after this many steps
    gen_start_fraction: float = 0.0  # ... and after this fraction of the run (both must be reached)

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.gen_start_fraction <= 1.0:
            problems.append(Violation("gen_start_fraction", "must be in [0, 1] (a fraction of the run)"))
        if self.n_augmented < 0:
            problems.append(Violation("n_augmented", "must be >= 0"))
        if not 0.0 <= self.p_sampled <= 1.0:
            problems.append(Violation("p_sampled", "must be in [0, 1]"))
        if problems:
            raise ConfigError("invalid augment config", problems)


PRECISIONS = ("fp32", "bf16")
UNBOUNDED_STEPS = 1_000_000_000  # steps of a run ended by its time budget alone (`--minutes`)
BENCHMARK_EVAL_SEED = 0  # `synth evaluate` / the benchmarks score with seed 0; tuning never does


@dataclass(frozen=True)
class TuneConfig:
    """`[train.tune]`: generation settings chosen on the validation split after training.

    The prior size is chosen by the mean log-likelihood of the validation posteriors'
    means under priors fitted to the training posteriors; the temperatures by scoring
    `samples` generated records against the validation records (synth.eval.compare).
    See synth/train/tune.py and docs/training.md.
    """

    enabled: bool = True  # false: keep the [model] settings as given (latent_prior_components, temperatures)
    prior: bool = True  # choose latent_prior_components among prior_candidates
    prior_candidates: tuple[int, ...] = (0, 16, 64, 256, 1024)  # 0 = one Gaussian (paper)
    # fit a temperature per categorical/number head on the validation likelihood (widening
    # only: ModelConfig.leaf_temperatures; synth/train/calibrate.py)
    calibrate: bool = True
    # find the closed label pairs: a validation share >= closed_min_coverage of a pair's
    # combinations seen in training (ModelConfig.closed_pairs; synth/closed_pairs.py)
    closed_pairs: bool = True
    closed_min_coverage: float = 0.99
    temperatures: bool = True  # choose sample_temperature x latent_temperature on the grid below
    sample_temperatures: tuple[float, ...] = (0.5, 0.75, 1.0)
    latent_temperatures: tuple[float, ...] = (0.7, 0.85, 1.0)
    samples: int = 1000  # generated records per temperature candidate
    # choose how `encode` refines latents: off, or ModelConfig.encode_refine_steps at each
    # guard below, by the reconstruction of `encoding_records` validation records
    # (synth/train/tune_encoding.py)
    encoding: bool = True
    encoding_guards: tuple[float, ...] = (0.0, 10.0)
    encoding_records: int = 300
    min_validation_records: int = 100  # fewer validation records: nothing is tuned (configured values kept)
    max_fraction: float = 0.1  # wall-time cap: this fraction of the training time ...
    max_seconds: float = 300.0  # ... and at most this many seconds
    seed: int = 1  # evaluation seed of the choices; never the benchmark's (0)

    def __post_init__(self) -> None:
        problems = []
        if any(k < 0 for k in self.prior_candidates):
            problems.append(Violation("prior_candidates", "must be >= 0 (0: one Gaussian)"))
        if any(not t > 0 for t in (*self.sample_temperatures, *self.latent_temperatures)):
            problems.append(Violation("sample_temperatures", "temperatures must be > 0"))
        if self.samples < 1:
            problems.append(Violation("samples", "must be >= 1"))
        if not 0.0 < self.closed_min_coverage <= 1.0:
            problems.append(Violation("closed_min_coverage", "must be in (0, 1]"))
        if any(not 0 <= g < float("inf") for g in self.encoding_guards):
            problems.append(Violation("encoding_guards", "guards must be finite and >= 0"))
        if self.encoding_records < 1:
            problems.append(Violation("encoding_records", "must be >= 1"))
        if self.max_fraction < 0 or self.max_seconds < 0:
            problems.append(Violation("max_seconds", "max_fraction and max_seconds must be >= 0"))
        if self.seed == BENCHMARK_EVAL_SEED:
            problems.append(Violation("seed", f"must differ from the benchmark's evaluation seed "
                                              f"({BENCHMARK_EVAL_SEED})"))
        if problems:
            raise ConfigError("invalid tune config", problems)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10000
    batch_size: int = 256
    lr: float = 1e-3  # paper: 2.5e-4 (see bench/configs/paper.toml)
    lr_decay: float = 0.99  # per lr_decay_steps, continuously
    lr_decay_steps: int = 1000
    clip_norm: float = 1.0  # global-norm clip; paper: 0.01
    adam_eps: float = 1e-8
    # decoupled weight decay (AdamW: weights shrink by lr x this per step); 0 = plain Adam (the default)
    weight_decay: float = 0.0
    seed: int = 0
    beta: BetaSchedule = field(default_factory=BetaSchedule)  # beta_max for multiscale
    tuple_sampling: str = "SS"  # TF | AS | SS, for Tuple and Sequence decoders
    # TF | AS | SS | auto, for the leaf children of a Tuple (numbers, strings, categories).
    # auto: TF when generation feeds back the re-encoded drawn value (`generation_feedback =
    # "reencoded"`: teacher forcing is then what generation does), else tuple_sampling's
    leaf_sampling: str = "auto"
    string_sampling: str = "TF"  # TF | AS | SS, for StringLiteral decoders
    sampling_warmup_steps: int = -1  # SS period in steps; -1 = sampling_warmup_fraction
    sampling_warmup_fraction: float = -1.0  # SS period as a fraction of the run; -1 = the beta warm-up (paper 2.4)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval_every: int = 500  # test and generated loss
    eval_records: int = 512
    log_every: int = 50
    checkpoint_every: int = 500  # steps; 0 = none by steps
    checkpoint_seconds: float = 60.0  # also after this much training time since the last one; 0 = none
    early_stopping_patience: int = 5  # evaluations without validation-loss improvement; 0 = off
    # Fewer validation records and early stopping does not act: the loss of a few dozen
    # records is too noisy to stop on (the same bar as tune.min_validation_records)
    early_stopping_min_records: int = 100
    # Keep the weights of the best validation loss and end with them (an experiment; off by default)
    early_stopping_restore_best: bool = False
    device: str = "auto"  # auto | cpu | cuda
    # bf16 autocast of the training forward, off by default (docs/training.md, "GPU"); the
    # weights, the optimizer and the losses stay fp32
    precision: str = "fp32"  # fp32 | bf16
    # Processes that encode the next batches while the model trains (synth/train/prefetch.py);
    # -1 = auto: none on the CPU, all host cores but two (at most 12) beside a GPU
    loader_workers: int = -1
    time_budget_s: float = 0.0  # stop (normally, with the final artifact) after this wall time; 0 = none
    # The validation split, taken from the training records (seeded); it alone drives
    # early stopping and the tuning after training. 0 = no split (and no tuning on it).
    validation_fraction: float = 0.1
    validation_seed: int = 0
    validation_max_records: int = 5000
    validation_min_records: int = 16  # at least this many; none when that leaves fewer to train on
    tune: TuneConfig = field(default_factory=TuneConfig)
    # Input larger than memory (synth/train/stream.py): `synth train` reads --data in passes,
    # shuffling through a buffer of this many records, instead of loading it
    stream: bool = False
    shuffle_buffer: int = 10000

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 0:
            problems.append(Violation("steps", "must be >= 0"))
        if not self.checkpoint_seconds >= 0:
            problems.append(Violation("checkpoint_seconds", "must be >= 0"))
        if self.batch_size < 1:
            problems.append(Violation("batch_size", "must be >= 1"))
        if not self.weight_decay >= 0:
            problems.append(Violation("weight_decay", "must be >= 0"))
        for name in ("tuple_sampling", "string_sampling"):
            if getattr(self, name) not in MODES:
                problems.append(Violation(name, f"must be one of {', '.join(MODES)}"))
        if self.leaf_sampling not in (*MODES, "auto"):
            problems.append(Violation("leaf_sampling", f"must be one of {', '.join(MODES)} or auto"))
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(Violation("device", "must be auto, cpu, cuda or cuda:N"))
        if self.precision not in PRECISIONS:
            problems.append(Violation("precision", f"must be one of {', '.join(PRECISIONS)}"))
        if self.loader_workers < -1:
            problems.append(Violation("loader_workers", "must be >= 0, or -1 (auto)"))
        if self.time_budget_s < 0:
            problems.append(Violation("time_budget_s", "must be >= 0 (0: no time limit)"))
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(Violation("validation_fraction", "must be in [0, 1) (0: no validation split)"))
        if self.early_stopping_min_records < 0:
            problems.append(Violation("early_stopping_min_records", "must be >= 0"))
        if self.validation_max_records < 0 or self.validation_min_records < 0:
            problems.append(Violation("validation_max_records", "validation record counts must be >= 0"))
        if self.shuffle_buffer < 1:
            problems.append(Violation("shuffle_buffer", "must be >= 1 (records held for shuffling a stream)"))
        if self.sampling_warmup_fraction > 1.0:
            problems.append(Violation("sampling_warmup_fraction", "must be in [0, 1], or -1 (the beta warm-up)"))
        if problems:
            raise ConfigError("invalid train config", problems)

    @property
    def ss_steps(self) -> int:
        """The SS period in steps (-1 when it is a fraction of the run: see `ss_period`)."""
        if self.sampling_warmup_steps >= 0:
            return self.sampling_warmup_steps
        if self.sampling_warmup_fraction >= 0:
            return -1
        return self.beta.warmup_steps

    def leaf_mode(self, reencodes: bool) -> str:
        """The scheduled-sampling mode of a Tuple's leaf children (`leaf_sampling`, resolved)."""
        if self.leaf_sampling != "auto":
            return self.leaf_sampling
        return "TF" if reencodes else self.tuple_sampling

    def ss_period(self, step: int, progress: float) -> tuple[float, float]:
        """(position, period) for `schedules.p_truth`: in steps, or in fractions of the run."""
        if self.ss_steps >= 0:
            return float(step), float(self.ss_steps)
        frac = self.sampling_warmup_fraction if self.sampling_warmup_fraction >= 0 else self.beta.warmup_fraction
        return progress, frac


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_file(cls, path: str | Path | None, **train_overrides: Any) -> "RunConfig":
        """Read a run.toml (or .json); see `synth.run_config.load_run_config`."""
        from synth.run_config import load_run_config

        return load_run_config(path or None, **train_overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"model": to_dict(self.model), "train": to_dict(self.train)}
