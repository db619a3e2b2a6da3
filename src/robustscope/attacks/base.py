"""The attack base class: it owns the threat (ε, norm, input box), the success criterion,
model mode, parameter gradients, seeding and validation.

Each attack is a small subclass that writes only its loop in :meth:`Attack.run`
(the pattern of torchattacks' ``Attack``). Calling an attack::

    atk = PGD(model, eps=0.1, steps=20, seed=0)
    x_adv = atk(x, y)        # same shape and dtype as x, detached

The base validates and holds ``eps`` (a number or a fraction such as ``"8/255"``, parsed
by :mod:`robustscope.params`), ``norm``, the input ``box`` — given, or else the one the
model declares (:func:`robustscope.models.declared_box`: the box of the dataset it was
trained on, recorded in its checkpoint); a model that declares none and no ``box=`` is an
error, never a silent ``[0, 1]`` — and the success ``criterion``
(:mod:`robustscope.attacks.criteria`; untargeted misclassification by default).

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

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from robustscope.attacks.criteria import Criterion, Misclassification
from robustscope.attacks.threat import NORMS, ThreatModel
from robustscope.data.box import Box, BoxLike
from robustscope.device import model_device
from robustscope.errors import AttackError
from robustscope.models.base import declared_box
from robustscope.params import parse_eps, parse_real, positive_int

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


def resolve_box(model: nn.Module, box: BoxLike | None, who: str) -> Box:
    """The input box of an attack (or evaluation) on ``model``: ``box`` if given, else the
    box the model declares; an error naming the fix when there is neither."""
    if box is not None:
        return Box.parse(box, what=f"{who}: box")
    declared = declared_box(model)
    if declared is None:
        raise AttackError(
            f"{who}: the model declares no input box and none was given; pass box=(0, 1) "
            "for images in [0, 1] or box='unbounded' for vector data (models built by "
            "robustscope.models.create or loaded from a checkpoint declare theirs)"
        )
    return declared


class Attack(ABC):
    """Base class of every attack: ``atk(x, y) -> x_adv``.

    Subclasses set ``name`` and implement :meth:`run`, which receives detached
    inputs on the model's device with the model already in attack mode, and pass
    ``eps``/``norm``/``box``/``seed``/``criterion`` to ``super().__init__``.

    Args (common to every attack; each attack documents its own further parameters):
        model: maps inputs ``[N, ...]`` to logits ``[N, K]`` (or a binary score ``[N, 1]``,
            read as the two logits ``(0, s)``).
        eps: the radius ε of the threat model (fixed-budget attacks; minimal-norm attacks
            take none), in the units of the inputs: a number or a fraction ``"8/255"``.
        norm: ``"linf"`` or ``"l2"`` — one of the class's ``norms``.
        box: the input box every returned point lies in (``"unit"``, ``"unbounded"``,
            ``(lo, hi)`` or a :class:`~robustscope.data.box.Box`); default: the box the
            model declares (:func:`robustscope.models.declared_box`).
        seed: seed of the attack's randomness (None: the global torch RNG).
        criterion: what counts as adversarial (:mod:`robustscope.attacks.criteria`;
            default untargeted misclassification; a targeted criterion turns the labels
            given to the attack into targets and the objective towards them).

    Shape:
        ``x``: ``[N, ...]`` floating point inside the box; ``y``: ``[N]`` integer labels (or
        targets); output: like ``x`` (shape, dtype, device), detached.

    Attributes:
        model: maps pixel-space inputs ``[N, ...]`` to logits ``[N, K]``.
        eps: the radius ε (fixed-budget attacks; minimal-norm attacks have none).
        norm: ``"linf"`` or ``"l2"`` (one of the class's ``norms``).
        box: the input box every returned point lies in (:class:`~robustscope.data.box.Box`).
        threat: ``ball(x, ε) ∩ box`` as a :class:`ThreatModel` (fixed-budget attacks).
        criterion: what counts as adversarial (:mod:`robustscope.attacks.criteria`).
        seed: seed of the attack's randomness (None: the global torch RNG).
    """

    name: ClassVar[str] = "attack"
    #: minimal-norm attacks search for the smallest perturbation instead of using a fixed ε
    minimal_norm: ClassVar[bool] = False
    #: the norms the attack implements
    norms: ClassVar[tuple[str, ...]] = NORMS
    #: takes every criterion (targeted and composite ones too); else only the default
    #: untargeted misclassification
    any_criterion: ClassVar[bool] = False
    #: run with the model in train mode (BatchNorm running statistics kept); see attack_mode
    train_mode: bool = False
    #: accepts ``atk(x, y, start=x0)``: begin from a given point instead of a random start
    warm_start: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float | str | None = None,
        norm: str = "linf",
        box: BoxLike | None = None,
        seed: int | None = None,
        criterion: Criterion | None = None,
    ) -> None:
        self.model = model
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise AttackError(f"{self.name}: seed must be an integer or None, got {seed!r}")
        self.seed = seed
        if norm not in self.norms:
            raise AttackError(
                f"{self.name}: unknown or unsupported norm {norm!r}; "
                f"this attack supports: {', '.join(self.norms)}"
            )
        self.norm: str = norm
        self.box = resolve_box(model, box, self.name)
        self._threat: ThreatModel | None = None
        if self.minimal_norm:
            if eps is not None:
                raise AttackError(
                    f"{self.name} is a minimal-norm attack: it searches for the smallest "
                    "perturbation and takes no eps"
                )
        else:
            if eps is None:
                raise AttackError(f"{self.name}: eps is required (e.g. eps=0.1 or eps='8/255')")
            eps_value = parse_eps(eps, f"{self.name}: eps", error=AttackError)
            self._threat = ThreatModel(norm, eps_value, self.box)
        self.criterion = self._check_criterion(criterion)

    def _check_criterion(self, criterion: Criterion | None) -> Criterion:
        if criterion is None:
            return Misclassification()
        if not isinstance(criterion, Criterion):
            raise AttackError(
                f"{self.name}: criterion must be a robustscope.attacks.criteria.Criterion, "
                f"got {type(criterion).__name__}"
            )
        if not self.any_criterion and not criterion.is_plain_misclassification:
            raise AttackError(
                f"{self.name} supports only the untargeted Misclassification criterion, "
                f"got {criterion!r}"
            )
        return criterion

    @property
    def threat(self) -> ThreatModel:
        """``ball(x, ε) ∩ box`` (fixed-budget attacks only)."""
        if self._threat is None:
            raise AttackError(f"{self.name} is a minimal-norm attack: it has no fixed ε-ball")
        return self._threat

    @property
    def eps(self) -> float:
        """The radius ε (fixed-budget attacks only)."""
        return self.threat.eps

    # --- validation of the subclasses' own parameters ------------------------------------

    def positive_int(self, field: str, value: Any, minimum: int = 1) -> int:
        """``value`` as an int ≥ ``minimum``, else an error naming the attack and field."""
        return positive_int(value, f"{self.name}: {field}", minimum=minimum, error=AttackError)

    def real(
        self,
        field: str,
        value: Any,
        *,
        minimum: float = 0.0,
        strict: bool = False,
        maximum: float = math.inf,
    ) -> float:
        """``value`` (a number or a fraction string) as a finite float ≥ ``minimum``
        (``> minimum`` with ``strict``) and ≤ ``maximum`` (:func:`robustscope.params.parse_real`)."""
        return parse_real(
            value,
            f"{self.name}: {field}",
            minimum=minimum,
            maximum=maximum,
            strict=strict,
            error=AttackError,
        )

    def step_size_or(self, value: Any, default: float) -> float:
        """The step size: ``value`` (≥ 0) if given, else ``default``."""
        return default if value is None else self.real("step_size", value)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Adversarial examples for ``(x, y)``, like ``x`` (shape, dtype, device), detached.

        ``y`` holds the true labels, or the target classes under a targeted criterion.
        ``start`` (attacks with ``warm_start = True`` only, e.g. PGD): ``[N, ...]`` points to
        begin from instead of a random start; they are projected onto ball(x, ε) ∩ box
        first. :func:`robustscope.attacks.evaluate` uses it for ε-continuation.
        """
        if not torch.is_floating_point(x):
            raise AttackError(f"{self.name}: inputs must be floating point, got {x.dtype}")
        if y.ndim != 1 or len(y) != len(x):
            raise AttackError(
                f"{self.name}: labels must be [N] with N = {len(x)}, got shape {tuple(y.shape)}"
            )
        if start is not None:
            if not self.warm_start:
                raise AttackError(
                    f"{self.name}: this attack does not take a start point (start=...)"
                )
            if start.shape != x.shape:
                raise AttackError(
                    f"{self.name}: start must have the shape of x, {tuple(x.shape)}, "
                    f"got {tuple(start.shape)}"
                )
        if len(x) == 0:
            return x.clone()
        if not bool(self.box.contains(x.detach()).all()):
            raise AttackError(
                f"{self.name}: inputs range over [{float(x.min()):g}, {float(x.max()):g}], "
                f"outside the input box {self.box}; pass the box of the data (box=...)"
            )
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
        params = {
            k: v
            for k, v in vars(self).items()
            if k not in ("model", "last_result") and not k.startswith("_")
        }
        if self._threat is not None:
            params = {"eps": self.eps, **params}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
