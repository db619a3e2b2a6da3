"""Corruption metrics: Hendrycks & Dietterich's CE / mCE / relative mCE and wu2020's RmCE
against hand-computed values, the undefined-ratio rule, and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustscope.corruptions import CORRUPTIONS, CorruptionError, CorruptionResult, compare


def result(
    clean: float, table: dict[str, tuple[float, ...]], sev: tuple[int, ...] = (1, 2)
) -> CorruptionResult:
    return CorruptionResult(clean, table, 100, sev, 0)


REF = result(0.9, {"gaussian_noise": (0.8, 0.6), "fog": (0.7, 0.5), "contrast": (0.8, 1.0)})
NEW = result(0.95, {"gaussian_noise": (0.85, 0.75), "fog": (0.6, 0.4), "contrast": (0.9, 0.8)})


def test_against_hand_computed_values() -> None:
    c = compare(NEW, REF)
    # CE_t = Σ_l E(new) / Σ_l E(ref), by hand
    assert c.ce["gaussian_noise"] == pytest.approx((0.15 + 0.25) / (0.2 + 0.4), abs=1e-12)
    assert c.ce["fog"] == pytest.approx((0.4 + 0.6) / (0.3 + 0.5), abs=1e-12)
    assert c.ce["contrast"] == pytest.approx((0.1 + 0.2) / (0.2 + 0.0), abs=1e-12)
    assert c.mce == pytest.approx((2 / 3 + 1.25 + 1.5) / 3, abs=1e-12)
    # δ_t = Σ_l (α_clean − α_tl)
    assert c.delta == pytest.approx({"gaussian_noise": 0.3, "fog": 0.9, "contrast": 0.2}, abs=1e-12)
    assert c.delta_reference["fog"] == pytest.approx(0.6, abs=1e-12)
    # contrast: the reference loses 0.1 at severity 1 and gains 0.1 at 2, δ_ref = 0 → undefined
    assert abs(c.delta_reference["contrast"]) < 1e-12
    assert math.isnan(c.relative_ce["contrast"]) and c.undefined_relative == ("contrast",)
    assert c.undefined_ce == ()
    assert c.relative_ce["gaussian_noise"] == pytest.approx(0.3 / 0.4, abs=1e-12)
    assert c.relative_ce["fog"] == pytest.approx(0.9 / 0.6, abs=1e-12)
    # relative mCE = RmCE over the two defined types; robustness = RmCE(ref) − RmCE = 1 − that
    assert c.relative_mce == pytest.approx((0.75 + 1.5) / 2, abs=1e-12)
    assert c.rmce == c.relative_mce and c.rmce_reference == 1.0
    assert c.robustness == pytest.approx(1 - 1.125, abs=1e-12)
    assert c.accuracy == pytest.approx((0.95 - 0.9) / 0.9, abs=1e-12)
    assert c.category_accuracy == pytest.approx({"noise": 0.8, "weather": 0.5, "digital": 0.85})
    assert c.reference_category_accuracy == pytest.approx(
        {"noise": 0.7, "weather": 0.6, "digital": 0.9}
    )
    assert c.mean_accuracy == pytest.approx(4.3 / 6, abs=1e-12)
    assert c.to_dict()["ce"] == c.ce


def test_hendrycks_relative_ce_in_errors_is_wu2020s_delta_ratio() -> None:
    c = compare(NEW, REF)
    for t in ("gaussian_noise", "fog"):
        num = sum((1 - a) - (1 - NEW.clean_accuracy) for a in NEW.accuracy[t])
        den = sum((1 - a) - (1 - REF.clean_accuracy) for a in REF.accuracy[t])
        assert c.relative_ce[t] == pytest.approx(num / den, abs=1e-12)


def test_zero_denominators_give_nan_and_are_left_out_of_the_means() -> None:
    perfect = result(1.0, {"fog": (1.0, 1.0), "snow": (0.9, 0.8)})
    other = result(0.9, {"fog": (0.8, 0.7), "snow": (0.9, 0.6)})
    c = compare(other, perfect)
    assert math.isnan(c.ce["fog"]) and math.isnan(c.relative_ce["fog"])
    assert c.undefined_ce == ("fog",) and c.undefined_relative == ("fog",)
    assert c.mce == pytest.approx((0.1 + 0.4) / (0.1 + 0.2), abs=1e-12)
    assert c.rmce == pytest.approx((0.0 + 0.3) / (0.1 + 0.2), abs=1e-12)
    # nothing defined at all: every mean and the robustness coordinate are NaN, no crash
    flat = result(0.5, {"fog": (1.0, 1.0)})
    c = compare(other.__class__(0.9, {"fog": (0.8, 0.7)}, 100, (1, 2), 0), flat)
    assert math.isnan(c.mce) and math.isnan(c.rmce) and math.isnan(c.robustness)
    assert math.isnan(c.rmce_reference)
    zero = result(0.0, {"fog": (0.0, 0.0)})
    assert math.isnan(
        compare(other.__class__(0.5, {"fog": (0.1, 0.1)}, 100, (1, 2), 0), zero).accuracy
    )


def test_compare_refuses_different_tables() -> None:
    with pytest.raises(CorruptionError, match="same corruptions and severities"):
        compare(result(0.9, {"fog": (0.5, 0.4)}), result(0.9, {"snow": (0.5, 0.4)}))
    with pytest.raises(CorruptionError, match="same corruptions and severities"):
        compare(result(0.9, {"fog": (0.5, 0.4)}), result(0.9, {"fog": (0.5, 0.4)}, (1, 3)))


degradations = st.lists(
    st.lists(st.floats(0.0, 0.4), min_size=5, max_size=5), min_size=15, max_size=15
).filter(lambda rows: all(sum(r) > 1e-3 for r in rows))


@settings(max_examples=60, deadline=None)
@given(rows=degradations, other=degradations, c=st.floats(0.1, 2.0))
def test_rmce_invariances(rows: list[list[float]], other: list[list[float]], c: float) -> None:
    severities = (1, 2, 3, 4, 5)
    ref = CorruptionResult(
        1.0,
        {t: tuple(1 - d for d in r) for t, r in zip(CORRUPTIONS, rows, strict=True)},
        50,
        severities,
        0,
    )
    # the reference against itself: RmCE = mCE = 1, robustness = accuracy = 0
    own = compare(ref, ref)
    assert own.rmce == pytest.approx(1.0) and own.mce == pytest.approx(1.0)
    assert own.robustness == pytest.approx(0.0, abs=1e-12) and own.accuracy == 0.0
    # δ_t(Θ) scaled by c for every t scales RmCE by c
    clean = 0.9  # minus at most 2 · 0.4 / 2: accuracies stay in [0.5, 0.9]

    def model(scale: float) -> CorruptionResult:
        table = {
            t: tuple(clean - scale * d / 2 for d in r)
            for t, r in zip(CORRUPTIONS, other, strict=True)
        }
        return CorruptionResult(clean, table, 50, severities, 0)

    one, scaled = compare(model(1.0), ref), compare(model(c), ref)
    assert scaled.rmce == pytest.approx(c * one.rmce, rel=1e-9, abs=1e-12)
    assert scaled.robustness == pytest.approx(1 - c * one.rmce, rel=1e-9, abs=1e-12)
    assert scaled.accuracy == pytest.approx(clean - 1.0)


def test_standard_errors_follow_the_stated_approximation() -> None:
    """robustness_se and accuracy_se against a float64 transcription of the module doc's
    formulas, and against the spread of RmCE over simulated binomial accuracies."""

    n = 400
    ref = CorruptionResult(0.9, {"fog": (0.8, 0.6), "contrast": (0.7, 0.4)}, n, (1, 5), 0)
    new = CorruptionResult(0.85, {"fog": (0.8, 0.7), "contrast": (0.75, 0.6)}, n, (1, 5), 0)
    c = compare(new, ref)

    def v(a: float) -> float:
        return a * (1 - a) / n

    # RmCE = ½ Σ_t (2 α_c − Σ_l α_tl) / δ_t(ref): the gradient by hand, then Σ grad² v
    d_ref = {t: 2 * 0.9 - sum(ref.accuracy[t]) for t in ("fog", "contrast")}
    r = {t: (2 * 0.85 - sum(new.accuracy[t])) / d_ref[t] for t in d_ref}
    var = v(0.85) * sum(2 / (2 * d_ref[t]) for t in d_ref) ** 2
    var += v(0.9) * sum(r[t] * 2 / (2 * d_ref[t]) for t in d_ref) ** 2
    for t in d_ref:
        var += sum(v(a) for a in new.accuracy[t]) / (2 * d_ref[t]) ** 2
        var += sum(v(a) for a in ref.accuracy[t]) * (r[t] / (2 * d_ref[t])) ** 2
    assert c.robustness_se == pytest.approx(np.sqrt(var), rel=1e-12)
    assert c.accuracy_se == pytest.approx(np.sqrt(v(0.85) + v(0.9)) / 0.9, rel=1e-12)
    # independent binomial draws of every accuracy: the spread of robustness matches
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(3000):

        def sample(r: CorruptionResult) -> CorruptionResult:
            acc = {t: tuple(rng.binomial(n, a) / n for a in v_) for t, v_ in r.accuracy.items()}
            return CorruptionResult(rng.binomial(n, r.clean_accuracy) / n, acc, n, r.severities, 0)

        draws.append(compare(sample(new), sample(ref)).robustness)
    assert float(np.std(draws)) == pytest.approx(c.robustness_se, rel=0.1)


def test_types_the_reference_is_not_measurably_hurt_by_can_be_left_out() -> None:
    n = 1000
    # fog costs the reference 0.3 (many se), brightness 0.005 (well within one se ≈ 0.05)
    ref = CorruptionResult(0.9, {"fog": (0.8, 0.7), "brightness": (0.9, 0.895)}, n, (1, 5), 0)
    new = CorruptionResult(0.9, {"fog": (0.85, 0.8), "brightness": (0.9, 0.85)}, n, (1, 5), 0)
    every = compare(new, ref)
    assert every.relative_ce["brightness"] == pytest.approx(0.05 / 0.005)  # noise dominates
    strict = compare(new, ref, min_delta_z=2.0)
    assert math.isnan(strict.relative_ce["brightness"]) and strict.undefined_relative == (
        "brightness",
    )
    assert strict.rmce == pytest.approx(0.15 / 0.3)
    assert strict.ce == every.ce  # Hendrycks' CE is not a ratio of losses: unchanged


def _from_points(
    correct: np.ndarray, names: tuple[str, ...], severities: tuple[int, ...]
) -> CorruptionResult:

    acc = correct.mean(1)
    s = len(severities)
    table = {
        t: tuple(float(a) for a in acc[1 + i * s : 1 + (i + 1) * s]) for i, t in enumerate(names)
    }
    return CorruptionResult(
        float(acc[0]), table, correct.shape[1], severities, 0, correct=correct.astype(np.uint8)
    )


def test_paired_bootstrap_standard_errors_match_resampling_the_points() -> None:
    """Two models that share most of their mistakes: the paired bootstrap's se of the
    robustness coordinate matches its spread over fresh samples of points, and is far below
    the independent delta-method's; a model against itself has se 0."""

    names, sev = ("fog", "contrast"), (1, 5)
    rng = np.random.default_rng(1)
    pop = 50_000
    hard = rng.random((5, pop))  # per point and copy: how hard it is
    ref_pop = hard > np.array([0.1, 0.3, 0.5, 0.2, 0.45])[:, None]  # clean, fog 1/5, contrast 1/5
    new_pop = ref_pop | (rng.random((5, pop)) < 0.08)  # the new model fixes a few mistakes
    new_pop[0] = ref_pop[0]  # same clean accuracy
    n = 800

    def sample(idx: np.ndarray) -> tuple[CorruptionResult, CorruptionResult]:
        return _from_points(new_pop[:, idx], names, sev), _from_points(ref_pop[:, idx], names, sev)

    new, ref = sample(rng.choice(pop, n, replace=False))
    c = compare(new, ref, bootstrap=400, seed=0)
    assert c.se_method.startswith("paired bootstrap")
    spread = np.std(
        [compare(*sample(rng.choice(pop, n, replace=False))).robustness for _ in range(400)]
    )
    assert c.robustness_se == pytest.approx(spread, rel=0.25)
    assert c.robustness_se < 0.5 * compare(new, ref).robustness_se  # the delta method's
    same = compare(ref, ref, bootstrap=100)
    assert same.robustness == 0 and same.robustness_se == 0 and same.accuracy_se == 0
