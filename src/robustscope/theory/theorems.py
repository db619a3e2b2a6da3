"""Theorems 2.1 and 2.2 of tsipras2019, checked on the distribution of eq. (3).

**Theorem 2.1** (the trade-off): against an ℓ∞ adversary with ε ≥ 2η, any classifier
with standard accuracy ≥ 1 − δ has robust accuracy ≤ p/(1 − p)·δ. The proof (App. C)
uses one fixed adversary, ``xᵢ → xᵢ − 2ηy`` for i ≥ 2 (it maps the class-conditional law
of the non-robust features of y onto that of −y), and bounds the accuracy against it; so
the bound holds for that adversary's accuracy and a fortiori for the true robust accuracy.
:func:`bound` is the right-hand side, :func:`check_bound` the verdict on measured points
(with their Monte-Carlo standard errors).

**Theorem 2.2** (adversarial training matters): for η ≥ 4/√d and p ≤ 0.975, the
soft-margin SVM of unit weight norm minimising the distributional hinge loss
``E max(0, 1 − y wᵀx)`` has standard accuracy > 99 % and adversarial accuracy < 1 % at
ε ≥ 2η; minimising the distributional adversarial hinge loss
``E max(0, 1 − y wᵀx + ε‖w‖₁)`` gives standard and adversarial accuracy p (ε < 1).
:func:`svm` computes both minimisers exactly: by the paper's Lemma D.1 (the losses are
convex and invariant under permuting x_2 … x_{d+1}, and so is the unit ball) the
optimum has ``w = (w₁, (v/√d)·1)``; then ``y wᵀx = s·w₁ + v·z`` with
``z ~ N(η√d, 1)`` and ``‖w‖₁ = |w₁| + √d|v|``, and ``E max(0, c − σZ)`` for
``Z ~ N(0, 1)`` is ``cΦ(c/σ) + σφ(c/σ)`` — a convex problem in two variables on the unit
disc (the λ of eq. (5) tuned to ‖w*‖₂ = 1, as in App. D).

The adversarial half has an unstated condition: after Lemma D.5 (no weight on x_2 …),
the unit-norm classifier ``sign(x_1)`` has adversarial hinge loss ``pε + (1 − p)(2 + ε)``
against 1 for ``w = 0``, so the adversarial SVM keeps x_1 only when ``ε < 2p − 1``; beyond
that it is the zero classifier (accuracy 0 with our convention that a zero score is wrong;
½ with a coin flip — not p). :attr:`SvmResult.hypotheses` includes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr

from robustscope.params import parse_eps
from robustscope.theory.tsipras import Distribution, accuracy

__all__ = ["BoundCheck", "SvmResult", "bound", "check_bound", "expected_hinge", "svm"]

SNAP = 1e-6
"""An SVM weight is zeroed when that raises the expected hinge loss by at most this."""
Z_LIMIT = 4.0
"""A point violates Theorem 2.1 only if it does so by more than this many standard errors."""


def bound(p: float, standard: float | np.ndarray) -> np.ndarray:
    """Theorem 2.1's bound on the robust accuracy, ``min(1, p/(1 − p)·δ)`` with
    ``δ = 1 − standard`` (clipped at 0); 1 when p = 1 (no bound).

    >>> bound(0.95, np.array([0.99, 0.96])).round(4).tolist()  # the paper's footnote 1
    [0.19, 0.76]
    """
    delta = np.clip(1.0 - np.asarray(standard, dtype=np.float64), 0.0, 1.0)
    if p >= 1.0:
        return np.ones_like(delta)
    return np.minimum(1.0, p / (1.0 - p) * delta)


@dataclass(frozen=True)
class BoundCheck:
    """Theorem 2.1 on a family of classifiers: each point's accuracies, their standard
    errors (0 for closed forms), the bound at the point and the verdict.

    A point violates the bound when ``robust − Z·se_robust`` exceeds the bound at
    ``standard + Z·se_standard`` (the most lenient reading of both estimates, Z =
    :data:`Z_LIMIT`); ``excess`` is ``robust − bound(standard)`` without that allowance.
    """

    dist: Distribution
    eps: float
    names: list[str]
    standard: np.ndarray
    robust: np.ndarray
    standard_se: np.ndarray
    robust_se: np.ndarray
    applies: bool

    @property
    def bound(self) -> np.ndarray:
        """The bound at each point's standard accuracy."""
        return bound(self.dist.p, self.standard)

    @property
    def violations(self) -> list[str]:
        """The names of the points that violate the bound beyond their errors."""
        if not self.applies:
            return []
        lenient = bound(self.dist.p, self.standard - Z_LIMIT * self.standard_se)
        bad = self.robust - Z_LIMIT * self.robust_se > lenient + 1e-12
        return [n for n, b in zip(self.names, bad, strict=True) if b]

    @property
    def max_excess(self) -> float:
        """The largest ``robust − bound`` over the family (≤ 0 when every point is inside)."""
        return float(np.max(self.robust - self.bound)) if len(self.names) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain values: the points, the bound and the verdict."""
        return {
            "theorem": "tsipras2019 Theorem 2.1",
            "distribution": self.dist.to_dict(),
            "eps": self.eps,
            "applies": self.applies,
            "points": [
                {
                    "name": n,
                    "standard": float(s),
                    "robust": float(r),
                    "standard_se": float(ss),
                    "robust_se": float(rs),
                    "bound": float(b),
                }
                for n, s, r, ss, rs, b in zip(
                    self.names,
                    self.standard,
                    self.robust,
                    self.standard_se,
                    self.robust_se,
                    self.bound,
                    strict=True,
                )
            ],
            "violations": self.violations,
            "max_excess": self.max_excess,
            "holds": self.applies and not self.violations,
        }


def check_bound(
    dist: Distribution,
    eps: float,
    names: list[str],
    standard: np.ndarray,
    robust: np.ndarray,
    standard_se: np.ndarray | None = None,
    robust_se: np.ndarray | None = None,
) -> BoundCheck:
    """Theorem 2.1 on measured points (``applies`` is False when ε < 2η: the theorem says
    nothing there, and no point can violate it)."""
    eps_f = parse_eps(eps, "eps")
    s = np.asarray(standard, dtype=np.float64)
    r = np.asarray(robust, dtype=np.float64)
    zeros = np.zeros_like(s)
    return BoundCheck(
        dist,
        eps_f,
        list(names),
        s,
        r,
        zeros if standard_se is None else np.asarray(standard_se, dtype=np.float64),
        zeros if robust_se is None else np.asarray(robust_se, dtype=np.float64),
        applies=eps_f >= 2 * dist.eta - 1e-12,
    )


def expected_hinge(w1: float, v: float, dist: Distribution, eps: float = 0.0) -> float:
    """``E max(0, 1 − y wᵀx + ε‖w‖₁)`` on D for ``w = (w₁, (v/√d)·1)`` (module doc)."""
    shift = eps * (abs(w1) + math.sqrt(dist.d) * abs(v))
    sigma = abs(v)
    total = 0.0
    for agree, weight in ((1.0, dist.p), (-1.0, 1.0 - dist.p)):
        c = 1.0 + shift - agree * w1 - v * dist.eta * math.sqrt(dist.d)
        if sigma == 0.0:
            total += weight * max(c, 0.0)
        else:
            t = c / sigma
            total += weight * (
                c * float(ndtr(t)) + sigma * math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
            )
    return total


def _minimise(dist: Distribution, eps: float) -> tuple[float, float]:
    """The minimiser of :func:`expected_hinge` on the unit disc (a start grid, then SLSQP)."""
    angles = np.linspace(-math.pi, math.pi, 721)
    starts = [(math.cos(t), math.sin(t)) for t in angles]
    w1, v = min(starts, key=lambda wv: expected_hinge(wv[0], wv[1], dist, eps))
    res = minimize(
        lambda z: expected_hinge(float(z[0]), float(z[1]), dist, eps),
        np.array([w1, v]),
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda z: 1.0 - float(z @ z)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    z = res.x if res.success else np.array([w1, v])

    # The optimiser leaves small residues where the optimum is exactly 0 (Lemma D.5; w = 0
    # beyond 2p − 1: a kink of the hinge), and a sign classifier reads any positive weight
    # as a full one: take the sparsest of z and its zeroed variants within SNAP of the best.
    def loss(c: tuple[float, float]) -> float:
        return expected_hinge(c[0], c[1], dist, eps)

    variants = [(0.0, 0.0), (float(z[0]), 0.0), (0.0, float(z[1])), (float(z[0]), float(z[1]))]
    best = min(loss(c) for c in variants)
    return next(c for c in variants if loss(c) <= best + SNAP)


@dataclass(frozen=True)
class SvmResult:
    """Theorem 2.2: the distributional SVM (standard) and adversarial SVM (trained at
    ``eps_train``), their weights ``(w₁, v)`` and exact accuracies at ``eps``."""

    dist: Distribution
    eps: float
    eps_train: float
    standard_w: tuple[float, float]
    adversarial_w: tuple[float, float]
    standard_accuracy: tuple[float, float]
    adversarial_accuracy: tuple[float, float]

    @property
    def hypotheses(self) -> bool:
        """η ≥ 4/√d, p ≤ 0.975 and ε ≥ 2η (the theorem's conditions), and ε_train < 2p − 1
        (the unstated one of the module doc)."""
        return (
            self.dist.eta >= 4 / math.sqrt(self.dist.d) - 1e-12
            and self.dist.p <= 0.975
            and self.eps >= 2 * self.dist.eta - 1e-12
            and self.eps_train < 2 * self.dist.p - 1
        )

    @property
    def verdicts(self) -> dict[str, bool]:
        """The theorem's four statements on these numbers (accuracies within 0.5 % of p)."""
        s_std, s_adv = self.standard_accuracy
        a_std, a_adv = self.adversarial_accuracy
        return {
            "standard SVM: standard accuracy > 99%": s_std > 0.99,
            "standard SVM: adversarial accuracy < 1%": s_adv < 0.01,
            "adversarial SVM: standard accuracy = p": abs(a_std - self.dist.p) < 0.005,
            "adversarial SVM: adversarial accuracy = p": abs(a_adv - self.dist.p) < 0.005,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return {
            "theorem": "tsipras2019 Theorem 2.2",
            "distribution": self.dist.to_dict(),
            "eps": self.eps,
            "eps_train": self.eps_train,
            "hypotheses": self.hypotheses,
            "standard_svm": {
                "w1": self.standard_w[0],
                "v": self.standard_w[1],
                "standard": self.standard_accuracy[0],
                "adversarial": self.standard_accuracy[1],
            },
            "adversarial_svm": {
                "w1": self.adversarial_w[0],
                "v": self.adversarial_w[1],
                "standard": self.adversarial_accuracy[0],
                "adversarial": self.adversarial_accuracy[1],
            },
            "verdicts": self.verdicts,
        }


def svm(dist: Distribution, eps: float | None = None, eps_train: float | None = None) -> SvmResult:
    """Theorem 2.2's two SVMs on D, their accuracies at ``eps`` (default 2η) under ℓ∞.

    ``eps_train`` (default ``eps``) is the radius of the adversarial hinge loss.

    >>> r = svm(Distribution.create(d=1600, p=0.95, eta=0.1))
    >>> all(r.verdicts.values()), r.hypotheses
    (True, True)
    """
    eps_f = 2 * dist.eta if eps is None else parse_eps(eps, "eps")
    train_f = eps_f if eps_train is None else parse_eps(eps_train, "eps_train")

    def accuracies(w1: float, v: float) -> tuple[float, float]:
        w = np.full(dist.d + 1, v / math.sqrt(dist.d))
        w[0] = w1
        acc = accuracy(dist, w, eps=[eps_f])
        return float(acc.standard[0]), float(acc.robust[eps_f][0])

    std_w = _minimise(dist, 0.0)
    adv_w = _minimise(dist, train_f)
    return SvmResult(dist, eps_f, train_f, std_w, adv_w, accuracies(*std_w), accuracies(*adv_w))
