"""The 15 common corruptions of Hendrycks & Dietterich (2019), *Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations* (ICLR), at five severities,
with their metrics (mCE, relative mCE) and wu2020's RmCE robustness/accuracy coordinates.

Public API::

    CORRUPTIONS, CATEGORIES, SEVERITIES
    corrupt(x, name, severity, *, seed=0) -> Tensor
    corrupted_copies(x, *, names, severities, seed=0, progress=False) -> CorruptedCopies
    evaluate(model, x, y, *, names, severities, seed=0, batch_size=500, copies=None,
             progress=False) -> CorruptionResult
    compare(result, reference) -> CorruptionComparison
    corruption_grid(x, path, ...) -> Path          # a PNG of every type × severity

Modules: :mod:`~robustscope.corruptions.noise`, :mod:`~robustscope.corruptions.blur`,
:mod:`~robustscope.corruptions.weather`, :mod:`~robustscope.corruptions.digital` (the
corruptions by group), :mod:`~robustscope.corruptions.constants` (severity constants and
their rule for other image sizes), :mod:`~robustscope.corruptions.registry`,
:mod:`~robustscope.corruptions.evaluate`, :mod:`~robustscope.corruptions.metrics`,
:mod:`~robustscope.corruptions.grid`. See docs/corruptions.md.
"""

from __future__ import annotations

from robustscope.corruptions.evaluate import CorruptionResult, evaluate, evaluate_many
from robustscope.corruptions.grid import corruption_grid
from robustscope.corruptions.metrics import CorruptionComparison, compare
from robustscope.corruptions.registry import (
    CATEGORIES,
    CORRUPTIONS,
    SEVERITIES,
    CorruptedCopies,
    CorruptionError,
    category_of,
    check_names,
    corrupt,
    corrupted_copies,
)

__all__ = [
    "CATEGORIES",
    "CORRUPTIONS",
    "SEVERITIES",
    "CorruptedCopies",
    "CorruptionComparison",
    "CorruptionError",
    "CorruptionResult",
    "category_of",
    "check_names",
    "compare",
    "corrupt",
    "corrupted_copies",
    "corruption_grid",
    "evaluate",
    "evaluate_many",
]
