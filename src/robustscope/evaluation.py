"""Clean (unattacked) evaluation of a classifier on a dataset.

Robust evaluation under attacks lives in ``robustscope.attacks``; this module is
the plain accuracy/loss every layer above needs, and :class:`EvalRecord`, the base of
evaluation results that are plain records.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustscope.data.dataset import ArrayDataset
from robustscope.device import model_device


class EvalRecord:
    """Base of evaluation results that are plain dataclass records: :meth:`to_dict` gives
    their fields.

    Example:
        >>> @dataclass(frozen=True)
        ... class Score(EvalRecord):
        ...     value: float
        ...     n: int
        >>> Score(0.5, 10).to_dict()
        {'value': 0.5, 'n': 10}
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (:func:`dataclasses.asdict`)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CleanEval(EvalRecord):
    """Clean accuracy and mean cross-entropy of a model on ``n`` examples.

    Attributes:
        dataset: dataset name.
        split: split evaluated.
        n: number of examples.
        accuracy: fraction of correctly classified examples, in [0, 1].
        loss: mean cross-entropy (natural log) over the examples.
    """

    dataset: str
    split: str
    n: int
    accuracy: float
    loss: float


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``[N, K]`` logits; a single logit (K = 1) is a binary score
    (logistic loss with label 1 ↔ positive score)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits[:, 0], y.to(logits.dtype), reduction=reduction
        )
    return F.cross_entropy(logits, y, reduction=reduction)


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels for ``[N, K]`` logits (K = 1: label 1 where the score is positive)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


@torch.no_grad()
def correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """``[N]`` bool on the CPU: whether ``model`` classifies each ``x`` as its ``y`` (batches
    moved to its device; the model is used in the mode it is in — callers choose eval mode)."""
    device = model_device(model)
    out = [
        (predict(model(x[s : s + batch_size].to(device))) == y[s : s + batch_size].to(device)).cpu()
        for s in range(0, len(x), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (:func:`correct`); NaN for no
    examples."""
    hits = correct(model, x, y, batch_size)
    return float(hits.double().mean()) if len(hits) else math.nan


@torch.no_grad()
def evaluate_clean(
    model: nn.Module,
    ds: ArrayDataset,
    *,
    batch_size: int = 1000,
    device: torch.device | None = None,
) -> CleanEval:
    """Accuracy and mean cross-entropy of ``model`` on all of ``ds``, in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    loss_sum = 0.0
    try:
        for start in range(0, len(ds), batch_size):
            x = ds.x[start : start + batch_size].to(device, non_blocking=True)
            y = ds.y[start : start + batch_size].to(device, non_blocking=True)
            logits = model(x)
            loss_sum += float(cross_entropy(logits, y, reduction="sum"))
            correct += int((predict(logits) == y).sum())
    finally:
        model.train(was_training)
    n = len(ds)
    return CleanEval(
        dataset=ds.name,
        split=ds.split,
        n=n,
        accuracy=correct / n if n else float("nan"),
        loss=loss_sum / n if n else float("nan"),
    )
