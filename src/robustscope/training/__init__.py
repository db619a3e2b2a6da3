"""Training: one loop, pluggable objectives, schedules, checkpoints and exact resume.

Objectives (``robustscope.training.available()``, the package
:mod:`robustscope.training.objectives`): ``standard``, and the adversarial ones — ``pgd`` (Madry et al. 2018), ``trades`` (Zhang et
al. 2019), ``fgsm`` (Goodfellow et al. 2015; wen2020 §B.6), ``fgsm-rs`` (Wong et al. 2020), ``free`` (Shafahi et al. 2019), ``mixed``
(tsipras2019 App. B) and ``noise`` (Gaussian augmentation). Measurements during training:
:mod:`robustscope.training.tracking` and :mod:`robustscope.training.overfitting`. Weight
hooks the configuration asks for (``spectral_clip``): :mod:`robustscope.training.hooks`.
"""

from __future__ import annotations

from robustscope.training.config import TrainConfig
from robustscope.training.epoch import epoch_generator
from robustscope.training.hooks import EpochCallback, config_hooks
from robustscope.training.loop import (
    TrainResult,
    build_model,
    config_callbacks,
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
from robustscope.training.overfitting import CatastrophicOverfittingDetector
from robustscope.training.tracking import Tracker, available_measures, register_measure

__all__ = [
    "CatastrophicOverfittingDetector",
    "EpochCallback",
    "Objective",
    "StepOutput",
    "Tracker",
    "TrainConfig",
    "TrainResult",
    "available",
    "available_measures",
    "build_model",
    "config_callbacks",
    "config_hooks",
    "epoch_generator",
    "load_datasets",
    "make_objective",
    "register",
    "register_measure",
    "train",
]
