"""Training objectives: each is one function of ``(model, x, y)`` → :class:`StepOutput`.

The training loop only calls the objective; it does not know which one it runs.
Adversarial objectives (PGD-AT, TRADES, fast AT, ...) register here with the
same signature. An objective is built by a factory from its parameters::

    objective = make_objective("standard")
    out = objective(model, x, y)      # out.loss is differentiated by the loop

An objective that keeps state across steps (e.g. an RNG for random starts) may
expose ``state_dict()`` / ``load_state_dict()``; the loop saves it for ``--resume``
(tensors and JSON scalars only). An objective with an integer attribute ``replays``
is called that many times on each batch, with an optimizer step after each call
(free adversarial training). A factory with a ``seed`` parameter receives the run's
seed unless the parameters name one.

The adversarial objectives (``pgd``, ``trades``, ``fgsm-rs``, ``free``, ``mixed``,
``noise``) live in :mod:`robustscope.training.adversarial`, imported at the end of
this module so that they are registered whenever objectives are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from robustscope.errors import TrainingError, unknown_name
from robustscope.evaluation import cross_entropy


@dataclass
class StepOutput:
    """What one objective evaluation returns.

    Attributes:
        loss: scalar to minimise (the loop calls ``loss.backward()``).
        logits: logits of the examples the loss was computed on (adversarial ones
            for adversarial objectives), used for the reported training accuracy.
        y: labels aligned with ``logits`` (defaults to the batch labels).
        extras: further scalars to average over the epoch (e.g. ``kl_term``).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    y: torch.Tensor | None = None
    extras: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput: ...


ObjectiveFactory = Callable[..., Objective]

_OBJECTIVES: dict[str, tuple[ObjectiveFactory, str]] = {}


def register(name: str, doc: str = "") -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Register an objective factory ``factory(**params) -> Objective`` under ``name``."""

    def deco(factory: ObjectiveFactory) -> ObjectiveFactory:
        _OBJECTIVES[name] = (factory, doc or (factory.__doc__ or "").strip().split("\n")[0])
        return factory

    return deco


def available() -> dict[str, str]:
    """Registered objective names with a one-line description."""
    return {k: _OBJECTIVES[k][1] for k in sorted(_OBJECTIVES)}


def make_objective(name: str, *, run_seed: int | None = None, **params: Any) -> Objective:
    """Build the objective ``name`` with its parameters; unknown names or options are refused.

    Args:
        name: a registered objective (:func:`available`).
        run_seed: the run's seed; passed as ``seed`` to factories that take a ``seed``
            parameter, unless ``params`` already holds one (the loop passes ``config.seed``).
        **params: the objective's parameters (``TrainConfig.method_params``).
    """
    if name not in _OBJECTIVES:
        raise TrainingError(unknown_name("training method", name, list(_OBJECTIVES)))
    factory = _OBJECTIVES[name][0]
    given = params
    if run_seed is not None and "seed" not in params and _accepts_seed(factory):
        params = {**params, "seed": run_seed}
    try:
        return factory(**params)
    except TypeError as exc:
        raise TrainingError(f"method {name!r}: bad parameters {given}: {exc}") from None


def _accepts_seed(factory: ObjectiveFactory) -> bool:
    try:
        return "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


@register("standard", "empirical risk minimisation: cross-entropy on clean inputs")
def standard() -> Objective:
    """Standard training: mean cross-entropy of the clean batch."""

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        logits = model(x)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)

    return objective


# the adversarial objectives register themselves on import (after the registry exists)
from robustscope.training import adversarial as _adversarial  # noqa: E402, F401
