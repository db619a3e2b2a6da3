"""Optimizers and learning-rate schedules.

The learning rate is a pure function of the position in training
(:func:`learning_rate`), set before every step. There is no scheduler object
whose state would have to be saved: a resumed run computes the same rates.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robustscope.training.config import TrainConfig


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or Adam over the trainable parameters.

    Weight decay is applied to every parameter (the convention of the source papers).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate for ``step`` (0-based) of ``epoch`` (0-based) under ``config.schedule``."""
    total = config.epochs * steps_per_epoch
    t = epoch * steps_per_epoch + step  # global step, 0-based
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "multistep":
        passed = sum(1 for m in config.milestones if epoch >= m)
        return config.lr * config.gamma**passed
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * t / total))
    # onecycle: triangular, 0 → lr → 0
    peak = config.warmup_fraction * total
    if t < peak:
        return config.lr * (t + 1) / peak
    return config.lr * max(0.0, (total - t) / max(total - peak, 1.0))
