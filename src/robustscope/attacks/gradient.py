"""Fixed-budget gradient attacks: FGSM (and FGSM-RS), PGD (CE, CW and KL losses) and CW-ℓ∞.

All attacks here maximise a per-example objective ``L(f(x′), y)`` over the threat
model ``S = ball(x, ε) ∩ box`` (:class:`~robustscope.attacks.threat.ThreatModel`)
with steepest-ascent steps of the norm (the gradient sign for ℓ∞, the normalized
gradient for ℓ2) followed by the projection ``P_S``.

Which point is returned (PGD and CW-ℓ∞): every iterate of every restart is checked;
per example, the **first misclassified iterate** found is final, and an example never
misclassified gets the **last iterate of the restart whose last iterate has the highest
objective** — so an unbroken example gets a point whose objective is at least that of
plain PGD's last iterate, without copying the batch at every step.
:mod:`robustscope.attacks.apgd` keeps the best iterate of every step (Croce & Hein's
rule) through the same :class:`BestKeeper`.

ε, the norm, the input ``box`` (by default the one the model declares: ``[0, 1]`` for
images, unbounded for vector data such as the Tsipras et al. distribution) and the success
``criterion`` are held by :class:`~robustscope.attacks.base.Attack`. The attacks here accept
every criterion (:mod:`robustscope.attacks.criteria`): with a targeted one the labels given
are the targets and the objective is taken towards them (``−CE`` to the target; CW: the
target's margin).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from robustscope.attacks.base import Attack, LossFn
from robustscope.attacks.criteria import Criterion, Misclassification
from robustscope.attacks.losses import ce_loss, cw_loss, cw_targeted_loss, kl_to_clean, neg_ce_loss
from robustscope.attacks.registry import register
from robustscope.attacks.threat import ThreatModel, flat_norms
from robustscope.data.box import BoxLike
from robustscope.errors import AttackError
from robustscope.numerics import per_example

__all__ = ["FGSM", "PGD", "PGD_LOSSES", "BestKeeper", "CWLinf", "pgd_start"]

#: the objectives PGD can maximise
PGD_LOSSES: tuple[str, ...] = ("ce", "cw", "kl")

#: standard deviation of the Gaussian start of the KL loss (TRADES, Zhang et al. 2019)
KL_START_STD = 1e-3


def pgd_start(threat: ThreatModel, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Random start of PGD and FGSM-RS: uniform in the ℓ∞ ball; in ℓ2 a uniform direction
    at a radius uniform in ``[0, ε]`` (then clipped to the box).

    Not uniform in the ℓ2 ball on purpose: in d dimensions that puts nearly every start at
    radius ≈ ε in a random direction, from which small PGD steps rotate only slowly toward
    the ascent direction (on a digits MLP, 64-d, this cost PGD-ℓ2 0.5–1 point of robust
    accuracy even at 50 steps). APGD's first step of 2ε makes it insensitive to this.
    """
    if threat.norm == "linf":
        return threat.random_start(x, gen)
    g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    r = torch.rand(len(x), generator=gen, device=x.device, dtype=x.dtype) * threat.eps
    norms = flat_norms(g, "l2").clamp_min(1e-12)
    delta = g * per_example(r / norms, x)
    return threat.project(x + delta, x)


class BestKeeper:
    """Per-example strongest point seen over all iterates and restarts of an attack.

    The rule: the first misclassified point an example gets is final; until then
    the point of highest objective is kept. Starts from the clean input (objective
    −∞), so an example whose objective is never finite is returned unchanged.

    Attributes:
        x: ``[N, ...]`` the kept points.
        loss: ``[N]`` (float64) the objective of the kept point of unsuccessful examples.
        found: ``[N]`` bool, an adversarial point (by ``criterion``) was found.
        criterion: what counts as adversarial (default: misclassification).
    """

    def __init__(self, x: torch.Tensor, criterion: Criterion | None = None) -> None:
        self.criterion = criterion or Misclassification()
        self.x = x.clone()
        self.loss = torch.full((len(x),), float("-inf"), dtype=torch.float64, device=x.device)
        self.found = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def remaining(self) -> torch.Tensor:
        """Indices of the examples without a misclassified point yet."""
        return (~self.found).nonzero()[:, 0]

    def found_at(self, idx: torch.Tensor, x_adv: torch.Tensor) -> None:
        """Record misclassified points ``x_adv`` for examples ``idx`` that have none yet."""
        open_ = ~self.found[idx]
        self.x[idx[open_]] = x_adv[open_]
        self.found[idx[open_]] = True

    def update(
        self,
        idx: torch.Tensor,
        x_adv: torch.Tensor,
        loss: torch.Tensor,
        logits: torch.Tensor,
        y: torch.Tensor,
    ) -> torch.Tensor:
        """Offer candidates ``x_adv`` for the examples ``idx``; returns their ``found`` flags."""
        misclassified = self.criterion(logits, y)
        open_ = ~self.found[idx]
        new = open_ & misclassified
        better = open_ & ~misclassified & (loss.to(torch.float64) > self.loss[idx])
        take = new | better
        if bool(take.any()):
            self.x[idx[take]] = x_adv[take]
            self.loss[idx[better]] = loss[better].to(torch.float64)
            self.found[idx[new]] = True
        return self.found[idx]


@register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015) and FGSM-RS (Wong et al. 2020).

    One steepest-ascent step of the cross-entropy, then the projection onto
    ``ball(x, ε) ∩ box``::

        x′ = P_S(x₀ + α · sign(∇ₓ CE(f(x₀), y)))        (ℓ∞; ℓ2: α · ∇/‖∇‖₂)

    with ``x₀ = x`` and ``α = ε`` (plain FGSM), or with ``random_start=True`` ``x₀``
    uniform in ``ball(x, ε) ∩ box`` (ℓ2: see :func:`pgd_start`) and ``α = 1.25 ε``
    (FGSM-RS of Wong, Rice & Kolter 2020, "Fast is better than free"). Cost: one forward + one input-gradient backward.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        random_start: start from a uniform random point of the ball (FGSM-RS).
        step_size: α; default ε, or 1.25 ε with ``random_start``.
        seed: seed of the random start (None: the global RNG).

    Example:
        >>> from robustscope import models
        >>> lin = models.create("linear", 2, (3,))  # vectors: the unbounded box
        >>> x, y = torch.zeros(1, 3), torch.tensor([0])
        >>> step = FGSM(lin, eps=0.25)(x, y)  # one signed step of length ε per coordinate
        >>> bool(step.abs().eq(0.25).all())
        True
    """

    name: ClassVar[str] = "fgsm"
    any_criterion: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        norm: str = "linf",
        random_start: bool = False,
        step_size: float | None = None,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
        criterion: Criterion | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed, criterion=criterion)
        self.random_start = bool(random_start)
        default = 1.25 * self.eps if self.random_start else self.eps
        self.step_size = self.step_size_or(step_size, default)

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x0 = pgd_start(self.threat, x, self.generator(x.device)) if self.random_start else x
        grad, _, _ = self.input_grad(x0, y, neg_ce_loss if self.criterion.targeted else ce_loss)
        return self.threat.project(self.threat.step(x0, grad, self.step_size), x)


@register("pgd")
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) with restarts and a choice of objective.

    Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks".

    From a start ``x⁰`` (with ``random_start``: uniform in the ℓ∞ ball, or in ℓ2 a
    uniform direction at a radius uniform in ``[0, ε]`` — :func:`pgd_start`; else ``x``)::

        xᵗ⁺¹ = P_S(xᵗ + α · sign(∇ₓ L(f(xᵗ), y)))        (ℓ∞; ℓ2: α · ∇/‖∇‖₂)

    for ``steps`` steps, maximising the objective ``loss``:

    * ``"ce"``: cross-entropy;
    * ``"cw"``: the Carlini–Wagner margin ``min(max_{j≠y} z_j − z_y, κ)``;
    * ``"kl"`` (untargeted only): ``KL(f(x) ‖ f(x′))`` with the clean prediction ``f(x)`` computed once at
      the start — the inner maximisation of TRADES (Zhang et al. 2019). Its gradient
      at ``x′ = x`` is exactly zero, so its random start is the TRADES one,
      ``x + 0.001·N(0, I)`` (projected), not a uniform point of the ball; with
      ``random_start=False`` the attack cannot leave ``x``.

    The default step size is ``α = 2.5 ε / steps`` (Madry et al. 2018: enough to
    cross the ball from any start). For shi2020 Table 1's evaluation use
    ``PGD(model, 8/255, steps=20, step_size=2/255)``.

    Returned point (see the module doc): per example, the first misclassified
    iterate of any restart, otherwise the last iterate of the restart ending with the
    highest objective — for ``"kl"`` too (for TRADES training this means a point the model already
    misclassifies is not pushed further). Restart ``r + 1`` runs only on the examples not
    yet misclassified, and
    an example leaves the batch as soon as it is misclassified. With
    ``random_start=False`` all restarts would be identical, so only one is run.

    Warm start: ``atk(x, y, start=x0)`` begins the first restart at ``x0`` (projected onto
    ball ∩ box) instead of a random point; later restarts start at random.
    :func:`~robustscope.attacks.evaluate` uses it to attack each ε from the previous
    (smaller) ε's final iterate.

    Cost: per restart, ``steps`` × (forward + input-gradient backward) and one
    forward of the last iterate (+ one clean forward in total for ``"kl"``).
    The objective and prediction of each iterate are read from the gradient call
    of the next step.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        steps: number of gradient steps (≥ 1).
        step_size: α; default ``2.5 ε / steps``.
        random_start: start from a random point (uniform, or the TRADES Gaussian for ``"kl"``).
        restarts: number of random restarts (≥ 1).
        loss: ``"ce"``, ``"cw"`` or ``"kl"``.
        kappa: confidence κ of the ``"cw"`` loss.
        seed: seed of the random starts (None: the global RNG).
        early_exit: stop an example at its first adversarial iterate (evaluation); False
            runs every step for every example and returns the last iterate (training).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 10, (1, 8, 8))  # images: the box [0, 1]
        >>> images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> adv = PGD(net, eps="8/255", steps=10, restarts=2, seed=0)(images, labels)
        >>> bool((adv - images).abs().max() <= 8 / 255 + 1e-6), float(adv.min()) >= 0
        (True, True)
    """

    name: ClassVar[str] = "pgd"
    warm_start: ClassVar[bool] = True
    any_criterion: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        eps: float | str,
        steps: int = 10,
        step_size: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        kappa: float = 0.0,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
        criterion: Criterion | None = None,
        early_exit: bool = True,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, box=box, seed=seed, criterion=criterion)
        self.early_exit = bool(early_exit)
        self.steps = self.positive_int("steps", steps)
        self.step_size = self.step_size_or(step_size, 2.5 * self.eps / self.steps)
        self.random_start = bool(random_start)
        self.restarts = self.positive_int("restarts", restarts)
        if loss not in PGD_LOSSES:
            raise AttackError(
                f"{self.name}: unknown loss {loss!r}; valid losses: {', '.join(PGD_LOSSES)}"
            )
        if loss == "kl" and self.criterion.targeted:
            raise AttackError(f"{self.name}: the 'kl' loss has no targeted form")
        self.loss = loss
        self.kappa = self.real("kappa", kappa)

    # --- pieces -----------------------------------------------------------------------------

    def _loss_fn(self, clean_logits: torch.Tensor | None) -> LossFn:
        targeted = self.criterion.targeted
        if self.loss == "ce":
            return neg_ce_loss if targeted else ce_loss
        if self.loss == "cw":
            kappa = self.kappa
            if targeted:
                return lambda logits, t: cw_targeted_loss(logits, t, kappa)
            return lambda logits, y: cw_loss(logits, y, kappa)
        assert clean_logits is not None
        return lambda logits, y: kl_to_clean(logits, clean_logits)

    def _start(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        if self.loss == "kl":
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            return self.threat.project(x + KL_START_STD * noise, x)
        return pgd_start(self.threat, x, gen)

    # --- loop -------------------------------------------------------------------------------

    def run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._attack(x, y, None)

    def run_from(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return self._attack(x, y, self.threat.project(start, x))

    def _attack(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        gen = self.generator(x.device)
        clean_logits = None
        if self.loss == "kl":
            with torch.no_grad():
                clean_logits = self.model(x).detach()
        if not self.early_exit:
            x0 = start if start is not None else self._start(x, gen)
            return self._run_all_steps(x, y, x0, clean_logits)
        keeper = BestKeeper(x, self.criterion)
        for r in range(self.restarts if self.random_start else 1):
            idx = keeper.remaining()
            if len(idx) == 0:
                break
            x0 = start[idx] if start is not None and r == 0 else self._start(x[idx], gen)
            self._run_once(x, y, idx, x0, clean_logits, keeper)
        return keeper.x

    def _run_all_steps(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor,
        clean_logits: torch.Tensor | None,
    ) -> torch.Tensor:
        """Every step for every example, last iterate returned (one restart): the inner
        maximisation of adversarial training, which must keep pushing misclassified points."""
        loss_fn = self._loss_fn(clean_logits)
        bounds = self.threat.bounds(x)
        for _ in range(self.steps):
            grad, _, _ = self.input_grad(x_adv, y, loss_fn)
            x_adv = self.threat.step_project(x_adv, grad, self.step_size, x, bounds)
        return x_adv

    def _run_once(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        x_adv: torch.Tensor,
        clean_logits: torch.Tensor | None,
        keeper: BestKeeper,
    ) -> None:
        xs, ys = x[idx], y[idx]
        cl = clean_logits[idx] if clean_logits is not None else None
        bounds = self.threat.bounds(xs)
        gone = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            grad, loss, logits = self.input_grad(x_adv, ys, self._loss_fn(cl))
            new = self.criterion(logits, ys) & ~gone
            if bool(new.any()):
                keeper.found_at(idx[new], x_adv[new])
                gone |= new
                n_gone = int(gone.sum())
                if n_gone == len(gone):
                    return
                # Recorded examples leave the batch once they are ≥ 1/8 of it: fewer copies
                # of the whole batch; their later iterates are ignored (found_at keeps the first).
                if 8 * n_gone >= len(gone):
                    keep = ~gone
                    idx, xs, ys, x_adv, grad = (t[keep] for t in (idx, xs, ys, x_adv, grad))
                    cl = cl[keep] if cl is not None else None
                    bounds = (bounds[0][keep], bounds[1][keep]) if bounds is not None else None
                    gone = gone[keep]
            x_adv = self.threat.step_project(x_adv, grad, self.step_size, xs, bounds)
        with torch.no_grad():
            logits = self.model(x_adv)
            loss = self._loss_fn(cl)(logits, ys)
        keeper.update(idx, x_adv, loss, logits, ys)


@register("cw-linf")
class CWLinf(PGD):
    """The Carlini–Wagner margin objective solved by PGD in ℓ∞ ("CW-ℓ∞" of shi2020 Table 1).

    Maximises ``min(max_{j≠y} z_j − z_y, κ)`` (Carlini & Wagner 2017, objective f₆)
    over ``ball_∞(x, ε) ∩ box`` with :class:`PGD` (``loss="cw"``, ``norm="linf"``,
    random start, default step size ``2.5 ε / steps``). shi2020 evaluates it with the
    PGD budget: ``CWLinf(model, 8/255, steps=20, step_size=2/255)``.

    ``model``, ``eps``, ``norm``, ``box`` and ``criterion`` are the parameters of
    :class:`~robustscope.attacks.base.Attack` (documented there once).

    Args:
        steps: number of PGD steps (default 30).
        step_size: α; default ``2.5 ε / steps``.
        kappa: confidence κ ≥ 0 (the objective stops growing at margin −κ).
        restarts: number of random restarts.
        seed: seed of the random starts (None: the global RNG).

    Example:
        >>> from robustscope import models
        >>> cnn = models.create("smallcnn", 3, (1, 12, 12), width=0.25)
        >>> CWLinf(cnn, eps=0.1, steps=5, seed=0).loss, CWLinf.norms
        ('cw', ('linf',))
    """

    name: ClassVar[str] = "cw-linf"
    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        steps: int = 30,
        step_size: float | None = None,
        kappa: float = 0.0,
        restarts: int = 1,
        seed: int | None = None,
        *,
        box: BoxLike | None = None,
        criterion: Criterion | None = None,
    ) -> None:
        super().__init__(
            model,
            eps,
            steps=steps,
            step_size=step_size,
            norm="linf",
            random_start=True,
            restarts=restarts,
            loss="cw",
            kappa=kappa,
            seed=seed,
            box=box,
            criterion=criterion,
        )
