"""Training: the Trainer, its configs and schedules (paper sections 2.4-6)."""
from synth.train.config import AugmentConfig, RunConfig, TrainConfig
from synth.train.schedules import BetaSchedule
from synth.train.trainer import Trainer, TrainResult

__all__ = ["AugmentConfig", "BetaSchedule", "RunConfig", "TrainConfig", "Trainer", "TrainResult"]
