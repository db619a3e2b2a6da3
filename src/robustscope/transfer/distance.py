"""Task distance between two labelled domains, as Cui et al. (2018) define it and
terzi2021 (Figs. 3, 7) uses it: the Earth Mover's Distance between the domains in one fixed
feature space.

Each domain is reduced to its classes: class i of the source is the point ``sᵢ``, the mean
feature of its examples, with mass ``pᵢ`` = its share of the source's examples (likewise
``tⱼ``, ``qⱼ`` for the target; both masses sum to 1). The ground distance is Euclidean,
``dᵢⱼ = ‖sᵢ − tⱼ‖₂``, and::

    EMD = min_f Σᵢⱼ fᵢⱼ dᵢⱼ / Σᵢⱼ fᵢⱼ   s.t.  fᵢⱼ ≥ 0,  Σⱼ fᵢⱼ = pᵢ,  Σᵢ fᵢⱼ = qⱼ

(Σ fᵢⱼ = 1 here, so the EMD is the optimal transport cost.) The linear programme is solved
exactly by ``scipy.optimize.linprog`` (HiGHS). Cui et al. also report the domain similarity
``exp(−γ · EMD)`` (γ = 0.01 in their experiments); only its order matters for terzi2021, which is that of −EMD.

Which feature space: :func:`robustscope.transfer.run.transfer` uses one model's features for
every distance (the reference, by default the first model given — the standard one), so the
distances of a run are comparable across targets and do not depend on the backbone whose
transfer accuracy they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog

from robustscope.transfer.errors import TransferError

__all__ = ["TaskDistance", "class_means", "emd", "task_distance"]


def emd(p: np.ndarray, q: np.ndarray, cost: np.ndarray) -> tuple[float, np.ndarray]:
    """The Earth Mover's Distance between masses ``p`` ``[m]`` and ``q`` ``[n]`` (each
    normalised to sum 1) under the ground cost ``cost`` ``[m, n]``: its value and an optimal
    plan ``[m, n]`` (module doc).

    Example:
        >>> value, plan = emd(np.array([0.5, 0.5]), np.array([1.0]), np.array([[1.0], [3.0]]))
        >>> round(value, 12), plan.ravel().tolist()
        (2.0, [0.5, 0.5])
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    m, n = len(p), len(q)
    if cost.shape != (m, n):
        raise TransferError(f"emd: cost has shape {cost.shape}, expected ({m}, {n})")
    if m == 0 or n == 0 or (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise TransferError("emd: masses must be non-negative with a positive total on each side")
    if not np.isfinite(cost).all():
        raise TransferError("emd: the ground cost holds NaN or inf")
    p, q = p / p.sum(), q / q.sum()
    # f is the plan flattened row-major: f[i * n + j]
    rows = np.kron(np.eye(m), np.ones((1, n)))  # Σⱼ fᵢⱼ = pᵢ
    cols = np.kron(np.ones((1, m)), np.eye(n))  # Σᵢ fᵢⱼ = qⱼ
    res = linprog(
        cost.ravel(),
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([p, q]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - a balanced transport problem is always feasible
        raise TransferError(f"emd: the linear programme failed ({res.message})")
    plan = np.asarray(res.x).reshape(m, n)
    return float(np.sum(plan * cost)), plan


def class_means(
    z: torch.Tensor, y: torch.Tensor, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classes present in ``y``, their mean features ``[C, F]`` (float64) and their
    shares of the examples ``[C]``."""
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise TransferError(
            f"class_means: features must be [N, F] and labels [N] with N > 0, got "
            f"{tuple(z.shape)} and {tuple(y.shape)}"
        )
    zz = z.detach().to("cpu", torch.float64)
    yy = y.detach().to("cpu", torch.int64)
    k = int(yy.max()) + 1 if num_classes is None else num_classes
    counts = torch.bincount(yy, minlength=k).to(torch.float64)
    sums = torch.zeros(k, zz.shape[1], dtype=torch.float64).index_add_(0, yy, zz)
    present = counts > 0
    means = sums[present] / counts[present, None]
    return (
        torch.nonzero(present).flatten().numpy(),
        means.numpy(),
        (counts[present] / counts.sum()).numpy(),
    )


@dataclass(frozen=True)
class TaskDistance:
    """Cui et al. (2018)'s domain distance from a source to a target (module doc); terzi2021
    Figs. 3 and 7 order the targets by it.

    Attributes:
        source, target: the domains' names.
        distance: the EMD between their class-mean features (feature units).
        feature_model: the model whose features define the space.
        source_classes, target_classes: the class labels present, in the plan's order.
        source_weights, target_weights: their masses (class frequencies).
        plan: ``[source classes, target classes]`` an optimal transport plan.
        n_source, n_target: examples each side was measured on.
    """

    source: str
    target: str
    distance: float
    feature_model: str
    source_classes: tuple[int, ...]
    target_classes: tuple[int, ...]
    source_weights: tuple[float, ...]
    target_weights: tuple[float, ...]
    plan: tuple[tuple[float, ...], ...]
    n_source: int
    n_target: int

    @property
    def similarity(self) -> float:
        """Cui et al.'s domain similarity ``exp(−0.01 · EMD)``."""
        return float(np.exp(-0.01 * self.distance))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "distance": self.distance,
            "similarity": self.similarity,
            "feature_model": self.feature_model,
            "source_classes": list(self.source_classes),
            "target_classes": list(self.target_classes),
            "source_weights": list(self.source_weights),
            "target_weights": list(self.target_weights),
            "plan": [list(r) for r in self.plan],
            "n_source": self.n_source,
            "n_target": self.n_target,
        }


def task_distance(
    z_source: torch.Tensor,
    y_source: torch.Tensor,
    z_target: torch.Tensor,
    y_target: torch.Tensor,
    *,
    source: str = "source",
    target: str = "target",
    feature_model: str = "",
) -> TaskDistance:
    """The EMD between the class-mean features of two labelled domains, each class weighted
    by its frequency, with Euclidean ground distance (Cui et al. 2018; module doc).

    Both feature matrices must come from the same model (the same space).
    """
    if z_source.ndim != 2 or z_target.ndim != 2 or z_source.shape[1] != z_target.shape[1]:
        raise TransferError(
            f"task_distance: source features {tuple(z_source.shape)} and target features "
            f"{tuple(z_target.shape)} are not in one space; extract both with the same model"
        )
    cs, ms, ps = class_means(z_source, y_source)
    ct, mt, pt = class_means(z_target, y_target)
    cost = np.sqrt(((ms[:, None, :] - mt[None, :, :]) ** 2).sum(-1))
    value, plan = emd(ps, pt, cost)
    return TaskDistance(
        source=source,
        target=target,
        distance=value,
        feature_model=feature_model,
        source_classes=tuple(int(c) for c in cs),
        target_classes=tuple(int(c) for c in ct),
        source_weights=tuple(float(v) for v in ps),
        target_weights=tuple(float(v) for v in pt),
        plan=tuple(tuple(float(v) for v in row) for row in plan),
        n_source=len(y_source),
        n_target=len(y_target),
    )
