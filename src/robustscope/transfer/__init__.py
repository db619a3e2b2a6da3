"""Linear transferability of frozen backbones (terzi2021 Tables 1–3, Figs. 3, 7; Lemma 0.8).

Public API::

    transfer(models, source, targets, *, n_train, n_test, l2, solver, adapter_mode,
             reference, feature_model, pgd_eps, pgd_norm, pgd_steps, ...) -> TransferResult
    extract_features(model, data, *, adapter, batch_size, cache_dir, model_key) -> Tensor
    fit_head(z, y, *, l2, solver, num_classes, max_iter, tol) -> LinearHead
    task_distance(z_source, y_source, z_target, y_target, ...) -> TaskDistance
    emd(p, q, cost) -> (value, plan)
    gap_correlation(model, reference, targets, distances, gaps) -> GapCorrelation
    TransferredClassifier(backbone, head, adapter, box)     # head ∘ features ∘ adapter

Modules: :mod:`~robustscope.transfer.features` (one pass per model and dataset, safetensors
cache), :mod:`~robustscope.transfer.head` (the logistic-regression head, two solvers with one
objective), :mod:`~robustscope.transfer.distance` (Cui et al. 2018's EMD task distance),
:mod:`~robustscope.transfer.run` (the experiment). Input adapters between dataset shapes live
in :mod:`robustscope.data.adapt`.
"""

from __future__ import annotations

# The probes package registers this package's probes (``robustscope.transfer.probe``), which
# import from both: loading it first lets ``import robustscope.transfer`` (or any of its
# modules) come first in a program without meeting its own half-initialised modules.
import robustscope.probes  # noqa: F401  (isort: keep before the package's own modules)
from robustscope.transfer.distance import TaskDistance, class_means, emd, task_distance
from robustscope.transfer.errors import TransferError
from robustscope.transfer.features import (
    extract_features,
    feature_cache_key,
    file_digest,
    weights_digest,
)
from robustscope.transfer.head import HEAD_SOLVERS, LinearHead, fit_head, sklearn_C
from robustscope.transfer.run import (
    GapCorrelation,
    TransferCell,
    TransferredClassifier,
    TransferResult,
    gap_correlation,
    transfer,
)

__all__ = [
    "HEAD_SOLVERS",
    "GapCorrelation",
    "LinearHead",
    "TaskDistance",
    "TransferCell",
    "TransferError",
    "TransferResult",
    "TransferredClassifier",
    "class_means",
    "emd",
    "extract_features",
    "feature_cache_key",
    "file_digest",
    "fit_head",
    "gap_correlation",
    "sklearn_C",
    "task_distance",
    "transfer",
    "weights_digest",
]
