"""``noise_robustness``: wu2020's accuracy-independent robustness to random noise, eq. (4).

wu2020 define robustness as ``E_{‖x_ε‖ ≤ C}[α(x + x_ε)] − α(x)``: the accuracy under random
perturbations of norm at most C minus the clean accuracy, in [−1, 0] (0: noise never
changes a prediction's correctness), so that it does not grow with accuracy itself. The
estimate is :func:`robustscope.attacks.scores.accuracy_independent_robustness` (perturbations
uniform in the ℓ∞ cube or ℓ2 ball, clipped to the input box, ``draws`` per example, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustscope.attacks.scores import accuracy_independent_robustness
from robustscope.probes.base import ProbeResult, check_inputs
from robustscope.probes.registry import register_probe

__all__ = ["NoiseRobustnessResult", "noise_robustness"]


@dataclass(frozen=True)
class NoiseRobustnessResult(ProbeResult):
    """wu2020 eq. (4) on ``n`` test points.

    Attributes:
        score: mean noisy accuracy − clean accuracy (higher, i.e. closer to 0, is more
            robust); ``std_error`` its standard error over the draws.
        clean_accuracy, noisy_accuracy: the two accuracies.
        bound: C; ``norm`` its norm; ``draws`` perturbations per point; ``n`` points.
    """

    score: float
    std_error: float
    clean_accuracy: float
    noisy_accuracy: float
    bound: float
    norm: str
    draws: int
    n: int


@register_probe(
    "noise_robustness",
    "wu2020 eq. (4): accuracy under uniform random noise of norm ≤ C minus clean accuracy",
)
def noise_robustness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    bound: float = 0.1,
    norm: str = "linf",
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 500,
) -> NoiseRobustnessResult:
    """wu2020 eq. (4) of ``model`` on ``(x, y)`` (module doc).

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 3, (1, 4, 4), widths=[8])
        >>> r = noise_robustness(net, torch.rand(20, 1, 4, 4), torch.zeros(20, dtype=torch.long), bound=0.0)
        >>> r.score, r.noisy_accuracy == r.clean_accuracy  # no noise: no change
        (0.0, True)
    """
    check_inputs("noise_robustness", x, y)
    r = accuracy_independent_robustness(
        model, x, y, bound, norm=norm, draws=draws, seed=seed, batch_size=batch_size
    )
    return NoiseRobustnessResult(
        score=r.score,
        std_error=r.std_error,
        clean_accuracy=r.clean_accuracy,
        noisy_accuracy=r.noisy_accuracy,
        bound=r.bound,
        norm=r.norm,
        draws=r.draws,
        n=r.n,
    )
