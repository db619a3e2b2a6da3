"""The inner maximisation of the adversarial objectives: an attack of the engine, rebuilt at
every batch with that batch's seed (Madry et al.'s PGD with ``early_exit=False``, or FGSM
with a random start for FGSM-RS)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from robustscope.attacks.base import Attack
from robustscope.attacks.gradient import FGSM, PGD
from robustscope.data.box import UNBOUNDED, Box
from robustscope.errors import RobustscopeError, TrainingError
from robustscope.training.objectives.base import (
    BoxParam,
    check_attack_mode,
    check_box,
    check_positive_int,
    check_step,
    check_threat,
)

__all__ = ["InnerMaximizer", "pgd_inner"]


@dataclass(frozen=True)
class InnerMaximizer:
    """The inner attack of an adversarial objective: ``inner(model, x, y, seed) -> x_adv``.

    Attributes:
        owner: the objective's name (for error messages).
        kind: ``"pgd"`` (:class:`~robustscope.attacks.PGD` with ``early_exit=False``) or ``"fgsm"`` (the engine's FGSM, with a random
            start for FGSM-RS).
        eps, norm, steps, step_size, random_start: the attack's budget (``steps`` unused by FGSM).
        loss: ``"ce"`` or ``"kl"`` (PGD only).
        train_mode: run the attack with the model in train mode (running statistics kept).
        box: the input box; None: the one the attacked model declares.
    """

    owner: str
    kind: str
    eps: float
    norm: str
    steps: int
    step_size: float
    random_start: bool = True
    loss: str = "ce"
    train_mode: bool = False
    box: Box | None = None

    def __post_init__(self) -> None:
        # validate once, when the objective is built (the attack is rebuilt at every call)
        try:
            self.make(nn.Identity(), 0, self.box or UNBOUNDED)
        except RobustscopeError as exc:
            raise TrainingError(f"method {self.owner!r}: {exc}") from None

    def scaled(self, factor: float) -> InnerMaximizer:
        """The same attack with ε and the step size scaled by ``factor`` (ε warm-up)."""
        return dataclasses.replace(self, eps=self.eps * factor, step_size=self.step_size * factor)

    def make(self, model: nn.Module, seed: int, box: Box | None = None) -> Attack:
        """The attack on ``model`` with this batch's ``seed``, in ``box`` (default: this
        maximizer's, else the one the model declares)."""
        box = self.box if box is None else box
        atk: Attack
        if self.kind == "fgsm":
            atk = FGSM(model, self.eps, self.norm, self.random_start, self.step_size, seed, box=box)
        else:
            atk = PGD(
                model,
                self.eps,
                self.steps,
                self.step_size,
                self.norm,
                self.random_start,
                loss=self.loss,
                seed=seed,
                box=box,
                early_exit=False,
            )
        atk.train_mode = self.train_mode
        return atk

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int
    ) -> torch.Tensor:
        return self.make(model, seed)(x, y)


def pgd_inner(
    method: str,
    eps: float,
    norm: str,
    steps: int,
    step_size: float | None,
    random_start: bool,
    attack_mode: str,
    box: BoxParam,
    loss: str = "ce",
) -> InnerMaximizer:
    steps = check_positive_int(method, "steps", steps)
    eps = check_threat(method, norm, eps)
    return InnerMaximizer(
        owner=method,
        kind="pgd",
        eps=eps,
        norm=norm,
        steps=steps,
        step_size=check_step(method, step_size, 2.5 * eps / steps),
        random_start=bool(random_start),
        loss=loss,
        train_mode=check_attack_mode(method, attack_mode),
        box=check_box(method, box),
    )
