"""One summary of the tsipras2019 theory for a parameter setting (``robustscope theory
tsipras``): the reference classifiers' exact and Monte-Carlo accuracies, Theorem 2.1 on
them and on the frontier, Theorem 2.2's SVMs and the frontier at a few standard accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robustscope.params import parse_eps
from robustscope.theory.frontier import frontier
from robustscope.theory.theorems import bound, check_bound, svm
from robustscope.theory.tsipras import (
    Distribution,
    accuracy,
    averaged,
    bayes,
    monte_carlo,
    robust_feature,
)

__all__ = ["FRONTIER_LEVELS", "TsiprasSummary", "summarise"]

FRONTIER_LEVELS = (0.96, 0.97, 0.98, 0.99, 0.995, 0.999)
"""Standard accuracies at which the summary reads the frontier."""


@dataclass(frozen=True)
class TsiprasSummary:
    """The summary; ``rows`` has one entry per (classifier, ε) with exact and Monte-Carlo
    standard and robust accuracies (ℓ∞, unbounded box)."""

    dist: Distribution
    eps: list[float]
    n: int
    seed: int
    rows: list[dict[str, Any]]
    theorem21: dict[str, Any]
    theorem22: dict[str, Any]
    frontier: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return {
            "distribution": self.dist.to_dict(),
            "eps": self.eps,
            "norm": "linf",
            "box": "unbounded",
            "monte_carlo": {"n": self.n, "seed": self.seed},
            "classifiers": self.rows,
            "theorem21": self.theorem21,
            "theorem22": self.theorem22,
            "frontier": self.frontier,
        }


def summarise(
    dist: Distribution, eps: list[float] | None = None, *, n: int = 100_000, seed: int = 0
) -> TsiprasSummary:
    """The summary at ε = 2η and each of ``eps``, with ``n`` Monte-Carlo draws."""
    grid = sorted({2 * dist.eta, *(parse_eps(e, "eps") for e in (eps or []))})
    names = ["f_avg", "sign(x_1)", "Bayes"]
    ws = np.stack([averaged(dist.d), robust_feature(dist.d), bayes(dist)])
    exact = accuracy(dist, ws, eps=grid)
    mc = monte_carlo(dist, ws, eps=grid, n=n, seed=seed)
    rows = []
    for j, name in enumerate(names):
        for e in grid:
            rows.append(
                {
                    "classifier": name,
                    "eps": e,
                    "standard": float(exact.standard[j]),
                    "standard_mc": float(mc.standard[j]),
                    "standard_se": float(mc.standard_error(mc.standard)[j]),
                    "robust": float(exact.robust[e][j]),
                    "robust_mc": float(mc.robust[e][j]),
                    "robust_se": float(mc.standard_error(mc.robust[e])[j]),
                }
            )
    e2 = 2 * dist.eta
    front = frontier(dist, e2)
    sym = frontier(dist, e2, family="symmetric")
    verdict = check_bound(dist, e2, names, exact.standard, exact.robust[e2]).to_dict()
    # The frontier is the most robust any linear classifier can be: the bound must hold on it too.
    excess = float(np.max(front.robust - bound(dist.p, front.standard)))
    verdict["frontier_max_excess"] = excess
    verdict["holds"] = verdict["holds"] and excess <= 1e-12
    levels = [
        {
            "standard_at_least": t,
            "robust": float(front.robust_at(t)[0]),
            "robust_symmetric": float(sym.robust_at(t)[0]),
            "bound": float(bound(dist.p, t)),
        }
        for t in FRONTIER_LEVELS
    ]
    return TsiprasSummary(dist, grid, n, seed, rows, verdict, svm(dist, eps=e2).to_dict(), levels)
