"""Clean objectives: standard training (empirical risk minimisation) and Gaussian-noise
augmentation (terzi2021's contrast to adversarial training)."""

from __future__ import annotations

import torch
from torch import nn

from robustscope.attacks.base import resolve_box
from robustscope.data.box import Box
from robustscope.evaluation import cross_entropy
from robustscope.training.objectives.base import (
    BoxParam,
    Objective,
    SeededObjective,
    StepOutput,
    check_box,
    real,
    register,
)

__all__ = ["NoiseAugmentation", "noise", "standard"]


@register("standard", "empirical risk minimisation: cross-entropy on clean inputs")
def standard() -> Objective:
    """Standard training: mean cross-entropy of the clean batch."""

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        logits = model(x)
        return StepOutput(loss=cross_entropy(logits, y), logits=logits)

    return objective


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
    sigma = real("noise", "sigma", sigma, minimum=0.0)
    return NoiseAugmentation(sigma, check_box("noise", box), seed)
