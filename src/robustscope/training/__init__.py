"""Training: one loop, pluggable objectives, schedules, checkpoints and exact resume."""

from __future__ import annotations

from robustscope.training.config import TrainConfig
from robustscope.training.loop import (
    EpochCallback,
    TrainResult,
    build_model,
    epoch_generator,
    load_datasets,
    train,
)
from robustscope.training.objectives import (
    Objective,
    StepOutput,
    available,
    make_objective,
    register,
)

__all__ = [
    "EpochCallback",
    "Objective",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "available",
    "build_model",
    "epoch_generator",
    "load_datasets",
    "make_objective",
    "register",
    "train",
]
