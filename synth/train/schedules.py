"""Schedules as pure functions of the step (paper sections 2.4, 3, 5, 6; appendix C).

Like nanoGPT's `get_lr`: nothing here holds state, so resuming at step s gives the
same values as never having stopped.
"""
from __future__ import annotations

from dataclasses import dataclass

from synth.errors import ConfigError, Violation

MODES = ("TF", "AS", "SS")


@dataclass(frozen=True)
class BetaSchedule:
    """Beta weighs the KL per latent dimension (for multiscale VAE: beta_max).

    constant: `end` throughout. warmup: linear `start` -> `end` over `warmup_steps`.
    warmup_cooldown: `start` -> `mid` over `warmup_steps`, then `mid` -> `end` over
    `cooldown_steps` (the paper's best augmented runs; `mid` > `end`).
    """

    kind: str = "warmup"
    start: float = 0.0
    mid: float = 0.384
    end: float = 0.384
    warmup_steps: int = 1000
    cooldown_steps: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in ("constant", "warmup", "warmup_cooldown"):
            problems.append(Violation("kind", f"must be constant, warmup or warmup_cooldown, not {self.kind!r}"))
        for name in ("warmup_steps", "cooldown_steps"):
            if getattr(self, name) < 0:
                problems.append(Violation(name, "must be >= 0"))
        if problems:
            raise ConfigError("invalid beta schedule", problems)

    def at(self, step: int) -> float:
        if self.kind == "constant":
            return self.end
        if self.kind == "warmup":
            return _lerp(self.start, self.end, step, 0, self.warmup_steps)
        if step < self.warmup_steps:
            return _lerp(self.start, self.mid, step, 0, self.warmup_steps)
        return _lerp(self.mid, self.end, step, self.warmup_steps, self.warmup_steps + self.cooldown_steps)


def _lerp(a: float, b: float, step: int, begin: int, end: int) -> float:
    if end <= begin or step >= end:
        return b
    if step <= begin:
        return a
    return a + (b - a) * (step - begin) / (end - begin)


def p_truth(mode: str, step: int, warmup_steps: int) -> float:
    """Probability of feeding ground truth to a decoder: TF 1, AS 0, SS linear 1 -> 0."""
    if mode == "TF":
        return 1.0
    if mode == "AS":
        return 0.0
    if mode == "SS":
        return _lerp(1.0, 0.0, step, 0, warmup_steps)
    raise ConfigError(f"scheduled sampling mode must be one of {MODES}, not {mode!r}")


def learning_rate(base: float, decay: float, decay_steps: int, step: int) -> float:
    """Continuous exponential decay: base * decay ** (step / decay_steps) (paper 2.4)."""
    return base * decay ** (step / decay_steps) if decay_steps > 0 else base


def level_betas(beta_max: float, n_levels: int) -> list[float]:
    """Multiscale VAE (section 6): beta_i = (i + 1) / n * beta_max."""
    return [(i + 1) / n_levels * beta_max for i in range(n_levels)]
