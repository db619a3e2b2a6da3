"""Training objectives: the interface, the registry and what every objective shares.

Each objective is one function of ``(model, x, y)`` → :class:`StepOutput`; the training
loop only calls it and never branches on the method. An objective is built by a registered
factory from its parameters::

    objective = make_objective("standard")
    out = objective(model, x, y)      # out.loss is differentiated by the loop

An objective that keeps state across steps (e.g. an RNG for random starts) may expose
``state_dict()`` / ``load_state_dict()``; the loop saves it for ``--resume`` (tensors and
JSON scalars only). An objective with an integer attribute ``replays`` is called that many
times on each batch, with an optimizer step after each call (free adversarial training). A
factory with a ``seed`` parameter receives the run's seed unless the parameters name one.

Shared conventions of the adversarial objectives (the modules of this package):

* **Threat model.** ``eps`` is in the units of the inputs (pixel units of [0, 1] images),
  in the norm ``norm`` (``"linf"`` or ``"l2"``). Adversarial points stay in
  ``ball(x, ε) ∩ box``, where the box is the one the model declares — the box of the
  dataset it is trained on (``[0, 1]`` for images, unbounded for vector data such as the
  Tsipras et al. distribution; :mod:`robustscope.data.box`) — unless ``box`` is given.
* **Inner maximisation.** PGD-AT, TRADES and mixed batches use the engine's
  :class:`~robustscope.attacks.PGD` with ``early_exit=False``: Madry et al.'s PGD, every
  step for every example of the batch and the **last iterate** returned. The evaluation
  uses the same class with ``early_exit=True``, which stops an example at its first
  misclassified iterate (right for measuring robust accuracy, but as a training attack it
  would push misclassified examples no further — a different, "early-stopped" method — and
  in train mode it would change the batch whose statistics BatchNorm uses). FGSM-RS uses
  the engine's :class:`~robustscope.attacks.FGSM`.
* **Attack mode.** ``attack_mode="eval"`` (default) runs the inner attack with the model in
  eval mode: BatchNorm uses its running statistics, so each example's perturbation is
  computed against the model as it is evaluated and attacked at test time, independently
  of the rest of the batch (this is what the TRADES reference code does).
  ``attack_mode="train"`` runs it in train mode (BatchNorm normalises with the attacked
  batch's statistics, as e.g. the fast-AT code of Wong et al. 2020 does); the attack's
  forward passes then leave the running statistics exactly as they were
  (:func:`robustscope.attacks.attack_mode` saves and restores them — chosen over setting
  the momentum to 0 because it is exact for any momentum, including the cumulative
  ``momentum=None``, and also restores ``num_batches_tracked``). For models without
  BatchNorm or dropout (``mlp``, ``smallcnn``, ``lenet``...) the two modes are identical.
  The weight update itself always sees the model in the loop's train mode.
* **Randomness.** Each objective owns a CPU ``torch.Generator`` seeded from ``seed`` (the
  run's seed by default; mixed so that its stream is unrelated to the model
  initialisation's). For every batch it draws a fresh 62-bit seed from that generator and
  gives it to the inner attack (whose ``seed=`` makes a new generator, on the data's device,
  at each call) — so every batch gets new random starts, the run is reproducible, and the
  generator's state, saved by ``state_dict()``, makes ``--resume`` exact. Nothing here
  draws from the global RNG.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from robustscope.attacks.threat import NORMS
from robustscope.data.box import Box, BoxLike
from robustscope.errors import RobustscopeError, TrainingError
from robustscope.params import parse_eps, parse_real, positive_int
from robustscope.registry import Registry

__all__ = [
    "ATTACK_MODES",
    "OBJECTIVES",
    "InnerAttack",
    "Objective",
    "ObjectiveFactory",
    "SeededObjective",
    "StepOutput",
    "accepts",
    "available",
    "make_objective",
    "real",
    "register",
]

ATTACK_MODES: tuple[str, ...] = ("eval", "train")

BoxParam = BoxLike | None
#: ``attack(model, x, y, seed) -> x_adv``: the inner maximisation as an objective calls it
InnerAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


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

#: every objective factory by name (``robustscope train --method NAME``)
OBJECTIVES: Registry[ObjectiveFactory] = Registry("training method", error=TrainingError)


def register(name: str, doc: str = "") -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Register an objective factory ``factory(**params) -> Objective`` under ``name``."""
    return OBJECTIVES.register(name, doc=doc)


def available() -> dict[str, str]:
    """Registered objective names with a one-line description."""
    return OBJECTIVES.available()


def make_objective(name: str, *, run_seed: int | None = None, **params: Any) -> Objective:
    """Build the objective ``name`` with its parameters; unknown names or options are refused.

    Args:
        name: a registered objective (:func:`available`).
        run_seed: the run's seed; passed as ``seed`` to factories that take a ``seed``
            parameter, unless ``params`` already holds one (the loop passes ``config.seed``).
        **params: the objective's parameters (``TrainConfig.method_params``).
    """
    factory = OBJECTIVES.get(name)
    given = params
    if run_seed is not None and "seed" not in params and accepts(factory, "seed"):
        params = {**params, "seed": run_seed}
    try:
        return factory(**params)
    except TypeError as exc:
        raise TrainingError(f"method {name!r}: bad parameters {given}: {exc}") from None


def accepts(factory: ObjectiveFactory, param: str) -> bool:
    """Whether the objective factory takes the parameter ``param`` (e.g. ``seed``,
    ``eps_warmup``)."""
    try:
        return param in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


# --- parameter checks shared by the objectives ------------------------------------------


def check_box(method: str, box: BoxParam) -> Box | None:
    """The ``box`` option of an objective: None (the model's declared box) or a box."""
    if box is None:
        return None
    try:
        return Box.parse(box, what=f"method {method!r}: box")
    except RobustscopeError as exc:
        raise TrainingError(str(exc)) from None


def check_threat(method: str, norm: str, eps: Any) -> float:
    """ε as a float, after checking it and the norm."""
    if norm not in NORMS:
        raise TrainingError(
            f"method {method!r}: norm must be one of {', '.join(NORMS)}, got {norm!r}"
        )
    return parse_eps(eps, f"method {method!r}: eps", error=TrainingError)


def check_positive_int(method: str, field: str, value: Any) -> int:
    return positive_int(value, f"method {method!r}: {field}", error=TrainingError)


def check_step(method: str, step_size: Any, default: float) -> float:
    """The step size (finite, ≥ 0) if given, else ``default``."""
    return default if step_size is None else real(method, "step_size", step_size, minimum=0.0)


def check_attack_mode(method: str, attack_mode: str) -> bool:
    """True for train mode."""
    if attack_mode not in ATTACK_MODES:
        raise TrainingError(
            f"method {method!r}: attack_mode must be one of {', '.join(ATTACK_MODES)}, "
            f"got {attack_mode!r}"
        )
    return attack_mode == "train"


def real(
    method: str, field: str, value: Any, *, minimum: float = -math.inf, maximum: float = math.inf
) -> float:
    """A number option of objective ``method`` (:func:`robustscope.params.parse_real`:
    ``0.03`` or a fraction ``"8/255"`` as in the papers; finite, in ``[minimum, maximum]``)."""
    return parse_real(
        value, f"method {method!r}: {field}", minimum=minimum, maximum=maximum, error=TrainingError
    )


def _objective_seed(seed: int) -> int:
    """The seed of an objective's generator, derived from the run's seed."""
    return (int(seed) * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407) % 2**63


class SeededObjective:
    """Base of the objectives with randomness: an own generator, saved for ``--resume``.

    ε warm-up: with ``eps_warmup = w > 0`` the inner attack's ε and step size are scaled by
    ``min(1, t / w)``, t the fraction of training done (set by the loop through
    :meth:`set_progress` before every step, from the global step — so resume is exact).
    """

    eps_warmup: float = 0.0
    progress: float = 1.0

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(_objective_seed(seed))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """One objective evaluation on the batch ``(x, y)`` (subclasses implement it)."""
        raise NotImplementedError

    def set_progress(self, fraction: float) -> None:
        """The fraction of all training steps done after the coming step, in (0, 1]."""
        self.progress = float(fraction)

    def inner(self, attack: InnerAttack) -> InnerAttack:
        """``attack`` at the warmed-up strength of the current step (an attack with a
        ``scaled(factor)`` method, such as :class:`~.inner.InnerMaximizer`, is scaled)."""
        if self.eps_warmup <= 0 or self.progress >= self.eps_warmup:
            return attack
        scaled = getattr(attack, "scaled", None)
        return attack if scaled is None else scaled(self.progress / self.eps_warmup)

    def next_seed(self) -> int:
        """A fresh seed for this batch's randomness (advances the generator)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


S = TypeVar("S", bound=SeededObjective)


def with_warmup(objective: S, method: str, eps_warmup: Any) -> S:
    w = real(method, "eps_warmup", eps_warmup)
    if not 0 <= w < 1:
        raise TrainingError(
            f"method {method!r}: eps_warmup must be a fraction of training in [0, 1), got {w}"
        )
    objective.eps_warmup = w
    return objective
