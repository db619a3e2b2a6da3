"""Corruption metrics of a model against a reference (baseline) model.

With ``E_{t,l}(f) = 1 − α_{t,l}(f)`` the error of model f on corruption t at severity l
and ``E_clean(f)`` its clean error (Hendrycks & Dietterich 2019, §3):

* corruption error ``CE_t(f) = Σ_l E_{t,l}(f) / Σ_l E_{t,l}(base)``, ``mCE = mean_t CE_t``;
* relative corruption error
  ``relative CE_t(f) = Σ_l (E_{t,l}(f) − E_clean(f)) / Σ_l (E_{t,l}(base) − E_clean(base))``,
  relative mCE its mean over t.

wu2020 (*Reducing exploitation of data idiosyncrasy*, robustness test on ImageNet-C)
write in accuracies α:

* ``δ_t(Θ) = Σ_l [α(clean; Θ) − α(X^C_{t,l}; Θ)]``, the accuracy a model loses to t;
* ``RmCE(Θ) = (1/15) Σ_t δ_t(Θ) / δ_t(ref)``, with the reference model's δ as unit;
* the trade-off coordinates ``robustness = RmCE(ref) − RmCE(Θ)`` (0 for the reference,
  positive = more robust) and ``accuracy = (α(Θ) − α(ref)) / α(ref)`` (clean).

Since ``E_{t,l} − E_clean = α_clean − α_{t,l}``, each ratio ``δ_t(Θ)/δ_t(ref)`` *is*
Hendrycks' relative CE_t, and RmCE is the relative mCE (over the types evaluated; wu2020's
1/15 when all 15 are). All figures here are fractions, not percentages.

**Undefined ratios.** A ratio whose denominator is not above ``TOL = 1e-12`` (a reference
with no error on t, for CE; a reference that t does not degrade, or improves, for the
relative CE and δ ratio) is NaN for that type, and that type is listed in
``undefined_ce`` / ``undefined_relative``. The means (mCE, relative mCE, RmCE) are taken
over the types whose ratio is defined; with none defined they are NaN, and so is
``robustness`` (RmCE(ref) is 1 when at least one ratio is defined). ``accuracy`` is NaN
when the reference's clean accuracy is 0.

**Standard errors** (``robustness_se``, ``accuracy_se``; an approximation, stated): every
accuracy is a binomial proportion on the ``n`` points (variance α(1 − α)/n) and the
accuracies are treated as independent. ``Var RmCE`` is the delta method's ``Σ_a (∂RmCE/∂a)²
v(a)`` over every accuracy a of both models (RmCE = (1/T) Σ_t δ_t(Θ)/δ_t(ref) over the T
defined types; each model's clean accuracy enters every δ_t, S times); ``accuracy_se = √(v(α) + v(α_ref)) / α_ref``. Both models are
measured on the same points, whose accuracies are positively correlated, so the clean and
between-model terms are conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robustscope.corruptions.evaluate import CorruptionResult
from robustscope.corruptions.registry import CorruptionError
from robustscope.evaluation import EvalRecord

__all__ = [
    "TOL",
    "CorruptionComparison",
    "compare",
    "delta",
    "delta_var",
    "ratio",
    "rmce_var",
    "robust_se",
]

#: denominators at or below this are zero (the ratio is undefined)
TOL = 1e-12


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den ≤ TOL`` (the documented rule for undefined ratios).

    Example:
        >>> ratio(1.0, 4.0), ratio(1.0, 0.0)
        (0.25, nan)
    """
    return num / den if den > TOL else math.nan


def delta(result: CorruptionResult, name: str) -> float:
    """wu2020's ``δ_t = Σ_l [α_clean − α_{t,l}]`` for corruption ``name``."""
    return math.fsum(result.clean_accuracy - a for a in result.accuracy[name])


def _binomial_var(a: float, n: int) -> float:
    return max(a * (1.0 - a), 0.0) / max(n, 1)


def delta_var(result: CorruptionResult, name: str) -> float:
    """The approximate variance of :func:`delta` (binomial accuracies on ``n`` points,
    independent): ``S² v(α_clean) + Σ_l v(α_{t,l})``."""
    n, s = result.n, len(result.severities)
    return s * s * _binomial_var(result.clean_accuracy, n) + math.fsum(
        _binomial_var(a, n) for a in result.accuracy[name]
    )


def rmce_var(
    result: CorruptionResult,
    reference: CorruptionResult,
    rel: dict[str, float],
    d_ref: dict[str, float],
    defined: list[str],
) -> float:
    """The delta-method variance of RmCE over the ``defined`` types (module doc)."""
    if not defined:
        return math.nan
    k, s = len(defined), len(result.severities)
    # RmCE = (1/T) Σ_t (S α_c − Σ_l α_tl) / δ_t(ref): its gradient in each accuracy
    clean = math.fsum(s / (k * d_ref[t]) for t in defined)
    clean_ref = math.fsum(rel[t] * s / (k * d_ref[t]) for t in defined)
    var = _binomial_var(result.clean_accuracy, result.n) * clean**2
    var += _binomial_var(reference.clean_accuracy, reference.n) * clean_ref**2
    for t in defined:
        var += (
            math.fsum(_binomial_var(a, result.n) for a in result.accuracy[t]) / (k * d_ref[t]) ** 2
        )
        var += (
            math.fsum(_binomial_var(a, reference.n) for a in reference.accuracy[t])
            * (rel[t] / (k * d_ref[t])) ** 2
        )
    return var


def _defined_mean(values: dict[str, float]) -> float:
    finite = [v for v in values.values() if not math.isnan(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


@dataclass(frozen=True)
class CorruptionComparison(EvalRecord):
    """Corruption metrics of a model against a reference (formulas in the module docstring).

    Attributes:
        names: the corruptions compared, in order; severities: the severities summed over.
        ce: CE_t per type; mce: their mean over the defined ones.
        relative_ce: relative CE_t = δ_t(Θ)/δ_t(ref) per type; relative_mce: their mean.
        delta: δ_t(Θ) per type; delta_reference: δ_t(ref).
        rmce: wu2020's RmCE(Θ) (equal to relative_mce); rmce_reference: RmCE(ref) (1, or
            NaN when no ratio is defined).
        robustness: RmCE(ref) − RmCE(Θ); accuracy: (α(Θ) − α(ref)) / α(ref), clean.
        clean_accuracy, reference_clean_accuracy: the two clean accuracies.
        mean_accuracy, reference_mean_accuracy: mean accuracy over all copies.
        category_accuracy, reference_category_accuracy: mean accuracy per category.
        undefined_ce, undefined_relative: types whose ratio is undefined (NaN).
    """

    names: tuple[str, ...]
    severities: tuple[int, ...]
    ce: dict[str, float]
    mce: float
    relative_ce: dict[str, float]
    relative_mce: float
    delta: dict[str, float]
    delta_reference: dict[str, float]
    rmce: float
    rmce_reference: float
    robustness: float
    accuracy: float
    clean_accuracy: float
    reference_clean_accuracy: float
    mean_accuracy: float
    reference_mean_accuracy: float
    category_accuracy: dict[str, float]
    reference_category_accuracy: dict[str, float]
    undefined_ce: tuple[str, ...]
    undefined_relative: tuple[str, ...]
    robustness_se: float = math.nan
    accuracy_se: float = math.nan
    se_method: str = ""


def _paired(result: CorruptionResult, reference: CorruptionResult, bootstrap: int) -> bool:
    return (
        bootstrap > 0
        and result.correct is not None
        and reference.correct is not None
        and result.n == reference.n
    )


def robust_se(draws: np.ndarray) -> float:
    """A bootstrap standard error that a few extreme resamples cannot blow up: half the
    spread between the 15.87th and 84.13th percentiles of the finite draws (± 1 sd for a
    normal distribution); NaN with fewer than 10 finite draws."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 10:
        return math.nan
    lo, hi = np.percentile(finite, [15.865, 84.135])
    return float(hi - lo) / 2


class _Bootstrap:
    """Accuracies of two models on ``B`` resamples of their common points (paired): the
    same resampled indices for both, drawn once."""

    def __init__(
        self, result: CorruptionResult, reference: CorruptionResult, draws: int, seed: int
    ):
        assert result.correct is not None and reference.correct is not None
        n = result.n
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).T / n  # [n, B]
        self.acc = result.correct.astype(np.float64) @ weights  # [K, B]
        self.acc_ref = reference.correct.astype(np.float64) @ weights
        self.result, self.reference = result, reference

    @staticmethod
    def _row(r: CorruptionResult, name: str, i: int) -> int:
        return 1 + r.names.index(name) * len(r.severities) + i

    def delta(self, name: str, *, ref: bool) -> np.ndarray:
        """``[B]`` δ_t on each resample."""
        r, acc = (self.reference, self.acc_ref) if ref else (self.result, self.acc)
        rows = [self._row(r, name, i) for i in range(len(r.severities))]
        return len(rows) * acc[0] - acc[rows].sum(0)

    def robustness(self, defined: list[str]) -> np.ndarray:
        """``[B]`` RmCE(ref) − RmCE(Θ) over the ``defined`` types on each resample; a type
        whose δ_t(ref) is not positive on a resample is left out of that resample's mean."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = [
                np.where(d_ref > 0, self.delta(t, ref=False) / d_ref, np.nan)
                for t in defined
                for d_ref in [self.delta(t, ref=True)]
            ]
            return 1.0 - np.nanmean(ratios, axis=0)

    def accuracy(self) -> np.ndarray:
        return (self.acc[0] - self.acc_ref[0]) / self.acc_ref[0]


def compare(
    result: CorruptionResult,
    reference: CorruptionResult,
    *,
    min_delta_z: float = 0.0,
    bootstrap: int = 0,
    seed: int = 0,
) -> CorruptionComparison:
    """Hendrycks & Dietterich's CE, mCE, relative CE and relative mCE, and wu2020's δ, RmCE
    and (robustness, accuracy) coordinates of ``result`` against ``reference`` (both
    evaluated on the same corruptions and severities).

    ``min_delta_z`` > 0 also leaves out (as undefined) the types whose reference loss
    δ_t(ref) is not above ``min_delta_z`` of its standard error (:func:`delta_var`): a
    corruption the reference is not measurably hurt by makes the ratio δ_t(Θ)/δ_t(ref) all
    noise (at 28×28 several types barely move a Fashion-MNIST CNN; docs/corruptions.md).

    ``bootstrap`` > 0, when both results carry their per-point correctness on the same
    ``n`` points (:func:`~robustscope.corruptions.evaluate` keeps it), gives the standard
    errors of δ_t(ref), ``robustness`` and ``accuracy`` from a paired bootstrap over the
    points (``bootstrap`` resamples, ``seed``; :func:`robust_se` of the draws, since a
    ratio with a small denominator has heavy tails): both models see the same resampled
    points, so what they share cancels (a model against itself has error 0). Otherwise they are the
    delta-method approximations of the module doc.

    Example:
        >>> ref = CorruptionResult(0.9, {"fog": (0.7, 0.5)}, 10, (1, 2), 0)
        >>> new = CorruptionResult(0.8, {"fog": (0.7, 0.6)}, 10, (1, 2), 0)
        >>> c = compare(new, ref)
        >>> round(c.mce, 4), round(c.rmce, 4), round(c.robustness, 4), round(c.accuracy, 4)
        (0.875, 0.5, 0.5, -0.1111)
    """
    if set(result.names) != set(reference.names) or result.severities != reference.severities:
        raise CorruptionError(
            "compare needs both results on the same corruptions and severities: "
            f"{result.names} at {result.severities} vs {reference.names} at {reference.severities}"
        )
    names = result.names
    boot = (
        _Bootstrap(result, reference, bootstrap, seed)
        if _paired(result, reference, bootstrap)
        else None
    )
    ce, rel, d, d_ref = {}, {}, {}, {}
    for t in names:
        err = math.fsum(result.error(t, s) for s in result.severities)
        err_ref = math.fsum(reference.error(t, s) for s in result.severities)
        ce[t] = ratio(err, err_ref)
        d[t] = delta(result, t)
        d_ref[t] = delta(reference, t)
        rel[t] = ratio(d[t], d_ref[t])
        if min_delta_z > 0:
            se = (
                robust_se(boot.delta(t, ref=True))
                if boot is not None
                else math.sqrt(delta_var(reference, t))
            )
            if not d_ref[t] > min_delta_z * se:
                rel[t] = math.nan
    rmce = _defined_mean(rel)
    rmce_ref = 1.0 if not math.isnan(rmce) else math.nan
    defined = [t for t in names if not math.isnan(rel[t])]
    var = rmce_var(result, reference, rel, d_ref, defined)
    n, n_ref = result.n, reference.n
    acc_se = ratio(
        math.sqrt(
            _binomial_var(result.clean_accuracy, n) + _binomial_var(reference.clean_accuracy, n_ref)
        ),
        reference.clean_accuracy,
    )
    rob_se = math.sqrt(var) if defined else math.nan
    method = "delta method (independent binomial accuracies)"
    if boot is not None:
        acc_se = robust_se(boot.accuracy())
        rob_se = robust_se(boot.robustness(defined)) if defined else math.nan
        method = f"paired bootstrap over the points ({bootstrap} resamples)"
    return CorruptionComparison(
        names=names,
        severities=result.severities,
        ce=ce,
        mce=_defined_mean(ce),
        relative_ce=rel,
        relative_mce=rmce,
        delta=d,
        delta_reference=d_ref,
        rmce=rmce,
        rmce_reference=rmce_ref,
        robustness=rmce_ref - rmce,
        accuracy=ratio(result.clean_accuracy - reference.clean_accuracy, reference.clean_accuracy),
        clean_accuracy=result.clean_accuracy,
        reference_clean_accuracy=reference.clean_accuracy,
        mean_accuracy=result.mean_accuracy(),
        reference_mean_accuracy=reference.mean_accuracy(),
        category_accuracy=result.category_accuracy(),
        reference_category_accuracy=reference.category_accuracy(),
        undefined_ce=tuple(t for t in names if math.isnan(ce[t])),
        undefined_relative=tuple(t for t in names if math.isnan(rel[t])),
        robustness_se=rob_se,
        accuracy_se=acc_se,
        se_method=method,
    )
