"""Adversarial-training objectives: PGD-AT, TRADES, fast (FGSM-RS) AT, free AT, mixed
batches and Gaussian-noise augmentation.

Each objective is a small class built by a registered factory (see
:mod:`robustscope.training.objectives`); the loop calls ``objective(model, x, y)`` and
differentiates the returned loss. Conventions shared by all of them:

* **Threat model.** ``eps`` is in the units of the inputs (pixel units of [0, 1] images),
  in the norm ``norm`` (``"linf"`` or ``"l2"``). Adversarial points stay in
  ``ball(x, ε) ∩ box``, where the box is the one the model declares — the box of the
  dataset it is trained on (``[0, 1]`` for images, unbounded for vector data such as the
  Tsipras et al. distribution; :mod:`robustscope.data.box`) — unless ``box`` is given.
* **Inner maximisation.** PGD-AT, TRADES and mixed batches use :class:`~robustscope.attacks.PGD` with ``early_exit=False``:
  Madry et al.'s PGD, every step for every example of the batch and the **last iterate**
  returned. It is not the evaluation attack :class:`~robustscope.attacks.PGD`, which stops
  an example at its first misclassified iterate (right for measuring robust accuracy, but
  as a training attack it would push misclassified examples no further — a different,
  "early-stopped" method — and in train mode it would change the batch whose statistics
  BatchNorm uses). FGSM-RS uses the engine's :class:`~robustscope.attacks.FGSM`.
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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from robustscope.attacks.base import Attack, resolve_box
from robustscope.attacks.gradient import FGSM, PGD
from robustscope.attacks.losses import kl_to_clean
from robustscope.attacks.threat import NORMS, ThreatModel
from robustscope.data.box import UNBOUNDED, Box, BoxLike
from robustscope.errors import RobustscopeError, TrainingError
from robustscope.evaluation import cross_entropy
from robustscope.params import parse_number, positive_int
from robustscope.training.objectives import Objective, StepOutput, register

__all__ = [
    "ATTACK_MODES",
    "AdversarialTraining",
    "FreeTraining",
    "InnerMaximizer",
    "MixedTraining",
    "NoiseAugmentation",
    "SeededObjective",
    "Trades",
    "real",
    "trades_kl",
]

ATTACK_MODES: tuple[str, ...] = ("eval", "train")

BoxParam = BoxLike | None
#: ``attack(model, x, y, seed) -> x_adv``: the inner maximisation as an objective calls it
InnerAttack = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


# --- helpers ---------------------------------------------------------------------------------


def _check_box(method: str, box: BoxParam) -> Box | None:
    """The ``box`` option of an objective: None (the model's declared box) or a box."""
    if box is None:
        return None
    try:
        return Box.parse(box, what=f"method {method!r}: box")
    except RobustscopeError as exc:
        raise TrainingError(str(exc)) from None


def _check_threat(method: str, norm: str, eps: Any) -> float:
    """ε as a float, after checking it and the norm."""
    value = real(method, "eps", eps)
    if norm not in NORMS:
        raise TrainingError(
            f"method {method!r}: norm must be one of {', '.join(NORMS)}, got {norm!r}"
        )
    if not (value >= 0) or value == float("inf"):
        raise TrainingError(f"method {method!r}: eps must be finite and ≥ 0, got {eps!r}")
    return value


def _positive_int(method: str, field: str, value: Any) -> int:
    return positive_int(value, f"method {method!r}: {field}", error=TrainingError)


def _step(method: str, step_size: Any, default: float) -> float:
    if step_size is None:
        return default
    value = real(method, "step_size", step_size)
    if not (value >= 0):
        raise TrainingError(f"method {method!r}: step_size must be ≥ 0, got {step_size!r}")
    return value


def _check_attack_mode(method: str, attack_mode: str) -> bool:
    """True for train mode."""
    if attack_mode not in ATTACK_MODES:
        raise TrainingError(
            f"method {method!r}: attack_mode must be one of {', '.join(ATTACK_MODES)}, "
            f"got {attack_mode!r}"
        )
    return attack_mode == "train"


def real(method: str, field: str, value: Any) -> float:
    """A number option of objective ``method`` (:func:`robustscope.params.parse_number`:
    ``0.03`` or a fraction ``"8/255"`` as in the papers)."""
    return parse_number(value, f"method {method!r}: {field}", error=TrainingError)


def _objective_seed(seed: int) -> int:
    """The seed of an objective's generator, derived from the run's seed."""
    return (int(seed) * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407) % 2**63


def trades_kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """TRADES' robust term: ``(1/N) Σ_i KL(f(x_i) ‖ f(x′_i))`` ("batchmean").

    The direction is the clean prediction first, as in Zhang et al. 2019 and their code
    (``KLDivLoss(log_softmax(f(x′)), softmax(f(x)))``); gradients flow through both
    arguments. Equal to ``F.kl_div(log_softmax(adv), softmax(clean), reduction="batchmean")``.
    A single-logit (binary) model is read as the two logits ``(0, s)``.
    """
    return kl_to_clean(adv_logits, clean_logits).mean()


# --- the inner maximisation ----------------------------------------------------------------


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
            self._build(nn.Identity(), 0, self.box or UNBOUNDED)
        except RobustscopeError as exc:
            raise TrainingError(f"method {self.owner!r}: {exc}") from None

    def make(self, model: nn.Module, x: torch.Tensor, seed: int) -> Attack:
        """The attack on ``model`` for this batch (``x``) with this batch's ``seed``."""
        return self._build(model, seed, self.box)

    def _build(self, model: nn.Module, seed: int, box: Box | None) -> Attack:
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
        return self.make(model, x, seed)(x, y)


def _pgd_inner(
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
    steps = _positive_int(method, "steps", steps)
    eps = _check_threat(method, norm, eps)
    return InnerMaximizer(
        owner=method,
        kind="pgd",
        eps=eps,
        norm=norm,
        steps=steps,
        step_size=_step(method, step_size, 2.5 * eps / steps),
        random_start=bool(random_start),
        loss=loss,
        train_mode=_check_attack_mode(method, attack_mode),
        box=_check_box(method, box),
    )


# --- objectives ----------------------------------------------------------------------------


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

    def set_progress(self, fraction: float) -> None:
        """The fraction of all training steps done after the coming step, in (0, 1]."""
        self.progress = float(fraction)

    def inner(self, attack: InnerAttack) -> InnerAttack:
        """``attack`` at the warmed-up strength of the current step."""
        if self.eps_warmup <= 0 or self.progress >= self.eps_warmup:
            return attack
        if not isinstance(attack, InnerMaximizer):
            return attack
        scale = self.progress / self.eps_warmup
        return dataclasses.replace(
            attack, eps=attack.eps * scale, step_size=attack.step_size * scale
        )

    def next_seed(self) -> int:
        """A fresh seed for this batch's randomness (advances the generator)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.generator))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class AdversarialTraining(SeededObjective):
    """PGD adversarial training: cross-entropy at the inner attack's points.

    Attributes:
        attack: the inner maximisation ``attack(model, x, y, seed) -> x_adv`` (replaceable).
    """

    def __init__(self, attack: InnerAttack, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        x_adv = self.inner(self.attack)(model, x, y, self.next_seed())
        logits = model(x_adv)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)


class Trades(SeededObjective):
    """TRADES: ``CE(f(x), y) + β · (1/N) Σ KL(f(x) ‖ f(x′))`` with x′ from the KL attack.

    Reported logits (training accuracy) are the clean ones; extras ``natural_loss`` (the CE
    term) and ``kl_term`` (the KL, before multiplying by β).
    """

    def __init__(self, attack: InnerAttack, beta: float, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack
        self.beta = float(beta)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        x_adv = self.inner(self.attack)(model, x, y, self.next_seed())
        logits = model(x)
        adv_logits = model(x_adv)
        natural = cross_entropy(logits, y)
        kl = trades_kl(logits, adv_logits)
        return StepOutput(
            loss=natural + self.beta * kl,
            logits=logits,
            extras={"natural_loss": float(natural.detach()), "kl_term": float(kl.detach())},
        )


class MixedTraining(SeededObjective):
    """Half natural, half adversarial: the first ``⌊n/2⌋`` examples of each batch are
    replaced by their PGD points, the rest stay clean; the loss is the mean cross-entropy
    over the whole batch (one forward pass). The loop shuffles the data every epoch, so the
    first half is a uniformly random half — no further randomness is needed.
    Reported logits: the mixed batch (aligned with the batch labels).
    """

    def __init__(self, attack: InnerAttack, seed: int) -> None:
        super().__init__(seed)
        self.attack = attack

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        k = len(x) // 2
        seed = self.next_seed()
        x_mix = x
        if k > 0:
            x_mix = torch.cat([self.inner(self.attack)(model, x[:k], y[:k], seed), x[k:]])
        logits = model(x_mix)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)


class NoiseAugmentation(SeededObjective):
    """Cross-entropy at ``x + σ·N(0, I)`` (clamped to the input box); σ = 0 is standard training."""

    def __init__(self, sigma: float, box: Box | None, seed: int) -> None:
        super().__init__(seed)
        self.sigma = float(sigma)
        self.box = box

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        seed = self.next_seed()
        if self.sigma > 0:
            gen = torch.Generator(device=x.device).manual_seed(seed)
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            x = resolve_box(model, self.box, "noise").clamp(x + self.sigma * noise)
        logits = model(x)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)


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
        self.ball = ThreatModel(norm, eps, UNBOUNDED)  # type: ignore[arg-type]
        self.replays = _positive_int("free", "replays", replays)
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


# --- registered factories --------------------------------------------------------------------


_S = TypeVar("_S", bound=SeededObjective)


def _with_warmup(objective: _S, method: str, eps_warmup: Any) -> _S:
    w = real(method, "eps_warmup", eps_warmup)
    if not 0 <= w < 1:
        raise TrainingError(
            f"method {method!r}: eps_warmup must be a fraction of training in [0, 1), got {w}"
        )
    objective.eps_warmup = w
    return objective


@register("pgd", "PGD adversarial training (Madry et al. 2018): CE at PGD points")
def pgd(
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """PGD adversarial training (Madry et al. 2018, "Towards deep learning models resistant to
    adversarial attacks"): minimise the cross-entropy at ``x′ = PGD(x)``, the last iterate of
    ``steps`` steps of :class:`~robustscope.attacks.PGD` with ``early_exit=False`` from a random start.

    The default step size ``α = 2.5 ε / steps`` is Madry et al.'s rule (enough to cross the
    ball). wen2020 §B.1 trains with 10 steps of 2/255 at ε ∈ {4, 8, 16}/255: the default
    gives exactly 2/255 at ε = 8/255; pass ``step_size=2/255`` for the other two.

    Args:
        eps: radius ε (pixel units, in ``norm``).
        norm: ``"linf"`` or ``"l2"``.
        steps: PGD steps.
        step_size: α; default ``2.5 ε / steps``.
        random_start: start PGD from a uniform random point of the ball.
        attack_mode: ``"eval"`` (default) or ``"train"``: the model's mode during the attack
            (see the module doc; running statistics are never changed by the attack).
        box: the input box ``[lo, hi]`` (a side may be null) or ``"unbounded"``; None: the
            one the model declares (its dataset's box).
        eps_warmup: fraction of training over which ε and the step size ramp linearly
            from 0 to their values (0: none); helps large ε train from scratch.
        seed: seed of the objective's generator (the run's seed by default).
    """
    inner = _pgd_inner("pgd", eps, norm, steps, step_size, random_start, attack_mode, box)
    return _with_warmup(AdversarialTraining(inner, seed), "pgd", eps_warmup)


@register("trades", "TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x′))")
def trades(
    eps: float,
    beta: float = 6.0,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
    accuracy"): minimise ``CE(f(x), y) + β · (1/N) Σᵢ KL(f(xᵢ) ‖ f(x′ᵢ))``.

    ``x′`` maximises ``KL(f(x) ‖ f(x′))`` (clean prediction fixed) over the ball by
    :class:`~robustscope.attacks.PGD` with ``early_exit=False`` with ``loss="kl"``, from ``x + 0.001·N(0, I)``. The KL runs from the
    clean distribution to the adversarial one, is summed over classes and averaged over the
    batch ("batchmean"), and is differentiated through both distributions (:func:`trades_kl`).
    Reported logits are the clean ones, so the epoch's ``train_accuracy`` is clean accuracy;
    extras ``natural_loss`` (CE) and ``kl_term`` (the KL before the factor β).

    ``β = 1/λ`` trades accuracy for robustness: Zhang et al. use 6 (the default); shi2020
    Table 1 uses ``1/λ = 5`` with 10 steps of 2/255 at ε = 8/255 (the default step size
    ``2.5 ε / steps`` equals 2/255 there).

    Args:
        eps: radius ε (pixel units, in ``norm``).
        beta: weight β of the KL term (≥ 0).
        norm: ``"linf"`` or ``"l2"``.
        steps: steps of the KL attack.
        step_size: α; default ``2.5 ε / steps``.
        random_start: the Gaussian start (without it the KL attack cannot leave x).
        attack_mode: ``"eval"`` (default; as Zhang et al.'s code) or ``"train"``.
        box: the input box; None: the one the model declares (its dataset's box).
        eps_warmup: fraction of training over which ε and the step size ramp linearly
            from 0 to their values (0: none); helps large ε train from scratch.
        seed: seed of the objective's generator (the run's seed by default).
    """
    beta = real("trades", "beta", beta)
    if not (beta >= 0):
        raise TrainingError(f"method 'trades': beta must be ≥ 0, got {beta!r}")
    inner = _pgd_inner(
        "trades", eps, norm, steps, step_size, random_start, attack_mode, box, loss="kl"
    )
    return _with_warmup(Trades(inner, beta, seed), "trades", eps_warmup)


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
    eps = _check_threat("fgsm-rs", norm, eps)
    inner = InnerMaximizer(
        owner="fgsm-rs",
        kind="fgsm",
        eps=eps,
        norm=norm,
        steps=1,
        step_size=_step("fgsm-rs", step_size, 1.25 * eps),
        random_start=True,
        train_mode=_check_attack_mode("fgsm-rs", attack_mode),
        box=_check_box("fgsm-rs", box),
    )
    return _with_warmup(AdversarialTraining(inner, seed), "fgsm-rs", eps_warmup)


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
    eps = _check_threat("free", norm, eps)
    return FreeTraining(
        eps,
        norm,
        _positive_int("free", "replays", replays),
        _step("free", step_size, eps),
        _check_box("free", box),
    )


@register("mixed", "half natural, half PGD examples per batch (tsipras2019 App. B)")
def mixed(
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    attack_mode: str = "eval",
    box: BoxParam = None,
    eps_warmup: float = 0.0,
    seed: int = 0,
) -> Objective:
    """Mixed batches (Tsipras et al. 2019, App. B, after Kurakin et al. 2016): in every batch
    the first ``⌊n/2⌋`` examples (a uniformly random half, since the loop reshuffles each
    epoch) are replaced by their PGD points (as in :func:`pgd`), the others stay natural; the
    loss is the mean cross-entropy of the whole batch.

    Args: as :func:`pgd`.
    """
    inner = _pgd_inner("mixed", eps, norm, steps, step_size, random_start, attack_mode, box)
    return _with_warmup(MixedTraining(inner, seed), "mixed", eps_warmup)


@register("noise", "Gaussian-noise augmentation at sigma (terzi2021's contrast to AT)")
def noise(sigma: float = 0.1, box: BoxParam = None, seed: int = 0) -> Objective:
    """Gaussian data augmentation: cross-entropy at ``x + σ·N(0, I)``, clamped to the input box.

    terzi2021 contrasts it with adversarial training: isotropic noise regularises the
    input Fisher only on average over directions (``ε²/(2n) tr F``), adversarial noise along
    its top eigenvector, so noise is the weaker regulariser in high dimension. ``sigma=0`` is
    exactly standard training.

    Args:
        sigma: standard deviation σ ≥ 0 of the noise, in pixel units.
        box: the input box; None: the one the model declares (its dataset's box).
        seed: seed of the objective's generator (the run's seed by default).
    """
    sigma = real("noise", "sigma", sigma)
    if not (sigma >= 0):
        raise TrainingError(f"method 'noise': sigma must be ≥ 0, got {sigma!r}")
    return NoiseAugmentation(sigma, _check_box("noise", box), seed)
