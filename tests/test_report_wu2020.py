"""The wu2020 report section on synthetic sweeps whose verdicts are known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robustscope.report import StudyData, write_report
from robustscope.report.evidence import Verdict
from robustscope.report.section import ReportContext
from robustscope.report.sections import wu2020 as sec

N = 1000
PERCENTS = np.array([0.0, 1.0, 5.0, 20.0])
SPEC: dict[str, Any] = {
    "name": "wu",
    "dataset": "fashion-mnist",
    "evaluation": {"n": N, "attacks": [{"attack": "pgd", "eps": [0, 0.1]}]},
    "methods": [{"method": "pgd", "eps": [0, 0.1, 0.2]}],
    "posthoc": {
        "percents": [1, 5, 20],
        "n": N,
        "transferred": [{"attack": "fgsm", "eps": [0, 0.05, 0.1]}],
        "adaptive": [{"attack": "deepfool", "norm": "l2", "eps": [0]}],
    },
}


TYPES = np.array([0.0, 3.0, 10.0])  # gaussian_noise, defocus_blur, brightness
SEVERITIES = np.array([1.0, 5.0])
REF_TABLE = np.array([[0.7, 0.5], [0.8, 0.6], [0.85, 0.7]])  # δ = 0.6, 0.4, 0.25 at clean 0.9
#: the adversarially trained runs' tables: δ = (0.3, 0.15, 0.07) at 0.8, (0.15, 0.06, 0.03) at 0.7
RUN_TABLES = {
    "std": (0.9, REF_TABLE),
    "a": (0.8, np.array([[0.7, 0.6], [0.75, 0.7], [0.78, 0.75]])),
    "b": (0.7, np.array([[0.65, 0.6], [0.68, 0.66], [0.69, 0.68]])),
}


def robust_table(clean: float) -> np.ndarray:
    """A table at clean accuracy ``clean`` whose δ are half the reference's (robustness +0.5)."""
    return clean - (0.9 - REF_TABLE) / 2


def study(
    *,
    posthoc_above: bool,
    m3_helps: bool,
    transfer_gain: float,
    corruptions: bool = True,
    broken_m1: bool = False,
) -> StudyData:
    """A standard run (90 % clean, 20 % robust), two PGD runs (80/45, 70/55) and a sweep of
    the standard run: members trade clean accuracy 90 → 89.9 → 88.5 → 78 % over p; their robust
    accuracy is above the PGD frontier when ``posthoc_above``, far below otherwise."""
    family = {"std": (0.0, 0.90, 0.20), "a": (0.1, 0.80, 0.45), "b": (0.2, 0.70, 0.55)}
    runs, metrics, attacks = [], {}, []
    for rid, (eps, clean, robust) in family.items():
        runs.append(
            {"run_id": rid, "model": "cnn", "method": "standard" if eps == 0 else "pgd",
             "family": "pgd", "eps": eps, "seed": 0}
        )  # fmt: skip
        metrics[rid] = {"clean_accuracy": clean}
        attacks.append(
            {"run_id": rid, "label": "pgd-linf", "attack": "pgd", "norm": "linf",
             "params": "{}", "attack_eps": 0.1, "quantity": "robust_accuracy",
             "value": robust, "n": N}
        )  # fmt: skip
    clean = np.tile([0.90, 0.899, 0.885, 0.78], (3, 1))
    corr = np.tile(REF_TABLE, (3, 4, 1, 1)) - (0.9 - clean)[:, :, None, None]  # same δ as p = 0
    if posthoc_above:  # M2 at p = 1 more accurate and more robust; every p = 20 member robust
        clean[1, 1] = 0.95
        corr[1, 1] = robust_table(0.95)
        corr[:, 3] = robust_table(0.78)
    else:  # M1 at p = 1: more robust at the same accuracy (the paper's AlexNet(M1P30))
        corr[0, 1] = robust_table(0.899)
    if broken_m1:  # M1 at p = 20 broke the model: chance accuracy everywhere (δ = 0)
        clean[0, 3] = 0.1
        corr[0, 3] = 0.1
    robust_members = np.tile(
        [0.20, 0.20, 0.40, 0.60] if posthoc_above else [0.2, 0.2, 0.21, 0.22], (3, 1)
    )
    rob = np.stack([clean, robust_members], axis=-1)
    trans = np.stack([clean, clean - 0.3, clean - 0.6], axis=-1)
    trans[:, 1:, 2] += transfer_gain
    if broken_m1:  # the broken member answers one class: 50 % "accuracy" on any examples
        trans[0, 3] = 0.5
    rng = np.random.default_rng(0)
    base = rng.exponential(1.0, N)
    points = np.tile(base, (3, 4, 1))
    if m3_helps:
        points[2, 1:] += 0.2 + 0.01 * rng.standard_normal((3, N))
    arrays: dict[str, np.ndarray] = {
        "percents": PERCENTS,
        "clean_accuracy": clean,
        "dropped": np.tile([0, 1, 3, 9], (3, 1)),
        "transferred/fgsm-linf": trans,
        "transferred_eps/fgsm-linf": np.array([0, 0.05, 0.1]),
        "robust/pgd-linf": rob,
        "robust_eps/pgd-linf": np.array([0.0, 0.1]),
        "challenge/deepfool-l2": points.mean(-1),
        "challenge_points/deepfool-l2": points,
        "noise": np.full((3, 4), -0.01),
    }
    table = {("std", "posthoc", k): v for k, v in arrays.items()}
    probe_rows: dict[str, dict[str, float]] = {
        rid: {"noise_robustness/score": -0.02 * i, "noise_robustness/std_error": 0.001}
        for i, rid in enumerate(family)
    }
    probe_rows["std"]["posthoc/n"] = float(N)
    if corruptions:
        table.update(
            {("std", "posthoc", "corruption_accuracy"): corr,
             ("std", "posthoc", "corruption_types"): TYPES,
             ("std", "posthoc", "corruption_severities"): SEVERITIES}
        )  # fmt: skip
        for rid, (c, acc) in RUN_TABLES.items():
            table[(rid, "corruptions", "accuracy")] = acc
            table[(rid, "corruptions", "types")] = TYPES
            table[(rid, "corruptions", "severities")] = SEVERITIES
            probe_rows[rid].update({"corruptions/clean_accuracy": c, "corruptions/n": float(N)})
    return StudyData.from_frames(
        spec=SPEC,
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        probes=pd.DataFrame.from_dict(probe_rows, orient="index"),
        arrays=table,
        attacks=pd.DataFrame(attacks),
    )


def findings(data: StudyData) -> dict[str, Any]:
    ctx = ReportContext(data)
    found = sec.sweeps(ctx)
    assert len(found) == 1 and found[0].run_id == "std"
    return {
        "fig1": sec.fig1_finding(ctx, found),
        "table1": sec.table1_finding(ctx, found),
        "frontier": sec.frontier_finding(ctx, found),
        "fig2": sec.fig2_finding(ctx, found),
        "m1": sec.m1_corruption_finding(ctx, found),
        "corruption_frontier": sec.corruption_frontier_finding(ctx, found),
    }


def test_claims_hold_on_a_study_following_the_paper_and_below_the_frontier() -> None:
    f = findings(study(posthoc_above=False, m3_helps=True, transfer_gain=0.2))
    assert f["fig1"].holds is True
    assert f["table1"].holds is True, f["table1"].evidence
    assert f["frontier"].holds is True, f["frontier"].evidence
    # p = 1 and 5 kept their clean accuracy (within 2 se of 90 %), so they are not compared
    assert "p = 20:" in f["frontier"].evidence
    assert "p = 1:" not in f["frontier"].evidence and "p = 5:" not in f["frontier"].evidence
    assert f["fig2"].holds is True, f["fig2"].evidence
    assert f["m1"].holds is True, f["m1"].evidence
    assert f["corruption_frontier"].holds is True, f["corruption_frontier"].evidence


def test_claims_fail_on_a_study_contradicting_them() -> None:
    f = findings(study(posthoc_above=True, m3_helps=False, transfer_gain=0.0))
    assert f["fig1"].verdict is Verdict.INCONCLUSIVE  # no gain: not shown, not refuted
    assert f["table1"].verdict is Verdict.INCONCLUSIVE  # M3 changes nothing: not refuted
    assert f["frontier"].holds is False
    assert f["fig2"].holds is False and "M2 p = 1" in f["fig2"].evidence
    assert f["m1"].verdict is Verdict.INCONCLUSIVE, f["m1"].evidence
    # post-hoc at +0.50 vs +0.66 for adversarial training, within noise: not shown
    assert f["corruption_frontier"].verdict is Verdict.INCONCLUSIVE


def test_a_member_the_transform_broke_is_no_evidence() -> None:
    # at chance accuracy nothing changes under corruptions: robustness +1, "more robust"
    f = findings(study(posthoc_above=True, m3_helps=False, transfer_gain=0.0, broken_m1=True))
    assert f["m1"].holds is not True and "p = 20" not in f["m1"].evidence
    assert "M1: " in f["fig1"].evidence and "at p = 20" not in f["fig1"].evidence
    good = findings(study(posthoc_above=False, m3_helps=True, transfer_gain=0.2, broken_m1=True))
    assert good["m1"].holds is True and "M1 p = 20" not in good["corruption_frontier"].evidence


def test_without_corruption_results_their_claims_are_not_tested() -> None:
    f = findings(study(posthoc_above=False, m3_helps=True, transfer_gain=0.2, corruptions=False))
    assert [f[k].holds for k in ("fig2", "m1", "corruption_frontier")] == [None, None, None]
    assert f["fig1"].holds is True


def test_the_coordinates_are_those_of_compare() -> None:
    from robustscope.corruptions import CORRUPTIONS, CorruptionResult, compare

    data = study(posthoc_above=False, m3_helps=True, transfer_gain=0.2)
    ctx = ReportContext(data)
    points = {p.name: p for p in sec.corruption_points(ctx, sec.sweeps(ctx)[0])}
    names = [CORRUPTIONS[int(i)] for i in TYPES]

    def result(clean: float, table: np.ndarray) -> CorruptionResult:
        return CorruptionResult(
            clean, {t: tuple(table[i]) for i, t in enumerate(names)}, N, (1, 5), 0
        )

    ref = result(0.9, REF_TABLE)
    a = points["a"].comparison
    assert a == compare(result(*RUN_TABLES["a"]), ref)
    # by hand: r_t = δ_t(a)/δ_t(ref) = (0.3/0.6, 0.15/0.4, 0.07/0.25)
    assert a.robustness == pytest.approx(1 - (0.5 + 0.375 + 0.28) / 3)
    assert a.accuracy == pytest.approx((0.8 - 0.9) / 0.9)
    assert points["M1 p = 1"].comparison.robustness > 0.4


def test_a_small_transferred_gain_within_noise_does_not_count() -> None:
    # 0.3 → 0.31 on 1,000 points is within 2 standard errors (≈ 0.029): inconclusive
    small = findings(study(posthoc_above=False, m3_helps=True, transfer_gain=0.01))["fig1"]
    assert small.verdict is Verdict.INCONCLUSIVE


def test_without_a_sweep_the_claims_are_not_tested_and_the_section_is_off(tmp_path: Path) -> None:
    spec = {k: v for k, v in SPEC.items() if k != "posthoc"}
    data = StudyData.from_frames(spec=spec, runs=[{"run_id": "x"}])
    ctx = ReportContext(data)
    assert not sec.Wu2020().applies(ctx)
    assert [f.holds for f in sec.Wu2020().findings(ctx)] == [None] * 6


def test_the_report_draws_the_transferred_curves_frontier_and_table(tmp_path: Path) -> None:
    data = study(posthoc_above=False, m3_helps=True, transfer_gain=0.2)
    page = write_report(tmp_path, data=data)
    text = Path(page).read_text()
    assert "wu2020: post-hoc robustification" in text and "score p = 0" in text
    assert (tmp_path / "figures" / "wu2020_transferred.png").is_file()
    assert (tmp_path / "figures" / "wu2020_frontier.png").is_file()
    assert (tmp_path / "figures" / "wu2020_corruptions.png").is_file()
    assert "RmCE(ref) − RmCE" in text
    assert "eq. (4) of each member" in text and "eq. (4) of each trained run" in text


@pytest.mark.parametrize("p", [1.0, 5.0, 20.0])
def test_table1_changes_are_paired_differences(p: float) -> None:
    data = study(posthoc_above=False, m3_helps=True, transfer_gain=0.2)
    sw = sec.sweeps(ReportContext(data))[0]
    t = sec.challenge_change(sw, "deepfool-l2")
    row = t[(t["method"] == "m3") & (t["p"] == p)].iloc[0]
    points = sw.arrays["challenge_points/deepfool-l2"]
    j = list(sw.percents).index(p)
    diff = points[2, j] - points[2, 0]
    assert row["delta"] == pytest.approx(diff.mean())
    assert row["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(N))
