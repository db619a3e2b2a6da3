"""The statistical rule every Finding is decided by: three verdicts from a 95 % interval.

A paper's claim is about a quantity — a trend along ε (its slope), a difference or a ratio
between two models. This module owns how the report decides it (:data:`RULE`):

* **Resampling.** Each table cell that is an average over test points (clean and robust
  accuracy, per-example probe values) is recomputed from its :class:`Samples`, the
  per-point values the study stored. A draw resamples the test points with replacement —
  the *same* indices for every model, since all are evaluated on the same first ``n`` test
  points (a paired bootstrap) — and, where a training ε has several seeds, the seeds too.
  :data:`RESAMPLES` draws give a 95 % percentile interval of the claim's quantity.
* **Verdicts.** **holds** when the interval lies wholly on the claimed side of the null
  value (0 for a slope or a difference, the claimed factor for a ratio), **does not hold**
  when it lies wholly on the other side, **inconclusive** when it straddles it.
* **Nothing to resample** (one seed, and no per-point values: a quantity of the weights
  alone, or a study stored before runs kept them). A trend is decided by the one-sided
  permutation test of Spearman's ρ between ε and the values (5 %; four or more training ε
  are needed for a perfectly monotone series to reach it). A comparison of two numbers is
  read as measured when the caller says the quantity is a property of the weights, and is
  inconclusive otherwise.

Example:
    >>> rng = np.random.default_rng(0)
    >>> eps = [0.0, 0.1, 0.2]
    >>> pts = [Samples((rng.random(400) < 0.9 - e).astype(float)) for e in eps]
    >>> draws = Draws.of([[(float(s.values.mean()), s)] for s in pts], eps)
    >>> iv = draws.interval(slope)
    >>> iv.decide(0.0, direction=-1), iv.method
    (<Verdict.HOLDS: 'holds'>, 'bootstrap over 400 test points')
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "LEVEL",
    "RESAMPLES",
    "RULE",
    "Draws",
    "Interval",
    "Samples",
    "Verdict",
    "combine",
    "permutation_trend",
    "slope",
    "spearman",
    "z_verdict",
]

#: bootstrap draws per interval
RESAMPLES = 1000
#: the interval's coverage
LEVEL = 0.95
#: the one-sided level of the permutation test of a trend with nothing to resample
PERMUTATION_ALPHA = 0.05
#: up to this many points a permutation test enumerates every ordering
EXACT_PERMUTATIONS = 8
#: random orderings of a permutation test over more points
MONTE_CARLO_PERMUTATIONS = 5000
#: the bootstrap's (and random permutations') seed: a report is reproducible
SEED = 0

RULE = (
    "Each claim is decided on a 95 % interval of the quantity it is about (the least-squares "
    "slope along ε of a trend, the ratio or difference to the standard model): a percentile "
    f"bootstrap with {RESAMPLES} draws that resample the test points (the same points for "
    "every model: they are all evaluated on the same ones) and, where a training ε has "
    "several seeds, the seeds. It holds when the interval lies wholly on the claimed side, "
    "does not hold when it lies wholly on the other side, and is inconclusive when it "
    "contains the null value. With neither per-point values nor seeds to resample, a trend "
    "is decided by the one-sided permutation test of Spearman's ρ along ε (5 %), and a "
    "comparison with the standard model is read as measured for a quantity of the weights "
    "alone and is inconclusive otherwise. A run that did not train is never evidence."
)


class Verdict(StrEnum):
    """A Finding's verdict (the string is what the report prints)."""

    HOLDS = "holds"
    FAILS = "does not hold"
    INCONCLUSIVE = "inconclusive"
    UNTESTED = "not tested"


def z_verdict(score: float, z: float) -> Verdict:
    """A z-test read three ways: holds when the standardised effect ``score`` is above
    ``z``, does not hold below ``−z`` (significantly the other way), else inconclusive.

    >>> z_verdict(3.1, 1.96), z_verdict(-2.5, 1.96), z_verdict(0.4, 1.96)
    (<Verdict.HOLDS: 'holds'>, <Verdict.FAILS: 'does not hold'>, <Verdict.INCONCLUSIVE: 'inconclusive'>)
    """
    if not math.isfinite(score):
        return (
            Verdict.INCONCLUSIVE
            if score != score
            else (Verdict.HOLDS if score > 0 else Verdict.FAILS)
        )
    if score > z:
        return Verdict.HOLDS
    if score < -z:
        return Verdict.FAILS
    return Verdict.INCONCLUSIVE


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """A claim read on several series or runs, each judged: it does not hold when it fails
    in one, holds when it holds in every one, else inconclusive (untested ones are ignored).

    >>> combine([Verdict.HOLDS, Verdict.INCONCLUSIVE]), combine([Verdict.HOLDS] * 2)
    (<Verdict.INCONCLUSIVE: 'inconclusive'>, <Verdict.HOLDS: 'holds'>)
    """
    tested = [v for v in verdicts if v is not Verdict.UNTESTED]
    if not tested:
        return Verdict.UNTESTED
    if Verdict.FAILS in tested:
        return Verdict.FAILS
    if all(v is Verdict.HOLDS for v in tested):
        return Verdict.HOLDS
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Samples:
    """The per-test-point values behind one number of a run: the number is ``stat`` of
    ``values`` (a ``weights``-weighted mean when weights are given — robust accuracy over
    the correctly classified points weighs by clean correctness).

    Attributes:
        values: ``[n]`` per-point values (booleans as 0/1).
        weights: ``[n]`` non-negative weights, or None.
        stat: ``"mean"``, ``"median"``, ``"std"`` (population), ``"rms"``
            (root-mean-square) or ``"qNN"`` (the NN-th percentile).
    """

    values: np.ndarray
    weights: np.ndarray | None = None
    stat: str = "mean"

    def __len__(self) -> int:
        return len(self.values)

    def draw(self, idx: np.ndarray) -> np.ndarray:
        """The statistic on each row of point indices ``idx`` (``[B, n]``) → ``[B]``."""
        v = np.asarray(self.values, dtype=np.float64)[idx]
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)[idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.asarray((v * w).sum(axis=1) / w.sum(axis=1))
        if self.stat == "mean":
            return np.asarray(np.nanmean(v, axis=1))
        if self.stat == "std":
            return np.asarray(np.nanstd(v, axis=1))
        if self.stat == "rms":
            return np.asarray(np.sqrt(np.nanmean(v * v, axis=1)))
        if self.stat == "median":
            return np.asarray(np.nanmedian(v, axis=1))
        if self.stat.startswith("q"):
            return np.asarray(np.nanpercentile(v, float(self.stat[1:]), axis=1))
        raise ValueError(f"unknown statistic {self.stat!r}: use mean, median, std, rms or qNN")


@dataclass(frozen=True)
class Interval:
    """A claim's quantity: its estimate on the study and its 95 % interval.

    Attributes:
        estimate: the quantity on the measured values.
        lo, hi: the interval's ends (equal to ``estimate`` when nothing was resampled).
        method: how the interval was made (``"bootstrap over 1000 test points"``, ``"exact"``,
            ``"permutation p = 0.042"``...).
        p: the permutation test's one-sided p-value in the claimed direction (None for a
            bootstrap interval).
        p_reverse: the permutation test's one-sided p-value in the other direction.
    """

    estimate: float
    lo: float
    hi: float
    method: str
    p: float | None = None
    p_reverse: float | None = None

    @property
    def exact(self) -> bool:
        """Nothing was resampled: the interval is the estimate itself."""
        return self.method == "exact"

    def decide(self, null: float, direction: int) -> Verdict:
        """The verdict on "the quantity is above ``null``" (``direction`` +1) or below it
        (−1): see the module doc."""
        if not all(map(math.isfinite, (self.estimate, self.lo, self.hi))):
            return Verdict.INCONCLUSIVE
        if self.p is not None:  # a permutation test: p is one-sided in the claimed direction
            if self.p <= PERMUTATION_ALPHA:
                return Verdict.HOLDS
            if self.p_reverse is not None and self.p_reverse <= PERMUTATION_ALPHA:
                return Verdict.FAILS
            return Verdict.INCONCLUSIVE
        lo, hi = direction * (self.lo - null), direction * (self.hi - null)
        if min(lo, hi) > 0:
            return Verdict.HOLDS
        if max(lo, hi) < 0:
            return Verdict.FAILS
        return Verdict.INCONCLUSIVE

    def text(self, fmt: Callable[[float], str] = lambda v: f"{v:.3g}") -> str:
        """``"−0.52 [−0.61, −0.44]"``, ``"0.8 (as measured…)"``, ``"ρ = −1, p = 0.042"`` (nothing resampled: "as measured")."""
        if self.p is not None:
            return f"ρ = {self.estimate:.2f}, one-sided permutation p = {self.p:.3f}"
        if self.exact:
            return f"{fmt(self.estimate)} (as measured: no per-point values or seeds to resample)"
        return f"{fmt(self.estimate)} [{fmt(self.lo)}, {fmt(self.hi)}]"


def slope(eps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The least-squares slope of ``values`` (``[..., E]``) on ``eps`` (``[E]``), along the
    last axis.

    >>> float(slope(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])))
    2.0
    """
    x = np.asarray(eps, dtype=np.float64)
    xc = x - x.mean()
    v = np.asarray(values, dtype=np.float64)
    return np.asarray((v - v.mean(axis=-1, keepdims=True)) @ xc / float(xc @ xc))


def spearman(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when undefined.

    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 15.0]))
    0.5
    """
    return _pearson(
        rankdata(np.asarray(x, dtype=np.float64)), rankdata(np.asarray(y, dtype=np.float64))
    )


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def permutation_trend(
    eps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, direction: int
) -> Interval:
    """The permutation test of Spearman's ρ between ``eps`` and ``values`` (any paired
    sequences): ``p`` is the share of the orderings of ``values`` whose ρ is at least as far
    in ``direction`` as the observed one, ``p_reverse`` the same in the other direction —
    over every ordering up to :data:`EXACT_PERMUTATIONS` points, else
    :data:`MONTE_CARLO_PERMUTATIONS` random ones. Permuting the values permutes their
    ranks, so the ranks are computed once.

    >>> iv = permutation_trend([0, 1, 2, 3], [4.0, 3.0, 2.0, 1.0], direction=-1)
    >>> round(iv.p, 3), round(iv.p_reverse, 3), iv.decide(0.0, -1)
    (0.042, 1.0, <Verdict.HOLDS: 'holds'>)
    """
    rx = rankdata(np.asarray(eps, dtype=np.float64))
    ry = rankdata(np.asarray(values, dtype=np.float64))
    rho = _pearson(rx, ry)
    n = len(ry)
    if not math.isfinite(rho):
        return Interval(rho, math.nan, math.nan, "permutation", p=math.nan, p_reverse=math.nan)
    if n <= EXACT_PERMUTATIONS:
        orders = np.array(list(itertools.permutations(range(n))))
        how = f"exact permutation over {n} points"
    else:
        rng = np.random.default_rng(SEED)
        orders = np.argsort(rng.random((MONTE_CARLO_PERMUTATIONS, n)), axis=1)
        how = f"{MONTE_CARLO_PERMUTATIONS} random permutations of {n} points"
    xc, ys = rx - rx.mean(), ry[orders]  # [P, n]: the permuted ranks (same mean and spread)
    rhos = (ys - ry.mean()) @ xc / (n * rx.std() * ry.std())
    signed, obs = direction * rhos, direction * rho
    p = float(np.mean(signed >= obs - 1e-12))
    p_reverse = float(np.mean(signed <= obs + 1e-12))
    return Interval(rho, rho, rho, how, p=p, p_reverse=p_reverse)


@dataclass(frozen=True)
class Draws:
    """Bootstrap draws of the members of one series (one value per training ε).

    Attributes:
        eps: ``[E]`` the members' training ε.
        point: ``[E]`` the members' values as measured (seed means).
        draws: ``[B, E]`` the resampled values, or None when nothing could be resampled.
        method: what was resampled, for the evidence.
    """

    eps: np.ndarray
    point: np.ndarray
    draws: np.ndarray | None
    method: str

    @classmethod
    def of(
        cls,
        members: Sequence[Sequence[tuple[float, Samples | None]]],
        eps: Sequence[float],
        *,
        resamples: int = RESAMPLES,
        seed: int = SEED,
    ) -> Draws:
        """Resample ``members`` — per training ε, one ``(value, samples)`` per seed (samples
        None when the run stored no per-point values) — as the module doc says."""
        rng = np.random.default_rng(seed)
        e = np.asarray(eps, dtype=np.float64)
        pt = np.asarray([np.mean([v for v, _ in m]) for m in members], dtype=np.float64)
        with_points = bool(members) and all(s is not None for m in members for _, s in m)
        several = any(len(m) > 1 for m in members)
        if not with_points and not several:
            return cls(e, pt, None, "exact")
        sizes = sorted({len(s) for m in members for _, s in m if s is not None})
        shared = {n: rng.integers(0, n, size=(resamples, n)) for n in sizes}
        out = np.empty((resamples, len(members)))
        for j, m in enumerate(members):
            per_seed = np.stack(
                [
                    s.draw(shared[len(s)])
                    if with_points and s is not None
                    else np.full(resamples, v)
                    for v, s in m
                ]
            )  # [S, B]
            if len(m) > 1:
                pick = rng.integers(0, len(m), size=(resamples, len(m)))
                out[:, j] = np.nanmean(per_seed[pick, np.arange(resamples)[:, None]], axis=1)
            else:
                out[:, j] = per_seed[0]
        parts = [f"{sizes[-1]} test points"] if with_points else []
        if several:
            parts.append("seeds")
        return cls(e, pt, out, "bootstrap over " + " and ".join(parts))

    def interval(self, quantity: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Interval:
        """``quantity(eps, values[..., E])`` → its :class:`Interval` (percentile bootstrap;
        exact when nothing was resampled)."""
        est = float(quantity(self.eps, self.point))
        if self.draws is None:
            return Interval(est, est, est, "exact")
        q = np.asarray(quantity(self.eps, self.draws), dtype=np.float64)
        q = q[np.isfinite(q)]
        if not len(q):
            return Interval(est, math.nan, math.nan, self.method)
        tail = (1.0 - LEVEL) / 2 * 100
        lo, hi = np.percentile(q, [tail, 100 - tail])
        return Interval(est, float(lo), float(hi), self.method)
