"""The exact trade-off frontier of linear classifiers on the distribution of tsipras2019 eq. (3).

For a radius ε and a threat model, the frontier is the most robust accuracy any linear
classifier ``sign(wᵀx + β)`` reaches among those with standard accuracy at least ``t``,
for every ``t``. Both accuracies are closed forms (:mod:`robustscope.theory.tsipras`) of
the statistics ``(a, β, S = Σvᵢ, q = ‖v‖₂, ‖v‖₁)`` of ``w = (a, v)``; the reductions below
bring the search down to three numbers (ℓ∞) or two (ℓ2), which a dense grid covers.

**Reductions** (each keeps both accuracies or raises both, so it loses no frontier point):

* Scale: accuracies are invariant under ``(w, β) → c(w, β)``, c > 0.
* ``β ≥ 0``: D is symmetric under ``(x, y) → (−x, −y)``, which maps ``(w, β)`` to ``(w, −β)``.
* ``a ≥ 0``: flipping a's sign swaps the weights p and 1 − p of the terms ``Φ(m ± a)``;
  with p ≥ ½ and a ≥ 0 the larger weight is on the larger term.
* ℓ∞, ``v ≥ 0``: the means increase with S and the adversary's cost is ε(|a| + ‖v‖₁). Any
  v is dominated by a non-negative v′ with ``Σv′ = ‖v‖₁`` and the same ℓ2 norm q: such a
  v′ exists because q lies in ``[‖v‖₁/√d, ‖v‖₁]`` (Cauchy–Schwarz; ‖v‖₂ ≤ ‖v‖₁), which
  is exactly the range of ‖v′‖₂ over non-negative vectors of sum ‖v‖₁. So with
  ``a + S = 1``: ``a ∈ [0, 1]``, ``q = ρS`` with ``ρ ∈ [1/√d, 1]``, shift ε.
* ℓ2: the cost ε√(a² + q²) does not involve S, and the means increase with S ≤ √d·q,
  so ``v = c·1`` (S = √d·q) is optimal: with ``a² + q² = 1``, ``a = cos θ``, shift ε.

**Why not only** ``w = (a, b·1)`` **under ℓ∞.** The symmetric classifier has the least
noise q = S/√d for its mean, but the noise is not always harmful: where many robust signed
scores are negative (ε ≥ 2η), spreading them raises the robust accuracy, and concentrating
the weight on k < d features buys that noise at no ℓ1 cost. At d = 1000, p = 0.95,
η = 0.1, ε = 0.2, among classifiers with standard accuracy ≥ 96.5 % the best
``(a, b·1)`` has robust accuracy 39.4 %, ``(a, c·1_200, 0, …)`` reaches 51.5 % (Monte
Carlo on 4·10⁵ draws agrees), and the frontier 55.8 % with a bias as well (a bias helps
likewise: the classifier becomes more robust on one class). :func:`frontier` therefore searches all three numbers;
``family="symmetric"`` gives the restricted curve for comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from robustscope.errors import ParameterError
from robustscope.params import parse_eps
from robustscope.theory.tsipras import Distribution, Norm, accuracy_from_statistics, check_norm

Family = Literal["linear", "symmetric"]

__all__ = ["Frontier", "frontier", "pareto", "witness"]

GRID = {"a": 161, "rho": 32, "bias": 200}
"""Sizes of the starting grid: the robust-feature weight (or angle), the noise ratio ρ, the
bias; :data:`REFINE` rounds of local search then refine the Pareto points."""
REFINE = 10
BAND = 0.05
"""Near-optimal points kept between rounds lie within this robust accuracy of the frontier."""
KEEP = 1000
"""Pareto points kept between rounds: those attaining the frontier at ``KEEP`` standard
accuracies spaced evenly and ``KEEP`` spaced evenly in log(1 − standard)."""


@dataclass(frozen=True)
class Frontier:
    """The frontier as a staircase: ``robust[i]`` is the largest robust accuracy among the
    searched classifiers with standard accuracy ≥ ``standard[i]`` (increasing), attained
    by the classifier with statistics ``a[i], S[i], q[i], bias[i]`` (normalised as the
    module doc says; :func:`witness` turns it into weights)."""

    dist: Distribution
    eps: float
    norm: Norm
    family: Family
    standard: np.ndarray
    robust: np.ndarray
    a: np.ndarray
    S: np.ndarray
    q: np.ndarray
    bias: np.ndarray

    def robust_at(self, standard: float | np.ndarray) -> np.ndarray:
        """The frontier's robust accuracy for a standard accuracy of at least ``standard``
        (NaN above the largest standard accuracy reached)."""
        t = np.atleast_1d(np.asarray(standard, dtype=np.float64))
        idx = np.searchsorted(self.standard, t, side="left")
        inside = idx < len(self.standard)
        return np.where(inside, self.robust[np.minimum(idx, len(self.robust) - 1)], np.nan)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists."""
        return {
            "distribution": self.dist.to_dict(),
            "eps": self.eps,
            "norm": self.norm,
            "family": self.family,
            "box": "unbounded",
            "standard": self.standard.tolist(),
            "robust": self.robust.tolist(),
        }


def pareto(standard: np.ndarray, robust: np.ndarray) -> np.ndarray:
    """Indices of the Pareto-optimal points (no other point is at least as good in both and
    better in one), ordered by increasing standard accuracy.

    >>> pareto(np.array([0.9, 0.8, 0.95, 0.85]), np.array([0.5, 0.6, 0.2, 0.4])).tolist()
    [1, 0, 2]
    """
    order = np.lexsort((-robust, -standard))
    r = robust[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(r)[:-1]])
    return order[r > best_before][::-1].copy()


@dataclass(frozen=True)
class _Search:
    """The searched coordinates: ``u`` (a, or the angle under ℓ2), ``r = log ρ``, bias ``b``,
    each in ``[lo, hi]``; a coordinate with ``lo == hi`` is fixed."""

    dist: Distribution
    eps: float
    norm: Norm
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    dense_bias: float

    @classmethod
    def create(cls, dist: Distribution, eps: float, norm: Norm, family: Family) -> _Search:
        r_lo = -0.5 * math.log(dist.d) if norm == "linf" else 0.0
        r_hi = r_lo if family == "symmetric" else 0.0
        scale = 1.0 if norm == "linf" else 1.0 + dist.eta * math.sqrt(dist.d)
        # Beyond 1 + ηS + ε + 9q the classifier says +1 on all but 1e-19 of D.
        b_hi = 0.0 if family == "symmetric" else scale + eps + 9.0
        # The biases that trade one class against the other are of the order of the means.
        dense = min(b_hi, 2.0 * scale + eps)
        return cls(dist, eps, norm, (0.0, r_lo, 0.0), (1.0, r_hi, b_hi), dense)

    def evaluate(self, u: np.ndarray, r: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        """Standard and robust accuracy and the statistics ``a, S, q, bias`` (broadcast)."""
        if self.norm == "linf":
            a = u
            S = 1.0 - u
            q = S * np.exp(r)
        else:
            a = np.cos(u * (math.pi / 2))
            q = np.sin(u * (math.pi / 2))
            S = math.sqrt(self.dist.d) * q
        standard = accuracy_from_statistics(a, S, q, b, 0.0, self.dist)
        robust = accuracy_from_statistics(a, S, q, b, self.eps, self.dist)
        shape = standard.shape
        flat = [np.broadcast_to(t, shape).ravel() for t in (u, r, b, a, S, q)]
        return (standard.ravel(), robust.ravel(), *flat)

    def start(self, sizes: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The starting grid: the bias dense in ``[0, dense_bias]``, sparse up to the top."""
        # Fine near u = 1 too, where a sliver of non-robust weight leaves sign(x_1).
        u = np.union1d(np.linspace(0.0, 1.0, sizes["a"]), 1.0 - np.geomspace(1e-9, 1.0, sizes["a"]))
        r = np.linspace(self.lo[1], self.hi[1], sizes["rho"] if self.hi[1] > self.lo[1] else 1)
        b = np.union1d(
            np.linspace(0.0, self.dense_bias, sizes["bias"]),
            self.hi[2] * np.linspace(0.0, 1.0, 16) ** 2,
        )
        return u[:, None, None], r[None, :, None], b[None, None, :]


def _thin(standard: np.ndarray, robust: np.ndarray) -> np.ndarray:
    """Indices of Pareto points (sorted by increasing ``standard``, so decreasing ``robust``)
    that attain the frontier at :data:`KEEP` standard accuracies spaced evenly, as many
    spaced evenly in log(1 − standard), and as many robust levels spaced evenly (so that
    near-vertical stretches keep their points too)."""
    lo, hi = float(standard[0]), float(standard[-1])
    targets = np.linspace(lo, hi, KEEP)
    if hi < 1.0:
        targets = np.concatenate([targets, 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, KEEP)])
    by_standard = np.searchsorted(standard, targets, side="left")
    levels = np.linspace(float(robust[-1]), float(robust[0]), KEEP)
    by_robust = len(robust) - np.searchsorted(robust[::-1], levels, side="left") - 1
    idx = np.concatenate([by_standard, by_robust])
    return np.unique(np.clip(idx, 0, len(standard) - 1))


def _keep(found: tuple[np.ndarray, ...]) -> np.ndarray:
    """Indices to carry into the next round: the thinned Pareto set, and near-optimal points
    (robust accuracy within :data:`BAND` of the frontier at their standard accuracy) from
    other branches — the best per cell of a (standard accuracy × ``u`` × bias) grid — so
    that a branch behind at this resolution can still overtake after refinement."""
    standard, robust, u, _, b = found[:5]
    front = pareto(standard, robust)
    best = front[_thin(standard[front], robust[front])]
    fs, fr = standard[front], robust[front]
    at = np.searchsorted(fs, standard, side="left")
    ceiling = np.where(at < len(fs), fr[np.minimum(at, len(fr) - 1)], -np.inf)
    band = np.flatnonzero(robust >= ceiling - BAND)
    lo, hi = float(fs[0]), float(fs[-1])
    cell_s = np.clip(((standard[band] - lo) / max(hi - lo, 1e-12) * 400).astype(np.int64), 0, 399)
    cell_u = np.clip((u[band] * 8).astype(np.int64), 0, 7)
    cell_b = (b[band] > np.median(b[band])).astype(np.int64)
    cell = (cell_s * 8 + cell_u) * 2 + cell_b
    order = np.lexsort((-robust[band], cell))
    first = np.concatenate([[True], cell[order][1:] != cell[order][:-1]])
    return np.union1d(best, band[order[first]])


def _search(search: _Search, sizes: dict[str, int], rounds: int) -> tuple[np.ndarray, ...]:
    """Grid, then ``rounds`` of local search around every Pareto point (steps halving from
    the grid spacing), keeping the Pareto set of everything evaluated."""
    found = search.evaluate(*search.start(sizes))
    keep = _keep(found)
    found = tuple(t[keep] for t in found)
    lo, hi = np.array(search.lo), np.array(search.hi)
    counts = np.array([sizes["a"], sizes["rho"], sizes["bias"]], dtype=np.float64)
    span = np.array([hi[0] - lo[0], hi[1] - lo[1], search.dense_bias])
    step = span / np.maximum(counts - 1, 1)
    moves = np.array(np.meshgrid(*([[-1.0, 0.0, 1.0]] * 3), indexing="ij")).reshape(3, -1).T
    moves = moves[np.any(moves != 0, axis=1)]
    for _ in range(rounds):
        centre = np.stack(found[2:5], axis=1)
        cand = (centre[:, None, :] + moves[None, :, :] * step).reshape(-1, 3)
        cand = np.clip(cand, lo, hi)
        new = search.evaluate(cand[:, 0], cand[:, 1], cand[:, 2])
        merged = tuple(np.concatenate([old, add]) for old, add in zip(found, new, strict=True))
        keep = _keep(merged)
        found = tuple(t[keep] for t in merged)
        step = step / 2
    final = pareto(found[0], found[1])
    return tuple(t[final] for t in found)


def frontier(
    dist: Distribution,
    eps: float,
    norm: str = "linf",
    family: Family = "linear",
    grid: dict[str, int] | None = None,
    rounds: int = REFINE,
) -> Frontier:
    """The trade-off frontier of linear classifiers on D at radius ``eps`` (module doc).

    ``family="linear"``: every linear classifier ``sign(wᵀx + β)``, searched through the
    reductions; ``"symmetric"``: only ``w = (a, b·1)``, β = 0. ``grid`` overrides the
    starting :data:`GRID`, ``rounds`` the local refinement (the tests bound the change from
    a finer search).

    >>> f = frontier(Distribution.create(d=100, p=0.95, eta=0.3), eps=0.6)
    >>> float(f.robust_at(0.5)[0])  # at low standard accuracy: sign(x_1), robust p
    0.95
    """
    norm_ = check_norm(norm)
    eps_f = parse_eps(eps, "eps")
    if family not in ("linear", "symmetric"):
        raise ParameterError(f"family must be 'linear' or 'symmetric', got {family!r}")
    search = _Search.create(dist, eps_f, norm_, family)
    standard, robust, _, _, bias, a, S, q = _search(search, {**GRID, **(grid or {})}, rounds)
    return Frontier(dist, eps_f, norm_, family, standard, robust, a, S, q, bias)


def witness(dist: Distribution, a: float, S: float, q: float, norm: str = "linf") -> np.ndarray:
    """Weights ``w = (a, v)`` with ``v ≥ 0``, ``Σv = S`` and ``‖v‖₂ = q`` (needs
    ``S/√d ≤ q ≤ S``): ``v = (S − (d − 1)u, u, …, u)`` with u solving the ℓ2 equation.

    Under ℓ2 the frontier's classifiers are symmetric, ``v = (S/d)·1``.
    """
    d = dist.d
    if check_norm(norm) == "l2" or d == 1 or S <= 0:
        v = np.full(d, S / d)
        return np.concatenate([[a], v])
    q = float(np.clip(q, S / math.sqrt(d), S))
    # (S − (d−1)u)² + (d−1)u² = q²: a parabola in u with its vertex at u = S/d, where
    # q = S/√d; on [0, S/d] q falls from S, so u is the smaller root.
    A, B, C = d * (d - 1), -2.0 * S * (d - 1), S * S - q * q
    u = (-B - math.sqrt(max(B * B - 4 * A * C, 0.0))) / (2 * A)
    u = min(max(u, 0.0), S / d)
    v = np.full(d, u)
    v[0] = S - (d - 1) * u
    return np.concatenate([[a], v])
