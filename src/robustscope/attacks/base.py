"""The attack base class: it owns model mode, parameter gradients, seeding and validation.

Each attack is a small subclass that writes only its loop in :meth:`Attack.run`
(the pattern of torchattacks' ``Attack``). Calling an attack::

    atk = PGD(model, eps=0.1, steps=20, seed=0)
    x_adv = atk(x, y)        # same shape and dtype as x, detached

puts the model in eval mode and switches its parameters' ``requires_grad`` off
for the duration (only input gradients are computed), and restores both
afterwards, even on error. With ``seed`` set, the same inputs give the same
output: a fresh generator seeded with ``seed`` is made at every call.

Setting ``atk.train_mode = True`` runs the attack with the model in train mode
instead (BatchNorm normalises with the statistics of the attacked batch, as the
inner maximisation of some adversarial-training codes does); the running
statistics are not changed by the attack (see :func:`attack_mode`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn

from robustscope.device import model_device
from robustscope.errors import RobustscopeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def attack_mode(model: nn.Module, train: bool = False) -> Iterator[None]:
    """Eval mode and frozen parameters inside the block; the previous state restored after.

    With ``train=True`` the model is in train mode instead (BatchNorm uses the batch's
    statistics, dropout is active). The BatchNorm running statistics
    (``running_mean``, ``running_var``, ``num_batches_tracked``) are saved on entry and
    restored exactly on exit, so the forward passes inside the block leave them as they were.
    In train mode the examples of a batch interact through the batch statistics, so an
    input gradient of a summed loss is no longer each example's own.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    if train:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                for buf in (m.running_mean, m.running_var, m.num_batches_tracked):
                    if buf is not None:
                        saved.append((buf, buf.clone()))
    model.train(train)
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Attack(ABC):
    """Base class of every attack: ``atk(x, y) -> x_adv``.

    Subclasses set ``name`` and implement :meth:`run`, which receives detached
    inputs on the model's device with the model already in attack mode.

    Attributes:
        model: maps pixel-space inputs ``[N, ...]`` to logits ``[N, K]``.
        seed: seed of the attack's randomness (None: the global torch RNG).
    """

    name: ClassVar[str] = "attack"
    #: minimal-norm attacks search for the smallest perturbation instead of using a fixed ε
    minimal_norm: ClassVar[bool] = False
    #: run with the model in train mode (BatchNorm running statistics kept); see attack_mode
    train_mode: bool = False
    #: accepts ``atk(x, y, start=x0)``: begin from a given point instead of a random start
    warm_start: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, seed: int | None = None) -> None:
        self.model = model
        self.seed = seed

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``, like ``x`` (shape, dtype, device), detached.

        ``start`` (attacks with ``warm_start = True`` only, e.g. PGD): ``[N, ...]`` points to
        begin from instead of a random start; they are projected onto ball(x, ε) ∩ box
        first. :func:`robustscope.attacks.evaluate` uses it for ε-continuation.
        """
        if not torch.is_floating_point(x):
            raise RobustscopeError(f"{self.name}: inputs must be floating point, got {x.dtype}")
        if y.ndim != 1 or len(y) != len(x):
            raise RobustscopeError(
                f"{self.name}: labels must be [N] with N = {len(x)}, got shape {tuple(y.shape)}"
            )
        if start is not None:
            if not self.warm_start:
                raise RobustscopeError(
                    f"{self.name}: this attack does not take a start point (start=...)"
                )
            if start.shape != x.shape:
                raise RobustscopeError(
                    f"{self.name}: start must have the shape of x, {tuple(x.shape)}, "
                    f"got {tuple(start.shape)}"
                )
        if len(x) == 0:
            return x.clone()
        device = self.device
        xd = x.detach().to(device)
        yd = y.detach().to(device, dtype=torch.long)
        with attack_mode(self.model, train=self.train_mode):
            if start is None:
                x_adv = self.run(xd, yd)
            else:
                x_adv = self.run_from(xd, yd, start.detach().to(device=device, dtype=xd.dtype))
        return x_adv.detach().to(device=x.device, dtype=x.dtype)

    @abstractmethod
    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack's loop: adversarial examples for ``(x, y)`` (model in attack mode)."""

    def run_from(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Like :meth:`run`, beginning at ``start`` (attacks with ``warm_start = True``)."""
        raise NotImplementedError(f"{self.name} does not implement run_from")

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def generator(self, device: torch.device) -> torch.Generator | None:
        """A generator seeded with ``seed`` (new at every call), or None for the global RNG."""
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)

    def input_grad(
        self, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(∇ₓ loss, per-example loss, logits)`` for per-example ``loss_fn(logits, y)``.

        The per-example losses are summed before the backward pass; since examples
        do not interact in eval mode, each example's gradient is its own (in train mode
        BatchNorm couples the examples of a batch).
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)
            loss = loss_fn(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return grad.detach(), loss.detach(), logits.detach()

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if k != "model"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
