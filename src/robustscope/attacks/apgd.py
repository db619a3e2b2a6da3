"""Auto-PGD (APGD-CE, APGD-DLR, APGD-T) and a light AutoAttack: APGD-CE then APGD-T.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks" (ICML 2020), Algorithm 1. APGD is PGD with
momentum whose step size is chosen by the progress of the objective instead of
being a parameter.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from robustscope.attacks.base import Attack, LossFn
from robustscope.attacks.gradient import BestKeeper
from robustscope.attacks.losses import (
    ce_loss,
    classes_by_logit,
    dlr_loss,
    dlr_targeted_loss,
    margin,
)
from robustscope.attacks.registry import register
from robustscope.data.box import BoxLike
from robustscope.errors import AttackError
from robustscope.evaluation import predict
from robustscope.numerics import per_example

__all__ = ["APGD", "APGDT", "APGD_LOSSES", "AutoAttackLite", "checkpoints", "halve_step"]

#: the objectives APGD can maximise
APGD_LOSSES: tuple[str, ...] = ("ce", "cw", "dlr", "dlr-targeted")

#: momentum α of the update (Croce & Hein 2020, §3.2)
MOMENTUM = 0.75

#: fewest classes each loss needs (DLR reads the 3rd largest logit, targeted DLR the 4th)
_MIN_CLASSES = {"dlr": 3, "dlr-targeted": 4}


def usable_loss(loss: str, k: int) -> str:
    """``loss``, or AutoAttack's fallback for a model with ``k`` logits that cannot use it:
    targeted DLR → DLR (3 classes) → the margin loss ``"cw"`` (2 classes or one score)."""
    if loss == "dlr-targeted" and k < _MIN_CLASSES["dlr-targeted"]:
        loss = "dlr"
    if loss == "dlr" and k < _MIN_CLASSES["dlr"]:
        loss = "cw"
    return loss


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ⌈p_j · steps⌉`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``,
    kept while ``w_j ≤ steps`` (duplicates removed). For 100 steps:
    ``[0, 22, 41, 57, 70, 80, 87, 93, 99]``.
    """
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # the small slack keeps float sums such as 0.22 + 0.19 from rounding up a whole step
    ws = {math.ceil(q * steps - 1e-9) for q in p}
    return sorted(w for w in ws if w <= steps)


def halve_step(
    increases: torch.Tensor,
    window: int,
    rho: float,
    reduced_last: torch.Tensor,
    f_best: torch.Tensor,
    f_best_last: torch.Tensor,
) -> torch.Tensor:
    """APGD's decision at a checkpoint ``w_j``, per example: halve η (and restart from x_max)?

    Condition 1: the objective increased at fewer than ``rho · window`` of the ``window =
    w_j − w_{j−1}`` steps since the last checkpoint (``increases`` counts them).
    Condition 2: η was not halved at the last checkpoint (``reduced_last`` False) and the
    best objective did not improve since (``f_best ≤ f_best_last``).
    """
    cond1 = increases.to(torch.float64) < rho * window
    cond2 = ~reduced_last & (f_best <= f_best_last)
    return cond1 | cond2


def _needs_classes(loss: str, fn: LossFn) -> LossFn:
    need = _MIN_CLASSES.get(loss)
    if need is None:
        return fn

    def checked(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] < need:
            raise AttackError(
                f"apgd: loss {loss!r} needs a model with at least {need} classes, "
                f"got {logits.shape[1]} logit(s); use loss 'ce' or 'cw'"
            )
        return fn(logits, y)

    return checked


@dataclass
class _State:
    """Per-example state of one APGD run on the examples ``idx`` still unbroken."""

    idx: torch.Tensor  # positions in the full batch
    x: torch.Tensor  # clean inputs
    y: torch.Tensor
    target: torch.Tensor  # target classes (APGD-T) or y again
    cur: torch.Tensor  # x^(k)
    prev: torch.Tensor  # x^(k-1)
    grad: torch.Tensor  # ∇f(x^(k))
    f: torch.Tensor  # f(x^(k))
    best: torch.Tensor  # x_max
    best_grad: torch.Tensor  # ∇f(x_max): restarting from x_max needs no extra gradient call
    f_best: torch.Tensor  # f_max
    eta: torch.Tensor  # per-example step size η
    increases: torch.Tensor  # #{f(x^(i)) > f(x^(i-1))} since the last checkpoint
    f_best_ckpt: torch.Tensor  # f_max at the last checkpoint
    reduced_ckpt: torch.Tensor  # η was halved at the last checkpoint

    def select(self, keep: torch.Tensor) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name)[keep])


@register("apgd")
class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020, ICML, Algorithm 1): PGD with momentum and an adaptive step.

    **Runs 100 steps by default, as in the original** (AutoAttack's APGD budget);
    lower ``steps`` for quick checks, knowingly. From ``x⁰`` uniform in
    ``S = ball(x, ε) ∩ box``, with ``η⁰ = 2ε`` and α = 0.75::

        x¹     = P_S(x⁰ + η⁰ · s(∇f(x⁰)))
        zᵏ⁺¹   = P_S(xᵏ + ηᵏ · s(∇f(xᵏ)))
        xᵏ⁺¹   = P_S(xᵏ + α (zᵏ⁺¹ − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹))

    where ``s`` is the sign (ℓ∞) or the ℓ2-normalized gradient (ℓ2). At each checkpoint
    ``w_j`` (:func:`checkpoints`) the step size of an example is halved, and its iterate
    restarts from its best point ``x_max`` (momentum reset, gradient at ``x_max``
    reused), if

    1. the objective increased at fewer than ``ρ · (w_j − w_{j−1})`` of the steps
       since ``w_{j−1}``, or
    2. its step size was not halved at ``w_{j−1}`` and ``f_max`` did not improve since.

    Objectives (``loss``): ``"ce"`` (cross-entropy); ``"dlr"``
    ``−(z_y − max_{j≠y} z_j)/(z_π1 − z_π3)`` (≥ 3 classes); ``"dlr-targeted"`` (APGD-T,
    ≥ 4 classes): targeted DLR ``−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)`` run against each
    of the ``n_target_classes`` classes with the highest clean logits other than ``y``
    in turn, each on the examples not yet broken; and ``"cw"``: the margin
    ``max_{j≠y} z_j − z_y`` (any number of classes, single-score models included).

    Returned point: per example, the first misclassified iterate found (any restart or
    target), otherwise the iterate of highest objective. Restarts (and targets) run on
    the examples not yet broken, each from a new random start; an example leaves the
    batch as soon as it is misclassified.

    Cost per restart (and target): ``steps`` × (forward + input-gradient backward),
    the last iterate by a forward only; APGD-T adds one clean forward.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        steps: iterations per restart (default 100, as Croce & Hein).
        restarts: random restarts (per target class for ``"dlr-targeted"``).
        loss: ``"ce"``, ``"cw"``, ``"dlr"`` or ``"dlr-targeted"`` (default ``"ce"``; APGD-T's
            ``"dlr-targeted"``).
        rho: ρ of condition 1 (0.75 in the paper).
        seed: seed of the random starts (None: the global RNG).
        n_target_classes: target classes of APGD-T (capped at K − 1; 9 in AutoAttack).

    Example:
        >>> from robustscope import models
        >>> mlp = models.create("mlp", 5, (20,), widths=[16])
        >>> atk = APGD(mlp, eps=0.5, norm="l2", loss="dlr", steps=20, seed=0)
        >>> v = torch.randn(6, 20)
        >>> bool(((atk(v, torch.arange(6) % 5) - v).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    name: ClassVar[str] = "apgd"
    #: the objective when ``loss`` is not given
    default_loss: ClassVar[str] = "ce"

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str | None = None,
        rho: float = 0.75,
        seed: int | None = None,
        n_target_classes: int = 9,
        *,
        box: BoxLike | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed)
        self.steps = self.positive_int("steps", steps)
        self.restarts = self.positive_int("restarts", restarts)
        loss = self.default_loss if loss is None else loss
        if loss not in APGD_LOSSES:
            raise AttackError(
                f"{self.name}: unknown loss {loss!r}; valid losses: {', '.join(APGD_LOSSES)}"
            )
        self.loss = loss
        self.rho = self.real("rho", rho, strict=True, maximum=1.0)
        self.n_target_classes = self.positive_int("n_target_classes", n_target_classes)
        self.checkpoints = checkpoints(self.steps)

    def _objective(self, target: torch.Tensor) -> LossFn:
        """The objective ``f(logits, y)``; ``target`` is aligned with the current batch."""
        fn: LossFn
        if self.loss == "ce":
            fn = ce_loss
        elif self.loss == "cw":
            fn = lambda logits, y: -margin(logits, y)  # noqa: E731
        elif self.loss == "dlr":
            fn = dlr_loss
        else:
            fn = lambda logits, y: dlr_targeted_loss(logits, y, target)  # noqa: E731
        return _needs_classes(self.loss, fn)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gen = self.generator(x.device)
        keeper = BestKeeper(x)
        if self.loss != "dlr-targeted":
            for _ in range(self.restarts):
                idx = keeper.remaining()
                if len(idx) == 0:
                    break
                self._run_once(x, y, y, idx, keeper, gen)
            return keeper.x
        with torch.no_grad():
            clean = self.model(x)
        k = clean.shape[1]
        if k < 4:
            raise AttackError(
                f"{self.name}: loss 'dlr-targeted' needs a model with at least 4 classes, "
                f"got {k} logit(s); use loss 'ce' or 'cw'"
            )
        order = classes_by_logit(clean, y)
        for t in range(min(self.n_target_classes, k - 1)):
            for _ in range(self.restarts):
                idx = keeper.remaining()
                if len(idx) == 0:
                    return keeper.x
                self._run_once(x, y, order[:, t], idx, keeper, gen)
        return keeper.x

    def _run_once(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor,
        idx: torch.Tensor,
        keeper: BestKeeper,
        gen: torch.Generator | None,
    ) -> None:
        tm = self.threat
        xs, ys, ts = x[idx], y[idx], target[idx]
        x0 = tm.random_start(xs, gen)
        grad, f0, logits = self.input_grad(x0, ys, self._objective(ts))
        n = len(idx)
        st = _State(
            idx=idx,
            x=xs,
            y=ys,
            target=ts,
            cur=x0,
            prev=x0,
            grad=grad,
            f=f0,
            best=x0,
            best_grad=grad,
            f_best=f0,
            eta=torch.full((n,), 2.0 * self.eps, dtype=x.dtype, device=x.device),
            increases=torch.zeros(n, dtype=torch.long, device=x.device),
            f_best_ckpt=f0,
            reduced_ckpt=torch.zeros(n, dtype=torch.bool, device=x.device),
        )
        if not self._keep_open(st, keeper, x0, f0, logits):
            return
        ckpts = self.checkpoints
        last_ckpt = 0
        for k in range(1, self.steps + 1):
            z = tm.project(tm.step(st.cur, st.grad, st.eta), st.x)
            if k == 1:
                new = z
            else:
                new = tm.project(
                    st.cur + MOMENTUM * (z - st.cur) + (1 - MOMENTUM) * (st.cur - st.prev), st.x
                )
            objective = self._objective(st.target)
            if k < self.steps:
                g_new, f_new, logits = self.input_grad(new, st.y, objective)
            else:  # the last iterate needs no gradient
                with torch.no_grad():
                    logits = self.model(new)
                    f_new = objective(logits, st.y)
                keeper.update(st.idx, new, f_new, logits, st.y)
                return
            st.increases += (f_new > st.f).long()
            improved = f_new > st.f_best
            ib = per_example(improved, new)
            st.best = torch.where(ib, new, st.best)
            st.best_grad = torch.where(ib, g_new, st.best_grad)
            st.f_best = torch.where(improved, f_new, st.f_best)
            st.prev, st.cur, st.grad, st.f = st.cur, new, g_new, f_new
            if not self._keep_open(st, keeper, new, f_new, logits):
                return
            if k in ckpts and k > 0:
                reduce = halve_step(
                    st.increases,
                    k - last_ckpt,
                    self.rho,
                    st.reduced_ckpt,
                    st.f_best,
                    st.f_best_ckpt,
                )
                rb = per_example(reduce, st.cur)
                st.eta = torch.where(reduce, st.eta / 2, st.eta)
                st.cur = torch.where(rb, st.best, st.cur)
                st.prev = torch.where(rb, st.best, st.prev)
                st.grad = torch.where(rb, st.best_grad, st.grad)
                st.f = torch.where(reduce, st.f_best, st.f)
                st.reduced_ckpt = reduce
                st.f_best_ckpt = st.f_best
                st.increases = torch.zeros_like(st.increases)
                last_ckpt = k

    @staticmethod
    def _keep_open(
        st: _State, keeper: BestKeeper, x_adv: torch.Tensor, f: torch.Tensor, logits: torch.Tensor
    ) -> bool:
        """Offer the iterate to ``keeper`` and drop the broken examples; False if none is left."""
        done = keeper.update(st.idx, x_adv, f, logits, st.y)
        if bool(done.any()):
            keep = ~done
            if not bool(keep.any()):
                return False
            st.select(keep)
        return True


@register("apgd-t")
class APGDT(APGD):
    """APGD-T: APGD with the targeted DLR loss against the top ``n_target_classes`` classes.

    ``APGD`` with the default ``loss="dlr-targeted"`` (Croce & Hein 2020): for each of the
    ``n_target_classes`` classes with the highest clean logits other than ``y``, in
    order, a targeted-DLR APGD run of ``steps`` iterations (default 100, as the
    original) on the examples not broken yet; the first misclassified point is kept.
    Needs at least 4 classes.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> atk = APGDT(model, eps=0.1, steps=10, n_target_classes=3, seed=0)
        >>> atk(torch.rand(2, 1, 8, 8), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 8, 8])
    """

    name: ClassVar[str] = "apgd-t"
    default_loss: ClassVar[str] = "dlr-targeted"


@register("autoattack-lite")
class AutoAttackLite(APGD):
    """A light AutoAttack (Croce & Hein 2020): APGD-CE, then APGD-T on the points still robust.

    1. APGD-CE (1 restart, ``steps`` iterations) — this class's own :class:`APGD` run, so its
       parameters are APGD's and configure this first stage (AutoAttack's settings by
       default);
    2. on the points still correctly classified after step 1 only: APGD-T against the
       ``n_target_classes`` most likely other classes (``restarts`` each, ``steps``
       iterations). Models with fewer than 4 classes cannot use targeted DLR: the
       second attack is then APGD-DLR (3 classes) or APGD with the margin loss
       ``"cw"`` (2 classes or a single score).

    The standard AutoAttack also runs FAB-T and Square; this one does not (see
    :class:`~robustscope.attacks.square.Square` for the black-box cross-check).
    Default 100 steps per run, as the original.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args: as :class:`APGD` (``steps`` and ``seed`` apply to both stages).

    Example:
        >>> from robustscope import models
        >>> lenet = models.create("lenet", 10, (1, 28, 28))
        >>> digits = torch.rand(2, 1, 28, 28)
        >>> AutoAttackLite(lenet, eps=0.03, steps=5, seed=0)(digits, torch.tensor([0, 1])).shape
        torch.Size([2, 1, 28, 28])
    """

    name: ClassVar[str] = "autoattack-lite"

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = super().run(x, y)  # the first stage: APGD-CE (by default), one restart
        with torch.no_grad():
            logits = self.model(x_adv)
        robust = (predict(logits) == y).nonzero()[:, 0]
        if len(robust) == 0:
            return x_adv
        k = logits.shape[1]
        second = copy.copy(self)
        second.loss = usable_loss("dlr-targeted", k)
        x_adv[robust] = APGD.run(second, x[robust], y[robust])
        return x_adv
