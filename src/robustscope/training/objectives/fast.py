"""Single-step and fast adversarial training: FGSM (Goodfellow et al. 2015, as wen2020 §B.6
trains with it), FGSM-RS (Wong, Rice & Kolter 2020) and free adversarial training (Shafahi
et al. 2019). Conventions: :mod:`.base`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustscope.attacks.base import resolve_box
from robustscope.attacks.threat import ThreatModel
from robustscope.data.box import UNBOUNDED, Box
from robustscope.errors import TrainingError
from robustscope.evaluation import cross_entropy
from robustscope.training.objectives.base import (
    BoxParam,
    Objective,
    StepOutput,
    check_attack_mode,
    check_box,
    check_positive_int,
    check_step,
    check_threat,
    register,
    with_warmup,
)
from robustscope.training.objectives.inner import InnerMaximizer
from robustscope.training.objectives.pgd import AdversarialTraining

__all__ = ["FreeTraining", "fgsm", "fgsm_rs", "free"]


class FreeTraining:
    """Free adversarial training (Shafahi et al. 2019): one backward pass gives the weight
    gradient and the perturbation's gradient.

    The loop calls the objective ``replays`` times per batch (attribute read by the loop)
    with an optimizer step after each call. Each call evaluates the cross-entropy at
    ``box.clamp(x + δ)`` with δ a leaf tensor; a gradient hook on δ receives ``∇_δ loss`` during
    the loop's ``loss.backward()`` — the same backward that gives the weights their
    gradient — and updates the persistent perturbation there::

        δ ← P_ball(δ + step_size · sign(∇_δ loss))      (ℓ2: the normalized gradient)

    δ persists across replays and across batches (and epochs): it is one tensor shaped like
    the first batch, of which a batch of n examples uses the first n rows (a larger batch
    gets zero rows appended). It starts at 0 and is saved by ``state_dict()`` for ``--resume``.
    """

    def __init__(
        self, eps: float, norm: str, replays: int, step_size: float, box: Box | None
    ) -> None:
        self.ball = ThreatModel(norm, eps, UNBOUNDED)
        self.replays = check_positive_int("free", "replays", replays)
        self.step_size = float(step_size)
        self.box = box
        self.delta: torch.Tensor | None = None

    def _delta_for(self, x: torch.Tensor) -> torch.Tensor:
        if self.delta is not None and self.delta.shape[1:] != x.shape[1:]:
            raise TrainingError(
                f"method 'free': inputs shaped {tuple(x.shape[1:])} but the perturbation is "
                f"{tuple(self.delta.shape[1:])}"
            )
        if self.delta is None:
            self.delta = torch.zeros_like(x)
        elif self.delta.device != x.device or self.delta.dtype != x.dtype:
            self.delta = self.delta.to(device=x.device, dtype=x.dtype)
        if len(self.delta) < len(x):
            extra = torch.zeros_like(x[len(self.delta) :])
            self.delta = torch.cat([self.delta, extra])
        return self.delta[: len(x)]

    def _update(self, n: int, grad: torch.Tensor) -> None:
        assert self.delta is not None
        with torch.no_grad():
            current = self.delta[:n]
            stepped = self.ball.step(current, grad, self.step_size)
            self.delta[:n] = self.ball.project(stepped, torch.zeros_like(stepped))

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        n = len(x)
        delta = self._delta_for(x).clone().requires_grad_(True)
        delta.register_hook(lambda g: self._update(n, g))
        x_adv = resolve_box(model, self.box, "free").clamp(x + delta)
        logits = model(x_adv)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)

    def state_dict(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.delta = state["delta"]


@register(
    "fgsm", "FGSM adversarial training (Goodfellow et al. 2015; wen2020 §B.6): no random start"
)
def fgsm(
    eps: float,
    norm: str = "linf",
    step_size: float | None = None,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """FGSM adversarial training (Goodfellow, Shlens & Szegedy 2015), as wen2020 §B.6 uses it
    in place of PGD ("all the setting are same with that described in section B.1 of PGD,
    except that we replace PGD with FGSM"): cross-entropy at

        x′ = P_S(x + α · sign(∇ₓ CE(f(x), y)))       (ℓ2: α · ∇/‖∇‖₂)

    with ``α = ε`` and **no random start** (the engine's :class:`~robustscope.attacks.FGSM`
    with ``random_start=False``; ``S = ball(x, ε) ∩ box``). Only the adversarial points
    enter the loss (as in PGD-AT, not Goodfellow et al.'s half-clean mixture). Deterministic:
    the objective draws no random numbers (its generator is kept only for the common
    interface). Single-step training without a random start is the setting most prone to
    catastrophic overfitting (Wong et al. 2020); run it with ``co_detect``.

    Args:
        eps: radius ε (pixel units, in ``norm``).
        norm: ``"linf"`` or ``"l2"``.
        step_size: α; default ε (Goodfellow et al.).
        attack_mode: ``"eval"`` (default) or ``"train"``.
        box: the input box; None: the one the model declares (its dataset's box).
        eps_warmup: fraction of training over which ε and the step size ramp linearly
            from 0 to their values (0: none).
        seed: seed of the objective's generator (unused: no randomness).
    """
    return _single_step(
        "fgsm", eps, norm, step_size, attack_mode, box, eps_warmup, seed,
        step_factor=1.0, random_start=False,
    )  # fmt: skip


@register("fgsm-rs", "fast adversarial training (Wong et al. 2020): FGSM from a random start")
def fgsm_rs(
    eps: float,
    norm: str = "linf",
    step_size: float | None = None,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """Fast adversarial training, "FGSM-RS" (Wong, Rice & Kolter 2020, "Fast is better than
    free"): cross-entropy at ``x′ = P_S(x₀ + α · sign(∇ₓ CE(f(x₀), y)))`` with ``x₀`` uniform
    in ``ball(x, ε) ∩ box`` and ``α = 1.25 ε`` (the engine's
    :class:`~robustscope.attacks.FGSM` with ``random_start=True``).

    Wong et al. pair it with a cyclic learning rate: use ``schedule="onecycle"`` (not forced
    here). Single-step training can overfit catastrophically — PGD accuracy collapses while
    FGSM accuracy stays high; run it with the detector (``TrainConfig.co_detect`` /
    ``early_stop``, :mod:`robustscope.training.overfitting`).

    Args:
        eps: radius ε (pixel units, in ``norm``).
        norm: ``"linf"`` or ``"l2"``.
        step_size: α; default ``1.25 ε``.
        attack_mode: ``"eval"`` (default) or ``"train"`` (as Wong et al.'s code).
        box: the input box; None: the one the model declares (its dataset's box).
        eps_warmup: fraction of training over which ε and the step size ramp linearly
            from 0 to their values (0: none); helps large ε train from scratch.
        seed: seed of the objective's generator (the run's seed by default).
    """
    return _single_step(
        "fgsm-rs", eps, norm, step_size, attack_mode, box, eps_warmup, seed,
        step_factor=1.25, random_start=True,
    )  # fmt: skip


def _single_step(
    owner: str,
    eps: float,
    norm: str,
    step_size: float | None,
    attack_mode: str,
    box: BoxParam,
    eps_warmup: float,
    seed: int,
    *,
    step_factor: float,
    random_start: bool,
) -> Objective:
    """The one-step (FGSM) adversarial training ``owner`` names: step ``step_size``
    (default ``step_factor · ε``), from a random start in the ball or from ``x``."""
    eps = check_threat(owner, norm, eps)
    inner = InnerMaximizer(
        owner=owner,
        kind="fgsm",
        eps=eps,
        norm=norm,
        steps=1,
        step_size=check_step(owner, step_size, step_factor * eps),
        random_start=random_start,
        train_mode=check_attack_mode(owner, attack_mode),
        box=check_box(owner, box),
    )
    return with_warmup(AdversarialTraining(inner, seed), owner, eps_warmup)


@register("free", "free adversarial training (Shafahi et al. 2019): m replays, persistent δ")
def free(
    eps: float,
    replays: int = 8,
    norm: str = "linf",
    step_size: float | None = None,
    box: BoxParam = None,
) -> Objective:
    """Free adversarial training (Shafahi et al. 2019, "Adversarial training for free!").

    Each batch is replayed ``replays`` (m) times; every replay is one forward/backward at
    ``box.clamp(x + δ)`` whose backward also updates ``δ ← P_ball(δ + ε·sign(∇_δ))``, and one
    optimizer step; δ carries over to the next replay and the next batch
    (:class:`FreeTraining`). Shafahi et al. use m = 8 on CIFAR-10 (the default) and divide
    the number of epochs by m to keep the cost of standard training — choose ``epochs``
    accordingly. No randomness: δ starts at 0.

    Args:
        eps: radius ε (pixel units, in ``norm``).
        replays: m, the number of replays of each batch (≥ 1).
        norm: ``"linf"`` or ``"l2"``.
        step_size: step of δ; default ε (Shafahi et al.).
        box: the input box; None: the one the model declares (its dataset's box).
    """
    eps = check_threat("free", norm, eps)
    return FreeTraining(
        eps,
        norm,
        replays,  # checked by FreeTraining
        check_step("free", step_size, eps),
        check_box("free", box),
    )
