"""Schedules as pure functions of the step and the run's progress (paper sections 2.4, 3, 5, 6; appendix C).

Like nanoGPT's `get_lr`: nothing here holds state, so resuming at step s gives the
same values as never having stopped. A schedule length is given either in steps
(`warmup_steps = 1500`) or as a fraction of the run (`warmup_fraction = 0.1`, used when
the steps field is -1, its default). `progress` is the fraction of the run done, in
[0, 1]: step / steps for a step-budgeted run, elapsed / time budget for a
time-budgeted one (the larger of the two when both are set), so a short run still
completes its warm-ups (docs/training.md).
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
    # The paper's beta is 0.384; 0.05 was chosen for the default recipe on Vermont's
    # validation split (docs/benchmarks.md, "The default recipe"): with a categorical-first
    # decoder and a mixture prior fitted after training, a weaker KL term keeps more of
    # each record in the latent, and the validated prior still samples well.
    end: float = 0.05
    warmup_steps: int = -1  # >= 0: warm-up (and cool-down) in steps; -1: as fractions of the run
    cooldown_steps: int = -1  # with warmup_steps >= 0: cool-down steps (-1 = 0)
    warmup_fraction: float = 0.1  # with warmup_steps = -1: warm-up over this fraction of the run
    cooldown_fraction: float = 0.0  # with warmup_steps = -1: then cool-down over this fraction

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in ("constant", "warmup", "warmup_cooldown"):
            problems.append(Violation("kind", f"must be constant, warmup or warmup_cooldown, not {self.kind!r}"))
        for name in ("warmup_steps", "cooldown_steps"):
            if getattr(self, name) < -1:
                problems.append(Violation(name, "must be >= 0 (steps), or -1 (use the *_fraction keys)"))
        for name in ("warmup_fraction", "cooldown_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(Violation(name, "must be in [0, 1] (a fraction of the run)"))
        if self.warmup_fraction + self.cooldown_fraction > 1.0 + 1e-9:
            problems.append(Violation("cooldown_fraction", "warmup_fraction + cooldown_fraction must be <= 1"))
        if self.warmup_steps < 0 and self.cooldown_steps >= 0:
            problems.append(Violation("cooldown_steps", "give warmup_steps too (both in steps), or use "
                                                        "warmup_fraction and cooldown_fraction"))
        if problems:
            raise ConfigError("invalid beta schedule", problems)

    @property
    def in_steps(self) -> bool:
        return self.warmup_steps >= 0

    def at(self, step: int, progress: float = 0.0) -> float:
        """Beta at `step`, `progress` (fraction of the run done) for fraction schedules."""
        if self.kind == "constant":
            return self.end
        if self.in_steps:
            t, w, c = step, self.warmup_steps, self.warmup_steps + max(self.cooldown_steps, 0)
        else:
            t, w, c = progress, self.warmup_fraction, self.warmup_fraction + self.cooldown_fraction
        if self.kind == "warmup":
            return _lerp(self.start, self.end, t, 0, w)
        if t < w:
            return _lerp(self.start, self.mid, t, 0, w)
        return _lerp(self.mid, self.end, t, w, c)


def _lerp(a: float, b: float, step: float, begin: float, end: float) -> float:
    if end <= begin or step >= end:
        return b
    if step <= begin:
        return a
    return a + (b - a) * (step - begin) / (end - begin)


def p_truth(mode: str, step: float, warmup_steps: float) -> float:
    """Probability of feeding ground truth to a decoder: TF 1, AS 0, SS linear 1 -> 0.

    `step` and `warmup_steps` may be a progress and a fraction of the run instead."""
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
