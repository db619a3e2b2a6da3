"""What counts as adversarial: composable success criteria (the pattern of foolbox 3's criteria).

A criterion maps the logits at candidate points and the labels given to the attack to a
per-example bool ``[N]``, True where the point is adversarial. Attacks stop an example at its
first adversarial iterate and keep the points the criterion accepts; gradient attacks also
take the direction of their objective from it (towards the target for a targeted criterion).

* :class:`Misclassification` (the default): the predicted class differs from the label;
* :class:`TargetedMisclassification`: the predicted class *is* the label, which is then the
  target class (call ``atk(x, targets)``);
* :class:`Confidence`: the top softmax probability is at least ``threshold`` — meaningful
  in combination, e.g. ``Misclassification() & Confidence(0.9)`` (confidently wrong).

Criteria combine with ``&`` (all must hold). Predictions follow
:func:`robustscope.evaluation.predict` (a single-logit model is the binary score ``s``:
class 1 iff ``s > 0``).

Example:
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> y = torch.tensor([0, 0])
    >>> Misclassification()(logits, y)
    tensor([False,  True])
    >>> (Misclassification() & Confidence(0.99))(logits, y)
    tensor([False, False])
    >>> TargetedMisclassification()(logits, torch.tensor([1, 1]))
    tensor([False,  True])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from robustscope.attacks.losses import _binary_as_two
from robustscope.errors import AttackError
from robustscope.evaluation import predict

__all__ = ["AllOf", "Confidence", "Criterion", "Misclassification", "TargetedMisclassification"]


class Criterion(ABC):
    """Base of the success criteria: ``criterion(logits, labels) -> [N] bool``."""

    #: the labels given to the attack are target classes (gradient attacks move towards them)
    targeted: bool = False

    @abstractmethod
    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: the points with these logits are adversarial for ``labels``."""

    def __and__(self, other: Criterion) -> Criterion:
        if not isinstance(other, Criterion):
            return NotImplemented
        return AllOf((self, other))

    @property
    def is_plain_misclassification(self) -> bool:
        """The default criterion (untargeted misclassification, nothing more)."""
        return False


@dataclass(frozen=True)
class Misclassification(Criterion):
    """Untargeted: the predicted class differs from the true label."""

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return predict(logits) != labels

    @property
    def is_plain_misclassification(self) -> bool:
        return True


@dataclass(frozen=True)
class TargetedMisclassification(Criterion):
    """Targeted: the predicted class equals the label given to the attack (the target)."""

    targeted = True

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return predict(logits) == labels


@dataclass(frozen=True)
class Confidence(Criterion):
    """The top softmax probability (of the predicted class) is at least ``threshold``."""

    threshold: float

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise AttackError(f"Confidence: threshold must be in (0, 1], got {self.threshold}")

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(_binary_as_two(logits).double(), dim=1)
        return probs.amax(dim=1) >= self.threshold


@dataclass(frozen=True)
class AllOf(Criterion):
    """Every one of ``parts`` holds (``a & b``)."""

    parts: tuple[Criterion, ...]

    @property
    def targeted(self) -> bool:  # type: ignore[override]
        return any(p.targeted for p in self.parts)

    def __post_init__(self) -> None:
        flat: list[Criterion] = []
        for p in self.parts:
            flat.extend(p.parts if isinstance(p, AllOf) else (p,))
        if any(p.targeted for p in flat) and any(isinstance(p, Misclassification) for p in flat):
            raise AttackError(
                "a criterion cannot be both targeted and untargeted "
                "(TargetedMisclassification & Misclassification)"
            )
        object.__setattr__(self, "parts", tuple(flat))

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.parts[0](logits, labels)
        for p in self.parts[1:]:
            out = out & p(logits, labels)
        return out
