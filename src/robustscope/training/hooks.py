"""Config-driven epoch hooks: code of a later layer that the loop runs after each epoch's steps.

Training must not import the layers after it (posthoc, probes), yet some configuration
fields ask for their code during training — ``spectral_clip`` (wen2020 B.4.2) is
:mod:`robustscope.posthoc`'s spectral-norm clipping, applied every epoch. The loop therefore
knows such a field only by name (:data:`CONFIG_HOOKS`; the hook is registered under the
field's name), and the
composition point :func:`robustscope.plugins.load` registers the later layer's hook factory
under that name::

    HOOKS.register("spectral_clip", spectral_clip_hook, doc="...")
    # spectral_clip_hook(config) -> hook(model, epoch, row) -> {"spectral_clip/max_norm": ...}

A configuration that asks for a hook nobody registered is refused before training starts
(:func:`config_hooks`).

A hook ``hook(model, epoch, row) -> metrics`` runs after the epoch's last optimizer step and
before the epoch's evaluation, tracking callbacks and checkpoint, so all of them see the
weights it leaves; its metrics join the history row. Hooks are built from the configuration
at every start — also on ``--resume`` — so they must be stateless and deterministic
(functions of the weights and the configuration, never of the global RNG): then a resumed
run equals an uninterrupted one bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustscope.errors import TrainingError
from robustscope.registry import Registry
from robustscope.training.config import TrainConfig

__all__ = ["CONFIG_HOOKS", "HOOKS", "EpochCallback", "HookFactory", "config_hooks"]

EpochCallback = Callable[[nn.Module, int, dict[str, Any]], dict[str, Any] | None]
"""``callback(model, epoch, row) -> extra metrics``: called once per epoch (``epoch`` is
1-based; ``row`` is the history row so far); returned items join the row. For the
callbacks run after evaluation, the reserved key ``"stop"`` (a reason string) ends training
after this epoch (recorded as the row's ``stop_reason``), and a callback with
``state_dict()`` / ``load_state_dict()`` and a ``name`` attribute has its state saved for
``--resume``."""

HookFactory = Callable[[TrainConfig], EpochCallback]
"""``factory(config) -> hook``: builds the hook a configuration asks for."""

HOOKS: Registry[HookFactory] = Registry("training hook", error=TrainingError)
"""Hook factories by name (registered by :func:`robustscope.plugins.load`)."""

CONFIG_HOOKS: tuple[str, ...] = ("spectral_clip",)
"""Configuration fields that ask for a hook: when one is set (not None), the hook registered
under the field's name runs."""


def config_hooks(config: TrainConfig) -> list[EpochCallback]:
    """The epoch hooks ``config`` asks for, in the order of :data:`CONFIG_HOOKS`.

    Raises:
        TrainingError: a field is set whose hook is not registered (the layer that provides
            it was not imported).

    Example:
        >>> config_hooks(TrainConfig())
        []
    """
    hooks: list[EpochCallback] = []
    for field in CONFIG_HOOKS:
        if getattr(config, field) is None:
            continue
        if field not in HOOKS:
            raise TrainingError(
                f"TrainConfig.{field} needs the training hook {field!r}, which is not "
                "registered: call robustscope.plugins.load() before training (the CLI and "
                "studies do)"
            )
        hooks.append(HOOKS.get(field)(config))
    return hooks
