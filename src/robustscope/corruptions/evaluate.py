"""Accuracy of classifiers on the corrupted copies of a test batch.

:func:`evaluate` measures one model, :func:`evaluate_many` several models on the same
copies, each copy made once and dropped after use (or taken from ``copies``, see
:func:`~robustscope.corruptions.registry.corrupted_copies`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope.attacks.base import attack_mode
from robustscope.corruptions.registry import (
    CATEGORIES,
    CORRUPTIONS,
    SEVERITIES,
    CorruptedCopies,
    CorruptionError,
    check_names,
    check_severities,
    corrupt,
)
from robustscope.evaluation import EvalRecord, correct
from robustscope.progress import ProgressBar

__all__ = ["CorruptionResult", "evaluate", "evaluate_many"]


@dataclass(frozen=True)
class CorruptionResult(EvalRecord):
    """A model's accuracy on the clean batch and on each corrupted copy.

    Attributes:
        clean_accuracy: accuracy on the clean batch, in [0, 1].
        accuracy: per corruption (in evaluation order), the accuracy at each severity of
            ``severities``.
        n: number of examples.
        severities: the severities evaluated, in order.
        seed: the seed of the corrupted copies.
        correct: ``[1 + T·S, n]`` uint8 per-point correctness (row 0 clean, then each
            corruption in order, each severity in order) when measured here (None for a
            result built from accuracies alone); it lets :func:`~robustscope.corruptions.compare`
            bootstrap two models measured on the same points (paired). Not compared by ``==``.

    Example:
        >>> r = CorruptionResult(0.9, {"snow": (0.8, 0.6), "contrast": (0.7, 0.5)}, 10, (1, 5), 0)
        >>> round(r.error("snow", 5), 4), round(r.mean_accuracy(), 4), r.category_accuracy()
        (0.4, 0.65, {'weather': 0.7, 'digital': 0.6})
    """

    clean_accuracy: float
    accuracy: dict[str, tuple[float, ...]]
    n: int
    severities: tuple[int, ...]
    seed: int
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, without the per-point ``correct`` table (JSON output)."""
        out = super().to_dict()
        out.pop("correct", None)
        return out

    @property
    def names(self) -> tuple[str, ...]:
        """The corruptions evaluated, in order."""
        return tuple(self.accuracy)

    def error(self, name: str, severity: int) -> float:
        """Error rate ``E_{t,l} = 1 − accuracy`` of corruption ``name`` at ``severity``."""
        if name not in self.accuracy:
            raise CorruptionError(f"{name!r} was not evaluated; evaluated: {', '.join(self.names)}")
        if severity not in self.severities:
            raise CorruptionError(f"severity {severity} was not evaluated: {self.severities}")
        return 1.0 - self.accuracy[name][self.severities.index(severity)]

    def mean_accuracy(self) -> float:
        """Mean accuracy over every corruption and severity evaluated."""
        values = [a for accs in self.accuracy.values() for a in accs]
        return math.fsum(values) / len(values) if values else math.nan

    def category_accuracy(self) -> dict[str, float]:
        """Mean accuracy over the corruptions and severities of each category (Hendrycks &
        Dietterich's four groups), for the categories with an evaluated corruption."""
        out = {}
        for cat, members in CATEGORIES.items():
            values = [a for m in members if m in self.accuracy for a in self.accuracy[m]]
            if values:
                out[cat] = math.fsum(values) / len(values)
        return out


def evaluate_many(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 500,
    copies: CorruptedCopies | None = None,
    progress: bool = False,
) -> list[CorruptionResult]:
    """:func:`evaluate` for several models on the same corrupted copies, each copy made
    once (held one at a time unless ``copies`` is given)."""
    names = check_names(names)
    severities = check_severities(severities)
    if len(x) != len(y) or len(x) == 0:
        raise CorruptionError(
            f"x and y must hold the same, non-zero number of examples: {len(x)}, {len(y)}"
        )
    if batch_size < 1:
        raise CorruptionError(f"batch_size must be ≥ 1, got {batch_size}")
    if copies is not None:
        missing = [(t, s) for t in names for s in severities if (t, s) not in copies]
        if missing:
            raise CorruptionError(
                f"copies lacks {len(missing)} (name, severity) pairs, e.g. {missing[0]}"
            )
    table: list[dict[str, list[float]]] = [{t: [] for t in names} for _ in models]
    hits: list[list[torch.Tensor]] = [[] for _ in models]
    with ProgressBar(progress, "corruptions", total=len(names) * len(severities)) as bar:
        for t in names:
            for s in severities:
                xc = copies[(t, s)] if copies is not None else corrupt(x, t, s, seed=seed)
                if xc.shape != x.shape:
                    raise CorruptionError(
                        f"copy {(t, s)} has shape {tuple(xc.shape)}, not {tuple(x.shape)}"
                    )
                for model, row, mine in zip(models, table, hits, strict=True):
                    with attack_mode(model):
                        ok = correct(model, xc, y, batch_size)
                    mine.append(ok)
                    row[t].append(float(ok.double().mean()))
                bar.advance()
    results = []
    for model, row, mine in zip(models, table, hits, strict=True):
        with attack_mode(model):
            clean = correct(model, x, y, batch_size)
        results.append(
            CorruptionResult(
                clean_accuracy=float(clean.double().mean()),
                accuracy={t: tuple(v) for t, v in row.items()},
                n=len(x),
                severities=severities,
                seed=seed,
                correct=torch.stack([clean, *mine]).numpy().astype(np.uint8),
            )
        )
    return results


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    names: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 500,
    copies: CorruptedCopies | None = None,
    progress: bool = False,
) -> CorruptionResult:
    """Clean accuracy and accuracy on every corrupted copy of ``(x, y)``.

    Args:
        model: a classifier (evaluated in eval mode, gradients off; its mode and
            ``requires_grad`` flags are restored after).
        x: images ``[N, C, H, W]`` in [0, 1]; y: labels ``[N]``.
        names, severities: what to evaluate (default: all 15 at 1..5).
        seed: seed of the copies (:func:`~robustscope.corruptions.registry.corrupt` is
            called on the whole of ``x``, so the copies equal those of
            :func:`~robustscope.corruptions.registry.corrupted_copies` with that seed).
        batch_size: examples per forward pass.
        copies: precomputed copies to use instead of corrupting ``x``.
        progress: show a progress bar.
    """
    return evaluate_many(
        [model],
        x,
        y,
        names=names,
        severities=severities,
        seed=seed,
        batch_size=batch_size,
        copies=copies,
        progress=progress,
    )[0]
