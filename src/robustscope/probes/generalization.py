"""``generalization_gap``: train vs test loss and error, clean and under attack (wen2020 Fig. 3).

Wen et al. (2020) §2 define the generalization error (GE, "also sometimes termed
generalization gap") as the difference between the expected risk and the empirical risk
of a loss; in their experiments (§4.1, Fig. 3(a), Tables 3–5) the **GE gap is the gap
between the test and the training cross-entropy losses**, the paper's headline quantity,
which shrinks as the adversarial-training strength grows. They also report the error-rate
gap, which on CIFAR10 grows instead (§4.1 "seemingly abnormal phenomenon", §B.3, where
they argue the loss gap is the more faithful of the two). This probe reports both, as
``test − train``, for clean inputs and, when an attack and ε are given, at the attack's
adversarial points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import Attack, attack_mode
from robustscope.attacks.registry import create as create_attack
from robustscope.attacks.registry import get as get_attack
from robustscope.attacks.registry import parameters as attack_parameters
from robustscope.errors import ProbeError, RobustscopeError
from robustscope.evaluation import cross_entropy, predict
from robustscope.probes.base import ProbeData, ProbeResult, batches, check_inputs, logits_of
from robustscope.probes.registry import register_probe

__all__ = [
    "GapStats",
    "GeneralizationGapResult",
    "fixed_budget_attack",
    "flat_attack_params",
    "generalization_gap",
]

_PROBE = "generalization_gap"


@dataclass(frozen=True)
class GapStats:
    """Mean loss and error rate on the train and test subsets, and their gaps (test − train)."""

    train_loss: float
    test_loss: float
    train_error: float
    test_error: float

    @property
    def loss_gap(self) -> float:
        """``test_loss − train_loss``: wen2020's GE gap (Fig. 3(a))."""
        return self.test_loss - self.train_loss

    @property
    def error_gap(self) -> float:
        """``test_error − train_error`` (= train accuracy − test accuracy)."""
        return self.test_error - self.train_error


def with_attack_params(out: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """``out`` (a result's JSON form) with the attack's parameters, tuples as lists."""
    if params is not None:
        out["attack_params"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in params.items()
        }
    return out


@dataclass(frozen=True)
class GeneralizationGapResult(ProbeResult):
    """Train and test loss and error, clean and adversarial, and their gaps (wen2020 Fig. 3).

    Conventions: loss is the mean cross-entropy (natural log) over the examples of a split;
    error is the fraction misclassified (``argmax``; a binary score ``s`` predicts 1 iff
    ``s > 0``); gaps are ``test − train``. The headline gap of wen2020 is ``loss_gap``
    (clean). Logits are computed in eval mode in float64.

    Adversarial numbers (with ``attack``): the attack runs on every example of both splits
    with its seed; the adversarial loss is the cross-entropy at the attack's output; an
    example is an adversarial error when it is misclassified clean **or** at the attack's
    output (so ``adv_*_error ≥ *_error``). ``adv_*_error_on_correct`` is the error at the
    attack's output over the examples correct clean only (wen2020 §D.2's convention for
    their "PGD" row, as 1 − accuracy; NaN when no example is correct).

    Attributes:
        n_train, n_test: numbers of examples.
        train_loss, test_loss, train_error, test_error: clean.
        loss_gap, error_gap: clean ``test − train``.
        attack: the attack's name (None without attack); ``eps`` its radius (pixel units);
        attack_params: the attack parameters used (besides ``eps``).
        adv_train_loss, adv_test_loss, adv_train_error, adv_test_error, adv_loss_gap,
        adv_error_gap, adv_train_error_on_correct, adv_test_error_on_correct: adversarial
            (None without attack).
        headline: the name of wen2020's headline quantity, ``"loss_gap"``.
    """

    n_train: int
    n_test: int
    train_loss: float
    test_loss: float
    train_error: float
    test_error: float
    loss_gap: float
    error_gap: float
    attack: str | None = None
    eps: float | None = None
    attack_params: dict[str, Any] | None = None
    adv_train_loss: float | None = None
    adv_test_loss: float | None = None
    adv_train_error: float | None = None
    adv_test_error: float | None = None
    adv_loss_gap: float | None = None
    adv_error_gap: float | None = None
    adv_train_error_on_correct: float | None = None
    adv_test_error_on_correct: float | None = None
    headline: str = "loss_gap"

    def scalars(self) -> dict[str, float]:
        names = [
            "n_train",
            "n_test",
            "train_loss",
            "test_loss",
            "train_error",
            "test_error",
            "loss_gap",
            "error_gap",
            "eps",
            "adv_train_loss",
            "adv_test_loss",
            "adv_train_error",
            "adv_test_error",
            "adv_loss_gap",
            "adv_error_gap",
            "adv_train_error_on_correct",
            "adv_test_error_on_correct",
        ]
        return {k: float(v) for k in names if (v := getattr(self, k)) is not None}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def to_json(self) -> dict[str, Any]:
        return with_attack_params(super().to_json(), self.attack_params)


@dataclass(frozen=True)
class _SplitNumbers:
    loss: float
    error: float
    adv_loss: float | None = None
    adv_error: float | None = None
    adv_error_on_correct: float | None = None


def fixed_budget_attack(
    model: nn.Module,
    name: str,
    eps: float,
    params: dict[str, Any],
    seed: int,
    probe: str = _PROBE,
) -> tuple[Attack, dict[str, Any]]:
    """The registered fixed-budget attack ``name`` at ``eps`` for a probe's loss under attack,
    and the parameters used: ``seed`` and, where the attack has it, ``early_exit=False``
    (every step for every example, the last iterate kept, so the loss at its output is the
    maximised loss) are set unless ``params`` give them. Errors name ``probe``."""
    try:
        cls = get_attack(name)
    except RobustscopeError as exc:
        raise ProbeError(f"probe {probe!r}: attack: {exc}") from None
    if cls.minimal_norm:
        raise ProbeError(
            f"probe {probe!r}: attack {name!r} is a minimal-norm attack with no fixed ε; "
            "use a fixed-budget attack such as 'pgd', 'fgsm' or 'apgd'"
        )
    kw = dict(params)
    accepted = attack_parameters(name)
    if "seed" in accepted:
        kw.setdefault("seed", seed)
    if "early_exit" in accepted:
        # the adversarial loss should be the maximised loss, not the loss at the first
        # misclassified iterate (the evaluation default)
        kw.setdefault("early_exit", False)
    try:
        atk = create_attack(name, model, eps=eps, **kw)
    except (RobustscopeError, TypeError, ValueError) as exc:
        raise ProbeError(f"probe {probe!r}: attack {name!r}: {exc}") from None
    return atk, kw


def flat_attack_params(
    probe: str, attack: str, norm: str, steps: int, restarts: int
) -> dict[str, Any]:
    """A registered probe's flat attack options (``norm``, ``steps``, ``restarts``) as the
    parameters ``attack`` accepts; a non-ℓ∞ norm for an attack without ``norm`` is refused."""
    try:
        accepted = attack_parameters(attack)
    except RobustscopeError as exc:
        raise ProbeError(f"probe {probe!r}: attack: {exc}") from None
    params: dict[str, Any] = {}
    for key, value in (("steps", steps), ("restarts", restarts)):
        if key in accepted:
            params[key] = value
    if "norm" in accepted:
        params["norm"] = norm
    elif norm != "linf":
        raise ProbeError(f"probe {probe!r}: attack {attack!r} supports only norm='linf'")
    return params


class PointLosses(NamedTuple):
    """Per-example cross-entropy (float64) and correctness, clean and at an attack's points
    (None without an attack)."""

    loss: torch.Tensor
    correct: torch.Tensor
    adv_loss: torch.Tensor | None = None
    adv_correct: torch.Tensor | None = None


def point_losses(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, atk: Attack | None, batch_size: int
) -> PointLosses:
    """The :class:`PointLosses` of ``model`` on ``(x, y)``, the attack run per batch."""
    y = y.long().cpu()
    z = logits_of(model, x, batch_size)
    loss = cross_entropy(z, y, reduction="none")
    correct = predict(z) == y
    if atk is None:
        return PointLosses(loss, correct)
    adv_loss = torch.empty(len(x), dtype=torch.float64)
    adv_correct = torch.empty(len(x), dtype=torch.bool)
    for s in batches(len(x), batch_size):
        za = logits_of(model, atk(x[s], y[s]), batch_size)
        adv_loss[s] = cross_entropy(za, y[s], reduction="none")
        adv_correct[s] = predict(za) == y[s]
    return PointLosses(loss, correct, adv_loss, adv_correct)


def _split_numbers(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    atk: Attack | None,
    batch_size: int,
) -> _SplitNumbers:
    loss, correct, adv_loss, adv_correct = point_losses(model, x, y, atk, batch_size)
    if adv_loss is None or adv_correct is None:
        return _SplitNumbers(float(loss.mean()), float((~correct).double().mean()))
    robust = correct & adv_correct
    k = int(correct.sum())
    return _SplitNumbers(
        loss=float(loss.mean()),
        error=float((~correct).double().mean()),
        adv_loss=float(adv_loss.mean()),
        adv_error=float((~robust).double().mean()),
        adv_error_on_correct=float((~robust[correct]).double().mean()) if k else math.nan,
    )


def generalization_gap(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    attack: str | None = None,
    eps: float | None = None,
    attack_params: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> GeneralizationGapResult:
    """Train and test loss and error and their gaps ``test − train`` (wen2020 Fig. 3).

    wen2020's GE gap is the loss gap (see :class:`GeneralizationGapResult`); the error gap
    is reported beside it. With ``attack`` and ``eps`` the same numbers are computed at the
    attack's adversarial points.

    Args:
        model: maps pixel-space inputs to logits ``[N, K]`` (or a binary score ``[N, 1]``).
        x_train, y_train: a training subset (un-augmented) and its labels.
        x_test, y_test: a test subset and its labels.
        attack: a registered fixed-budget attack (e.g. ``"pgd"``), or None for clean only.
        eps: the attack's radius in pixel units (required with ``attack``).
        attack_params: further attack parameters (e.g. ``{"steps": 10, "norm": "linf"}``).
            Defaults set here: ``seed`` (this function's) and, for attacks that have it,
            ``early_exit=False`` —
            every step for every example, last iterate kept, so the adversarial loss is the
            maximised loss (as in PGD adversarial training) rather than the loss at the
            first misclassified iterate; pass ``early_exit=True`` for the evaluation rule.
        seed: the attack's seed (the same numbers on every call on the CPU).
        batch_size: examples per forward pass and per attack call.

    Returns:
        a :class:`GeneralizationGapResult`.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
        >>> res = generalization_gap(model, x[:16], y[:16], x[16:], y[16:], attack="pgd", eps=0.1)
        >>> res.adv_test_error >= res.test_error
        True
    """
    check_inputs(_PROBE, x_train, y_train)
    check_inputs(_PROBE, x_test, y_test)
    if (attack is None) != (eps is None):
        raise ProbeError(
            f"probe {_PROBE!r}: attack and eps go together; pass both (e.g. attack='pgd', "
            "eps=0.1) or neither"
        )
    if eps is not None and not (math.isfinite(eps) and eps >= 0):
        raise ProbeError(f"probe {_PROBE!r}: eps must be finite and ≥ 0, got {eps}")
    with attack_mode(model):
        atk: Attack | None = None
        used: dict[str, Any] | None = None
        if attack is not None and eps is not None:
            atk, used = fixed_budget_attack(model, attack, float(eps), attack_params or {}, seed)
        tr = _split_numbers(model, x_train, y_train, atk, batch_size)
        te = _split_numbers(model, x_test, y_test, atk, batch_size)

    def gap(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    return GeneralizationGapResult(
        n_train=len(x_train),
        n_test=len(x_test),
        train_loss=tr.loss,
        test_loss=te.loss,
        train_error=tr.error,
        test_error=te.error,
        loss_gap=te.loss - tr.loss,
        error_gap=te.error - tr.error,
        attack=attack,
        eps=None if eps is None else float(eps),
        attack_params=used,
        adv_train_loss=tr.adv_loss,
        adv_test_loss=te.adv_loss,
        adv_train_error=tr.adv_error,
        adv_test_error=te.adv_error,
        adv_loss_gap=gap(te.adv_loss, tr.adv_loss),
        adv_error_gap=gap(te.adv_error, tr.adv_error),
        adv_train_error_on_correct=tr.adv_error_on_correct,
        adv_test_error_on_correct=te.adv_error_on_correct,
    )


@register_probe(
    "generalization_gap",
    "train vs test loss and error and their gaps (test − train), clean and under an attack "
    "at eps (wen2020 Fig. 3; the headline GE gap is the loss gap)",
    splits=("train", "test"),
    tracked=False,
)
def _generalization_gap_probe(
    model: nn.Module,
    data: ProbeData,
    *,
    attack: str = "none",
    eps: float = 0.0,
    norm: str = "linf",
    steps: int = 10,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 256,
) -> GeneralizationGapResult:
    """The registered probe: flat options (``attack`` name or ``"none"``, ``eps``, and the
    ``norm``, ``steps`` and ``restarts`` the attack accepts) turned into the ``attack`` and
    ``attack_params`` of :func:`generalization_gap`."""
    x_train, y_train = data.require_train(_PROBE)
    x_test, y_test = data.test
    if attack in ("none", ""):
        return generalization_gap(model, x_train, y_train, x_test, y_test, batch_size=batch_size)
    params = flat_attack_params(_PROBE, attack, norm, steps, restarts)
    return generalization_gap(
        model,
        x_train,
        y_train,
        x_test,
        y_test,
        attack=attack,
        eps=eps,
        attack_params=params,
        seed=seed,
        batch_size=batch_size,
    )
