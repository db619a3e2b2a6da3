"""Exact accuracies of linear classifiers on the distribution of Tsipras et al. (2019), eq. (3).

The distribution D (tsipras2019 §2.1; sampled by the ``tsipras`` dataset,
:mod:`robustscope.data.synthetic`)::

    y ~ uniform{-1, +1},  x_1 = +y w.p. p, else -y,  x_2 … x_{d+1} ~ N(ηy, 1) i.i.d.

**Closed form.** Write a linear classifier ``sign(wᵀx + β)`` as ``w = (a, v)`` with
``a`` the weight of the robust feature x_1 and ``v ∈ ℝᵈ`` the weights of the non-robust
ones. Given y and the agreement ``s = y·x_1 ∈ {±1}`` (s = +1 w.p. p), the signed score is
Gaussian::

    y(wᵀx + β) = s·a + y·β + η·S + q·Z,   S = Σ vᵢ,  q = ‖v‖₂,  Z ~ N(0, 1),

so the standard accuracy is ``½ Σ_y [p Φ((a + yβ + ηS)/q) + (1 − p) Φ((−a + yβ + ηS)/q)]``
(the indicator of a positive mean when q = 0; a zero score counts as wrong). A norm-bounded
adversary on the whole input (both feature types, the box unbounded) lowers every signed
score by the dual norm: ``ε‖w‖₁ = ε(|a| + ‖v‖₁)`` for ℓ∞ and ``ε‖w‖₂`` for ℓ2, so the robust
accuracy is the same expression with every mean lowered by that amount. The accuracies
therefore depend on ``v`` only through ``(S, ‖v‖₂, ‖v‖₁)`` — the *sufficient statistics*
:func:`statistics` returns; :func:`accuracy_from_statistics` evaluates the formula for any
number of classifiers at once.

**Reference classifiers** (:func:`averaged`, :func:`robust_feature`, :func:`bayes`):
f_avg of eq. (4), ``w = (0, 1/d, …, 1/d)``: standard accuracy Φ(η√d), ℓ∞ robust accuracy
Φ((η − ε)√d) (:func:`averaged_accuracy`); ``sign(x_1)``: p and p for ε < 1; the Bayes
classifier, linear here: its log-odds are ``x_1·log(p/(1 − p)) + 2η·Σᵢ xᵢ``.

:func:`monte_carlo` estimates the same accuracies from drawn samples (the dataset's own
sampler), with standard errors: the independent check of the formulas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from robustscope.data.synthetic import sample
from robustscope.errors import ParameterError
from robustscope.params import parse_eps, parse_number

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")

__all__ = [
    "NORMS",
    "Accuracy",
    "Distribution",
    "MonteCarlo",
    "Statistics",
    "accuracy",
    "accuracy_from_statistics",
    "averaged",
    "averaged_accuracy",
    "bayes",
    "check_norm",
    "monte_carlo",
    "robust_feature",
    "statistics",
]


@dataclass(frozen=True)
class Distribution:
    """The parameters of D: ``d`` non-robust features, ``p = P(x_1 = y)``, mean shift ``eta``.

    The paper assumes p ≥ 0.5 (x_1 is positively correlated with y) and η > 0.

    >>> Distribution.create(d=1000, p=0.95, eta=0.1)
    Distribution(d=1000, p=0.95, eta=0.1)
    >>> Distribution.create(d=10, p=1.5, eta=0.1)
    Traceback (most recent call last):
    ...
    robustscope.errors.ParameterError: p must lie in [0.5, 1] (P(x_1 = y) in Tsipras et al. eq. 3), got 1.5
    """

    d: int
    p: float
    eta: float

    @classmethod
    def create(cls, d: Any, p: Any, eta: Any) -> Distribution:
        """Validated parameters (numbers as ``parse_number`` reads them); errors name the field."""
        if isinstance(d, bool) or not isinstance(d, int | np.integer | str):
            raise ParameterError(f"d must be an integer >= 1, got {d!r}")
        try:
            d_int = int(d)
        except ValueError as e:
            raise ParameterError(f"d must be an integer >= 1, got {d!r}") from e
        if d_int < 1:
            raise ParameterError(f"d must be an integer >= 1, got {d!r}")
        p_f = parse_number(p, "p")
        eta_f = parse_number(eta, "eta")
        if not 0.5 <= p_f <= 1.0:
            raise ParameterError(
                f"p must lie in [0.5, 1] (P(x_1 = y) in Tsipras et al. eq. 3), got {p_f}"
            )
        if not (math.isfinite(eta_f) and eta_f > 0):
            raise ParameterError(f"eta must be a finite number > 0 (the mean shift), got {eta_f}")
        return cls(d_int, p_f, eta_f)

    def to_dict(self) -> dict[str, Any]:
        """Plain parameters."""
        return asdict(self)


def check_norm(norm: str) -> Norm:
    """``norm`` if it is ``linf`` or ``l2`` (the threat models with a closed form here)."""
    if norm not in NORMS:
        raise ParameterError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


@dataclass(frozen=True)
class Statistics:
    """What the accuracies of ``sign(wᵀx + β)`` depend on (module doc), one row per classifier.

    ``a``: weight of x_1; ``S``: sum, ``q``: ℓ2 norm, ``l1``: ℓ1 norm of the non-robust
    weights; ``l2_all``: ‖w‖₂; ``bias``: β.
    """

    a: np.ndarray
    S: np.ndarray
    q: np.ndarray
    l1: np.ndarray
    l2_all: np.ndarray
    bias: np.ndarray

    def shift(self, eps: float, norm: Norm) -> np.ndarray:
        """How much a worst-case ε-perturbation lowers every signed score: ε‖w‖ (dual norm)."""
        if norm == "linf":
            return eps * (np.abs(self.a) + self.l1)
        return eps * self.l2_all


def statistics(w: np.ndarray, bias: float | np.ndarray = 0.0) -> Statistics:
    """The sufficient statistics of classifiers ``w`` (``[d + 1]`` or ``[n, d + 1]``, column
    0 the weight of x_1) with biases ``bias`` (a number or ``[n]``), in float64."""
    w64 = np.atleast_2d(np.asarray(w, dtype=np.float64))
    if w64.ndim != 2 or w64.shape[1] < 2:
        raise ParameterError(
            f"w must have shape [d + 1] or [n, d + 1] with d >= 1, got {w64.shape}"
        )
    v = w64[:, 1:]
    b = np.broadcast_to(np.asarray(bias, dtype=np.float64), (w64.shape[0],)).copy()
    return Statistics(
        a=w64[:, 0],
        S=v.sum(axis=1),
        q=np.sqrt((v * v).sum(axis=1)),
        l1=np.abs(v).sum(axis=1),
        l2_all=np.sqrt((w64 * w64).sum(axis=1)),
        bias=b,
    )


def accuracy_from_statistics(
    a: np.ndarray,
    S: np.ndarray,
    q: np.ndarray,
    bias: np.ndarray | float,
    shift: np.ndarray | float,
    dist: Distribution,
) -> np.ndarray:
    """Exact accuracy ``P[y(wᵀx + β) − shift > 0]`` on D from the statistics (broadcast).

    ``shift = 0`` gives the standard accuracy, ``shift = ε‖w‖_dual`` the robust one (module
    doc). Where ``q = 0`` the signed score is deterministic and counts when it is > 0.
    """
    a, S, q, bias, shift = np.broadcast_arrays(
        *(np.asarray(t, dtype=np.float64) for t in (a, S, q, bias, shift))
    )
    positive = q > 0
    safe_q = np.where(positive, q, 1.0)
    total = np.zeros(a.shape, dtype=np.float64)
    for y in (1.0, -1.0):
        for agree, weight in ((1.0, dist.p), (-1.0, 1.0 - dist.p)):
            mean = agree * a + y * bias + dist.eta * S - shift
            prob = np.where(positive, ndtr(mean / safe_q), (mean > 0).astype(np.float64))
            total += 0.5 * weight * prob
    return total


@dataclass(frozen=True)
class Accuracy:
    """Exact standard and robust accuracies of classifiers on D (one entry per classifier).

    ``robust[j]`` is the accuracy against the worst ``norm``-bounded perturbation of size
    ``eps[j]`` of the whole input (unbounded box; tsipras2019 eq. 2 with the dual norm).
    """

    standard: np.ndarray
    robust: dict[float, np.ndarray]
    norm: Norm

    def to_dict(self) -> dict[str, Any]:
        """Plain lists; the robust accuracies keyed by ε."""
        return {
            "standard": self.standard.tolist(),
            "robust": {repr(e): r.tolist() for e, r in self.robust.items()},
            "norm": self.norm,
            "box": "unbounded",
        }


def accuracy(
    dist: Distribution,
    w: np.ndarray,
    bias: float | np.ndarray = 0.0,
    eps: tuple[float, ...] | list[float] = (),
    norm: str = "linf",
) -> Accuracy:
    """Exact standard and ``norm`` robust accuracies at each ``eps`` of ``sign(wᵀx + β)``.

    >>> dist = Distribution.create(d=100, p=0.95, eta=0.3)
    >>> acc = accuracy(dist, averaged(100), eps=[0.6])
    >>> round(float(acc.standard[0]), 5), round(float(acc.robust[0.6][0]), 5)
    (0.99865, 0.00135)
    """
    norm_ = check_norm(norm)
    stats = statistics(w, bias)
    if stats.a.shape and np.asarray(w).shape[-1] != dist.d + 1:
        raise ParameterError(
            f"w has {np.asarray(w).shape[-1]} weights but the distribution has d + 1 = "
            f"{dist.d + 1} features"
        )
    standard = accuracy_from_statistics(stats.a, stats.S, stats.q, stats.bias, 0.0, dist)
    robust = {}
    for e in eps:
        e_f = parse_eps(e, "eps")
        robust[e_f] = accuracy_from_statistics(
            stats.a, stats.S, stats.q, stats.bias, stats.shift(e_f, norm_), dist
        )
    return Accuracy(standard, robust, norm_)


def averaged(d: int) -> np.ndarray:
    """f_avg of tsipras2019 eq. (4): ``w = (0, 1/d, …, 1/d)``."""
    w = np.full(d + 1, 1.0 / d)
    w[0] = 0.0
    return w


def averaged_accuracy(dist: Distribution, eps: float = 0.0) -> float:
    """f_avg's ℓ∞ accuracy, tsipras2019 §2.1: Φ((η − ε)√d) (ε = 0: the standard Φ(η√d))."""
    return float(ndtr((dist.eta - parse_eps(eps, "eps")) * math.sqrt(dist.d)))


def robust_feature(d: int) -> np.ndarray:
    """``sign(x_1)``: ``w = (1, 0, …, 0)``; accuracy p, and p against any ε < 1."""
    w = np.zeros(d + 1)
    w[0] = 1.0
    return w


def bayes(dist: Distribution) -> np.ndarray:
    """The Bayes classifier of D (equal priors), which is linear: its log-odds are
    ``x_1·log(p/(1 − p)) + 2η·Σ_{i≥2} xᵢ``; for p = 1 it is ``sign(x_1)``."""
    if dist.p >= 1.0:
        return robust_feature(dist.d)
    w = np.full(dist.d + 1, 2.0 * dist.eta)
    w[0] = math.log(dist.p / (1.0 - dist.p))
    return w


@dataclass(frozen=True)
class MonteCarlo:
    """Accuracies estimated on ``n`` draws from D, with their standard errors √(a(1 − a)/n)."""

    standard: np.ndarray
    robust: dict[float, np.ndarray]
    n: int
    seed: int
    norm: Norm

    def standard_error(self, value: np.ndarray) -> np.ndarray:
        """The binomial standard error of an estimated accuracy."""
        return np.sqrt(np.clip(value * (1.0 - value), 0.0, None) / self.n)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists with standard errors."""
        return {
            "n": self.n,
            "seed": self.seed,
            "norm": self.norm,
            "standard": self.standard.tolist(),
            "standard_se": self.standard_error(self.standard).tolist(),
            "robust": {repr(e): r.tolist() for e, r in self.robust.items()},
            "robust_se": {repr(e): self.standard_error(r).tolist() for e, r in self.robust.items()},
        }


def monte_carlo(
    dist: Distribution,
    w: np.ndarray,
    bias: float | np.ndarray = 0.0,
    eps: tuple[float, ...] | list[float] = (),
    norm: str = "linf",
    n: int = 1_000_000,
    seed: int = 0,
    chunk: int | None = None,
) -> MonteCarlo:
    """Estimate the accuracies of :func:`accuracy` on ``n`` fresh draws of D (the
    ``tsipras`` dataset's sampler, ``default_rng([seed, 2])``), in chunks of ``chunk`` rows.

    The robust estimate applies the worst-case perturbation to each drawn point (its
    signed score minus ε‖w‖_dual, the exact inner maximum for a linear score).
    """
    norm_ = check_norm(norm)
    w64 = np.atleast_2d(np.asarray(w, dtype=np.float64))
    stats = statistics(w64, bias)
    eps_f = [parse_eps(e, "eps") for e in eps]
    shifts = {e: stats.shift(e, norm_) for e in eps_f}
    rng = np.random.default_rng([seed, 2])
    rows = chunk or max(1, min(n, 20_000_000 // (dist.d + 1)))
    correct = np.zeros(w64.shape[0], dtype=np.int64)
    robust = {e: np.zeros(w64.shape[0], dtype=np.int64) for e in eps_f}
    done = 0
    while done < n:
        m = min(rows, n - done)
        x, y = sample(m, dist.d, dist.p, dist.eta, rng)
        signed = (x.astype(np.float64) @ w64.T + stats.bias) * y[:, None]
        correct += (signed > 0).sum(axis=0)
        for e in eps_f:
            robust[e] += (signed - shifts[e] > 0).sum(axis=0)
        done += m
    return MonteCarlo(
        correct / n, {e: r / n for e, r in robust.items()}, n=n, seed=seed, norm=norm_
    )
