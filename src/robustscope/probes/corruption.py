"""``corruptions``: accuracy under the 15 common corruptions of Hendrycks & Dietterich (2019)
at each severity (:mod:`robustscope.corruptions`), the data of wu2020's RmCE.

The result stores the accuracy table ``[type, severity]`` with its axes as numbers (the
corruptions as indices into :data:`robustscope.corruptions.CORRUPTIONS`), so a stored result
describes itself; :meth:`CorruptionsResult.result` turns it back into a
:class:`~robustscope.corruptions.CorruptionResult` for
:func:`robustscope.corruptions.compare` (mCE, relative mCE, RmCE against a reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robustscope import corruptions as corr
from robustscope.params import parse_ints
from robustscope.probes.base import ProbeResult, check_inputs
from robustscope.probes.registry import register_probe

__all__ = ["CorruptionsResult", "corruption_table", "corruptions"]


@dataclass(frozen=True)
class CorruptionsResult(ProbeResult):
    """Accuracy of a classifier on ``n`` test points and on each corrupted copy.

    Attributes:
        clean_accuracy: accuracy on the clean points.
        mean_accuracy: mean over every type and severity.
        category: mean accuracy per category (noise, blur, weather, digital).
        per_type: mean accuracy over the severities, per corruption.
        accuracy: ``[T, S]`` accuracy per corruption and severity.
        types: ``[T]`` indices into :data:`robustscope.corruptions.CORRUPTIONS`.
        severities: ``[S]`` the severities.
        n: points; seed: the seed of the corrupted copies.
        correct: ``[1 + T·S, n]`` uint8 per-point correctness (row 0 clean, then type-major,
            severity-minor), for paired comparisons (:func:`robustscope.corruptions.compare`).
    """

    clean_accuracy: float
    mean_accuracy: float
    category: dict[str, float]
    per_type: dict[str, float]
    accuracy: np.ndarray
    types: np.ndarray
    severities: np.ndarray
    n: int
    seed: int
    correct: np.ndarray | None = None

    def result(self) -> corr.CorruptionResult:
        """The :class:`~robustscope.corruptions.CorruptionResult` this was made from."""
        return corruption_table(
            self.clean_accuracy,
            self.accuracy,
            self.types,
            self.severities,
            self.n,
            self.seed,
            correct=self.correct,
        )


def corruption_table(
    clean: float,
    accuracy: Any,
    types: Any,
    severities: Any,
    n: int,
    seed: int = 0,
    *,
    correct: Any = None,
) -> corr.CorruptionResult:
    """A :class:`~robustscope.corruptions.CorruptionResult` from stored arrays: ``accuracy``
    ``[T, S]``, ``types`` (indices into ``CORRUPTIONS``), ``severities`` and, when stored,
    the per-point ``correct`` table."""
    names = [corr.CORRUPTIONS[int(i)] for i in np.asarray(types)]
    acc = np.asarray(accuracy, dtype=float)
    return corr.CorruptionResult(
        clean_accuracy=float(clean),
        accuracy={t: tuple(float(a) for a in acc[i]) for i, t in enumerate(names)},
        n=int(n),
        severities=tuple(int(s) for s in np.asarray(severities)),
        seed=int(seed),
        correct=None if correct is None else np.asarray(correct, dtype=np.uint8),
    )


@register_probe(
    "corruptions",
    "accuracy under the 15 common corruptions at severities 1–5 (Hendrycks & Dietterich "
    "2019; wu2020's RmCE)",
)
def corruptions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    types: str = "all",
    severities: str = "1,2,3,4,5",
    seed: int = 0,
    batch_size: int = 500,
) -> CorruptionsResult:
    """Accuracy of ``model`` on ``(x, y)`` corrupted by each type at each severity.

    Args:
        types: ``all`` or a comma list of corruption names.
        severities: a comma list among 1..5.
        seed: seed of the corrupted copies (the same copies for every model).
        batch_size: examples per forward pass.

    Example:
        >>> from robustscope import models
        >>> net = models.create("mlp", 3, (1, 8, 8), widths=[8])
        >>> r = corruptions(net, torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long),
        ...                 types="contrast,pixelate", severities="1,5")
        >>> r.accuracy.shape, [corr.CORRUPTIONS[int(i)] for i in r.types]
        ((2, 2), ['contrast', 'pixelate'])
    """
    check_inputs("corruptions", x, y)
    if isinstance(types, str):
        names = (
            corr.CORRUPTIONS
            if types.strip() == "all"
            else tuple(t.strip() for t in types.split(",") if t.strip())
        )
    else:  # a list from a study spec
        names = tuple(str(t) for t in types)
    sev = tuple(parse_ints(severities, "severities"))
    res = corr.evaluate(model, x, y, names=names, severities=sev, seed=seed, batch_size=batch_size)
    return CorruptionsResult(
        clean_accuracy=res.clean_accuracy,
        mean_accuracy=res.mean_accuracy(),
        category=res.category_accuracy(),
        per_type={t: float(np.mean(a)) for t, a in res.accuracy.items()},
        accuracy=np.array([res.accuracy[t] for t in res.names]),
        types=np.array([corr.CORRUPTIONS.index(t) for t in res.names], dtype=np.float64),
        severities=np.array(res.severities, dtype=np.float64),
        n=res.n,
        seed=seed,
        correct=res.correct,
    )
