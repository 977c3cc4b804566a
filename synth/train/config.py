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

    def __post_init__(self) -> None:
        problems = []
        if self.n_augmented < 0:
            problems.append(Violation("n_augmented", "must be >= 0"))
        if not 0.0 <= self.p_sampled <= 1.0:
            problems.append(Violation("p_sampled", "must be in [0, 1]"))
        if problems:
            raise ConfigError("invalid augment config", problems)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10000
    batch_size: int = 256
    lr: float = 1e-3  # paper: 2.5e-4 (see bench/configs/paper.toml)
    lr_decay: float = 0.99  # per lr_decay_steps, continuously
    lr_decay_steps: int = 1000
    clip_norm: float = 1.0  # global-norm clip; paper: 0.01
    adam_eps: float = 1e-8
    seed: int = 0
    beta: BetaSchedule = field(default_factory=BetaSchedule)  # beta_max for multiscale
    tuple_sampling: str = "SS"  # TF | AS | SS, for Tuple and Sequence decoders
    string_sampling: str = "TF"  # TF | AS | SS, for StringLiteral decoders
    sampling_warmup_steps: int = -1  # SS period; -1 = the beta warm-up period (paper 2.4)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval_every: int = 500  # test and generated loss
    eval_records: int = 512
    log_every: int = 50
    checkpoint_every: int = 500
    early_stopping_patience: int = 0  # evaluations without test-loss improvement; 0 = off
    device: str = "auto"  # auto | cpu | cuda
    time_budget_s: float = 0.0  # stop (normally, with the final artifact) after this wall time; 0 = none

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 0:
            problems.append(Violation("steps", "must be >= 0"))
        if self.batch_size < 1:
            problems.append(Violation("batch_size", "must be >= 1"))
        for name in ("tuple_sampling", "string_sampling"):
            if getattr(self, name) not in MODES:
                problems.append(Violation(name, f"must be one of {', '.join(MODES)}"))
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(Violation("device", "must be auto, cpu, cuda or cuda:N"))
        if self.time_budget_s < 0:
            problems.append(Violation("time_budget_s", "must be >= 0 (0: no time limit)"))
        if problems:
            raise ConfigError("invalid train config", problems)

    @property
    def ss_steps(self) -> int:
        return self.beta.warmup_steps if self.sampling_warmup_steps < 0 else self.sampling_warmup_steps


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
