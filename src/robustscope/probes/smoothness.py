"""``loss_variation``: how much an attack within ε can raise each example's loss (wen2020 B.5).

wen2020 §B.5 ("Further evidence on the smoothing effect of adversarial robustness", Fig. 8,
their Table 1) measure the smoothing effect of adversarial training around examples: for a
fixed ℓ∞ budget they generate an adversarial example for every test example, compute "the
maximal loss variation/change of the adversarial example w.r.t. the natural example", and
report the **mean and the standard deviation** of these maxima over the test set, for
networks of increasing adversarial strength. Both fall as the strength grows; the standard
deviation is about as large as the mean because wrongly classified examples vary far more
than correctly classified ones (their discussion of Table 1).

This probe measures, for every example, ``Δ_i = CE(f(x′_i), y_i) − CE(f(x_i), y_i)`` with
``x′_i`` the output of a fixed-budget attack maximising the cross-entropy (PGD by default,
every step for every example and the last iterate kept: ``early_exit=False``, as in
:mod:`~robustscope.probes.generalization`), and reports their mean and population standard
deviation (ddof = 0), also over the clean-correct and clean-wrong examples separately.
The attack approximates the maximum from below, so ``Δ_i`` is a lower bound of the maximal
variation within the ball (exact for a binary linear model; see the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.errors import ProbeError
from robustscope.probes.base import ProbeResult, check_inputs
from robustscope.probes.generalization import (
    fixed_budget_attack,
    flat_attack_params,
    point_losses,
    with_attack_params,
)
from robustscope.probes.registry import register_probe

__all__ = ["LossVariationResult", "loss_variation"]

_PROBE = "loss_variation"


def _mean_std(values: torch.Tensor) -> tuple[float, float]:
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(correction=0)) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class LossVariationResult(ProbeResult):
    """wen2020 B.5: per-example loss change under a fixed-budget attack, its mean and std.

    Conventions: loss is the cross-entropy (natural log) of the logits in eval mode, in
    float64; ``Δ_i = CE(x′_i) − CE(x_i)``; std is the population standard deviation
    (ddof = 0); "correct" means classified correctly on the clean input.

    Attributes:
        attack: the attack's name; eps: its radius (pixel units); norm: its norm.
        n: number of examples; n_correct: how many are correct clean.
        mean, std: mean and std of Δ over all examples (wen2020 Fig. 8, Table 1).
        max: the largest Δ.
        mean_correct, std_correct, mean_wrong, std_wrong: the same over the clean-correct
            and clean-wrong examples (NaN for an empty group).
        variation: ``[n]`` the per-example Δ (an array of the store).
        attack_params: the attack parameters used (besides ``eps``).
    """

    attack: str
    eps: float
    norm: str
    n: int
    n_correct: int
    mean: float
    std: float
    max: float
    mean_correct: float
    std_correct: float
    mean_wrong: float
    std_wrong: float
    variation: torch.Tensor
    attack_params: dict[str, Any] | None = None

    def scalars(self) -> dict[str, float]:
        names = ["eps", "n", "n_correct", "mean", "std", "max"]
        names += ["mean_correct", "std_correct", "mean_wrong", "std_wrong"]
        return {k: float(getattr(self, k)) for k in names}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"variation": self.variation.numpy()}

    def to_json(self) -> dict[str, Any]:
        return with_attack_params(super().to_json(), self.attack_params)


@register_probe(
    "loss_variation",
    "per-example loss change under a fixed-budget attack at eps: mean and std over the test "
    "points (wen2020 B.5, Fig. 8)",
)
def loss_variation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    attack: str = "pgd",
    eps: float = 8 / 255,
    norm: str = "linf",
    steps: int = 10,
    restarts: int = 1,
    seed: int = 0,
    batch_size: int = 256,
) -> LossVariationResult:
    """The loss variation ``Δ_i = CE(f(x′_i), y_i) − CE(f(x_i), y_i)`` of every example under
    ``attack`` at ``eps``, and its mean and std (wen2020 §B.5; module doc).

    Args:
        model: maps pixel-space inputs to logits ``[N, K]`` (mode restored; weights untouched).
        x, y: test inputs ``[N, ...]`` and labels ``[N]``.
        attack: a registered fixed-budget attack (``pgd``, ``fgsm``, ``apgd``, ...).
        eps: the attack's radius in pixel units (wen2020 uses one fixed ℓ∞ budget for all
            networks; default 8/255, their middle strength on CIFAR).
        norm, steps, restarts: passed to the attack where it accepts them.
        seed: the attack's seed (the same numbers on every call on the CPU).
        batch_size: examples per forward pass and per attack call.

    Example:
        >>> from robustscope import models
        >>> model = models.create("mlp", 10, (1, 8, 8))
        >>> x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
        >>> res = loss_variation(model, x, y, eps=0.1, steps=5)
        >>> res.n, res.mean >= 0, res.std >= 0
        (16, True, True)
    """
    check_inputs(_PROBE, x, y)
    if not (math.isfinite(eps) and eps >= 0):
        raise ProbeError(f"probe {_PROBE!r}: eps must be finite and ≥ 0, got {eps}")
    params = flat_attack_params(_PROBE, attack, norm, steps, restarts)
    with attack_mode(model):
        atk, used = fixed_budget_attack(model, attack, float(eps), params, seed, _PROBE)
        clean, correct, adv, _ = point_losses(model, x, y, atk, batch_size)
    assert adv is not None  # an attack ran
    delta = adv - clean
    mean, std = _mean_std(delta)
    mean_c, std_c = _mean_std(delta[correct])
    mean_w, std_w = _mean_std(delta[~correct])
    return LossVariationResult(
        attack=attack,
        eps=float(eps),
        norm=norm,
        n=len(x),
        n_correct=int(correct.sum()),
        mean=mean,
        std=std,
        max=float(delta.max()),
        mean_correct=mean_c,
        std_correct=std_c,
        mean_wrong=mean_w,
        std_wrong=std_w,
        variation=delta,
        attack_params=used,
    )
