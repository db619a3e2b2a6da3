"""The Findings' statistical rule (issue 15 §4): three verdicts from a 95 % interval.

A synthetic study whose runs store per-point correctness the way ``execute_run`` does: the
claim holds by construction → "holds"; pure noise → "inconclusive"; the reverse trend →
"does not hold". The bootstrap and the permutation test are checked against closed forms.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from robustscope.report import StudyData, compute_findings
from robustscope.report.evidence import (
    Draws,
    Interval,
    Samples,
    Verdict,
    combine,
    permutation_trend,
    slope,
)
from robustscope.report.findings import trend, vs_standard
from robustscope.studies.store.vocab import POINTS_PROBE

EPS = (0.0, 0.05, 0.1, 0.2)
N = 1000


def _study(clean_p: list[float], seeds: tuple[int, ...] = (0,), n: int = N) -> StudyData:
    """One model, PGD at EPS; each run's per-point clean correctness drawn with probability
    ``clean_p[i]`` at EPS[i] (independent draws per run), stored as ``points/clean``."""
    rng = np.random.default_rng(7)
    runs, metrics, arrays = [], {}, {}
    for i, eps in enumerate(EPS):
        for seed in seeds:
            rid = f"r{i}s{seed}"
            correct = rng.random(n) < clean_p[i]
            runs.append({"run_id": rid, "model": "cnn", "family": "pgd", "eps": eps,
                         "method": "standard" if eps == 0 else "pgd", "seed": seed})  # fmt: skip
            metrics[rid] = {"clean_accuracy": float(correct.mean())}
            arrays[(rid, POINTS_PROBE, "clean")] = correct
    return StudyData.from_frames(
        spec={"name": "t", "evaluation": {"n": n}},
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        arrays=arrays,
    )


def _clean_claim(data: StudyData):
    findings = compute_findings(data)
    return next(f for f in findings if f.claim.startswith("Clean accuracy decreases"))


def test_the_three_verdicts_on_synthetic_studies() -> None:
    falling = _clean_claim(_study([0.90, 0.85, 0.80, 0.75]))
    assert falling.verdict is Verdict.HOLDS
    assert "bootstrap" not in falling.evidence and "slope" in falling.evidence
    noise = _clean_claim(_study([0.80, 0.80, 0.80, 0.80]))
    assert noise.verdict is Verdict.INCONCLUSIVE
    rising = _clean_claim(_study([0.75, 0.80, 0.85, 0.90]))
    assert rising.verdict is Verdict.FAILS
    # the same noise on far fewer points stays inconclusive; a real trend on few points too
    assert _clean_claim(_study([0.80, 0.78, 0.79, 0.77], n=100)).verdict is Verdict.INCONCLUSIVE


def test_noise_is_rarely_called_a_trend() -> None:
    """Over 40 pure-noise studies the 95 % slope interval excludes 0 in few (≈ 5 % expected;
    a rule that called noise a trend half the time fails this)."""
    decided = 0
    for k in range(40):
        rng = np.random.default_rng(100 + k)
        members = [[(0.0, Samples((rng.random(400) < 0.7).astype(float)))] for _ in EPS]
        members = [[(float(s.values.mean()), s)] for [(_, s)] in members]
        iv = Draws.of(members, EPS, resamples=400, seed=k).interval(slope)
        decided += iv.decide(0.0, -1) is not Verdict.INCONCLUSIVE
    assert decided <= 6


def test_the_bootstrap_interval_matches_the_normal_approximation() -> None:
    """For the difference of two accuracies on independent points the percentile interval
    is close to ± 1.96 binomial standard errors."""
    rng = np.random.default_rng(3)
    a = (rng.random(2000) < 0.8).astype(float)
    b = (rng.random(2000) < 0.7).astype(float)
    members = [[(a.mean(), Samples(a))], [(b.mean(), Samples(b))]]
    iv = Draws.of(members, [0.0, 1.0], resamples=4000).interval(lambda _, v: v[..., 0] - v[..., 1])
    # paired resampling of independent columns: var(a − b) = var(a) + var(b) − 2 cov ≈ sum
    se = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert iv.estimate == pytest.approx(a.mean() - b.mean())
    assert (iv.hi - iv.lo) / 2 == pytest.approx(1.96 * se, rel=0.1)


def test_weighted_samples_are_robust_accuracy_on_correct() -> None:
    robust = np.array([1, 0, 1, 0, 0], dtype=float)
    clean = np.array([1, 1, 1, 0, 1], dtype=float)
    s = Samples(robust, weights=clean)
    assert s.draw(np.arange(5)[None, :])[0] == pytest.approx(2 / 4)
    assert Samples(np.array([3.0, 1.0, 2.0]), stat="median").draw(np.arange(3)[None, :])[0] == 2.0


def _spearman_by_loops(x: list[float], y: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        return [sum(b < a for b in v) + (sum(b == a for b in v) + 1) / 2 for a in v]

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((p - mx) * (q - my) for p, q in zip(rx, ry, strict=True))
    return cov / math.sqrt(sum((p - mx) ** 2 for p in rx) * sum((q - my) ** 2 for q in ry))


@pytest.mark.parametrize("values", [[4.0, 3.0, 2.0, 1.0], [3.0, 4.0, 1.0, 2.0], [1, 3, 2, 5, 4]])
def test_the_permutation_p_value_by_enumeration(values: list[float]) -> None:
    x = list(range(len(values)))
    obs = _spearman_by_loops(x, values)
    perms = [_spearman_by_loops(x, list(p)) for p in itertools.permutations(values)]
    expected = sum(-r >= -obs - 1e-12 for r in perms) / len(perms)
    iv = permutation_trend(x, values, direction=-1)
    assert iv.estimate == pytest.approx(obs) and iv.p == pytest.approx(expected)
    reverse = sum(r >= obs - 1e-12 for r in perms) / len(perms)
    want = Verdict.HOLDS if expected <= 0.05 else (
        Verdict.FAILS if reverse <= 0.05 else Verdict.INCONCLUSIVE
    )  # fmt: skip
    assert iv.decide(0.0, -1) is want


def test_combining_series_and_exact_comparisons() -> None:
    assert combine([Verdict.HOLDS, Verdict.FAILS]) is Verdict.FAILS
    assert combine([Verdict.UNTESTED]) is Verdict.UNTESTED
    assert Interval(2.0, 2.0, 2.0, "exact").decide(1.0, +1) is Verdict.HOLDS
    assert Interval(0.5, 0.2, 0.9, "bootstrap").decide(0.0, +1) is Verdict.HOLDS
    assert Interval(0.5, -0.2, 0.9, "bootstrap").decide(0.0, +1) is Verdict.INCONCLUSIVE
    table = pd.DataFrame(
        {"model": "m", "family": "pgd", "eps": [0.0, 0.1], "seed": 0, "w": [10.0, 5.0]},
        index=["a", "b"],
    )
    # one seed, no per-point values: an exact quantity is compared as measured, another not
    exact = vs_standard(table, ("w",), factor=1.0, claim="c", paper="p", exact=True)
    assert exact.verdict is Verdict.HOLDS and "as measured" in exact.evidence
    sampled = vs_standard(table, ("w",), factor=1.0, claim="c", paper="p")
    assert sampled.verdict is Verdict.INCONCLUSIVE
    # a trend over two members without anything to resample cannot reach 5 %
    assert trend(table, ("w",), direction=-1, claim="c", paper="p").verdict is (
        Verdict.INCONCLUSIVE
    )
