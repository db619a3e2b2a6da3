"""Epoch callbacks: their type, and the weight hooks the configuration asks for.

A hook ``hook(model, epoch, row) -> metrics`` runs after the epoch's last optimizer step and
before the epoch's evaluation, tracking callbacks and checkpoint, so all of them see the
weights it leaves; its metrics join the history row. Hooks are built from the configuration
at every start — also on ``--resume`` — and are deterministic functions of the weights and
the configuration (never of the global RNG), so a resumed run equals an uninterrupted one
bit for bit.

The one hook today: ``spectral_clip`` (wen2020 B.4.2, "every epoch rather than every
iteration", D.3) clips the operator norm of every Linear/Conv2d layer reached by the
forward pass (:func:`robustscope.models.spectral.clip_spectral_norms`; the same clipping as
the post-hoc ``spectral_clip`` transform of :mod:`robustscope.posthoc`), recording the largest
norm before clipping as ``spectral_clip/max_norm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from robustscope.models import spectral
from robustscope.training.config import TrainConfig

__all__ = ["EpochCallback", "config_hooks"]

EpochCallback = Callable[[nn.Module, int, dict[str, Any]], dict[str, Any] | None]
"""``callback(model, epoch, row) -> extra metrics``: called once per epoch (``epoch`` is
1-based; ``row`` is the history row so far); returned items join the row. For the
callbacks run after evaluation, the reserved key ``"stop"`` (a reason string) ends training
after this epoch (recorded as the row's ``stop_reason``), and a callback with
``state_dict()`` / ``load_state_dict()`` and a ``name`` attribute has its state saved for
``--resume``."""


def config_hooks(
    config: TrainConfig, model: nn.Module, input_shape: Sequence[int]
) -> list[EpochCallback]:
    """The weight hooks ``config`` asks for, on ``model`` with inputs shaped ``input_shape``
    (what its layers see is measured once, here).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 10, (1, 8, 8), widths=[16])
        >>> config_hooks(TrainConfig(), net, (1, 8, 8))
        []
        >>> (clip,) = config_hooks(TrainConfig(spectral_clip=0.5), net, (1, 8, 8))
        >>> clip(net, 1, {})["spectral_clip/max_norm"] > 0.5  # was above the bound
        True
        >>> all(spectral.operator_norm(m) <= 0.5 * (1 + 1e-6) for _, m in spectral.linear_layers(net))
        True
    """
    hooks: list[EpochCallback] = []
    bound = config.spectral_clip
    if bound is not None:
        shapes = spectral.layer_input_shapes(model, input_shape)

        def clip(model: nn.Module, epoch: int, row: dict[str, Any]) -> dict[str, Any]:
            norms = spectral.clip_spectral_norms(model, bound, shapes)
            return {"spectral_clip/max_norm": max(norms.values(), default=0.0)}

        hooks.append(clip)
    return hooks
