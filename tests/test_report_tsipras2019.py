"""The tsipras2019 theory section (issue 12 §4): its Theorem 2.1 verdict on trained runs, the
Theorem 2.2 and App. E findings, and its figures, from synthetic frames."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from robustscope.report import StudyData
from robustscope.report.section import SECTIONS, ReportContext
from robustscope.report.sections import tsipras2019 as sec

SPEC = {
    "name": "t",
    "dataset": "tsipras",
    "dataset_params": {"d": 100, "p": 0.95, "eta": 0.4},
    "evaluation": {"n": 2000},
}


def _study(points: dict[str, tuple[float, float, float]], spec: dict[str, Any] = SPEC) -> StudyData:
    """Runs ``label → (training ε, clean accuracy, robust accuracy at ℓ∞ ε = 0.8)``."""
    runs, metrics, attacks = [], {}, []
    for i, (label, (eps, clean, robust)) in enumerate(points.items()):
        rid = f"r{i}"
        runs.append(
            {
                "run_id": rid,
                "label": label,
                "model": "linear",
                "method": "standard" if eps == 0 else "pgd",
                "family": "pgd",
                "eps": eps,
                "seed": 0,
                "status": "done",
            }
        )
        metrics[rid] = {"clean_accuracy": clean}
        attacks.append(
            {
                "run_id": rid,
                "label": "pgd-linf",
                "attack": "pgd",
                "norm": "linf",
                "params": "{}",
                "attack_eps": 0.8,
                "quantity": "robust_accuracy",
                "value": robust,
                "n": 2000,
            }
        )
    return StudyData.from_frames(
        spec=spec,
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        attacks=pd.DataFrame(attacks),
    )


GOOD = {
    "standard": (0.0, 0.999, 0.001),
    "robust": (0.8, 0.95, 0.95),
    "failed": (0.8, 0.51, 0.51),  # did not train: never evidence
}


def test_theorem21_holds_on_runs_inside_the_bound_and_ignores_failed_runs() -> None:
    ctx = ReportContext(_study(GOOD))
    dist = sec.distribution(SPEC)
    assert dist is not None
    eps, rows = sec.run_points(ctx, dist)
    assert eps == 0.8 and len(rows) == 2  # the run that did not train is not in the table
    assert "failed" not in set(rows["label"]) and "failed" in set(ctx.data.collapsed()["label"])
    finding = sec.theorem21_finding(dist, eps, rows)
    assert finding.holds is True
    assert "failed" not in finding.evidence


def test_theorem21_fails_on_a_run_above_the_bound() -> None:
    # 99 % clean allows at most 19 % robust (36 % with 4 se of slack): 60 % is beyond.
    bad = {**GOOD, "impossible": (0.4, 0.99, 0.60)}
    ctx = ReportContext(_study(bad))
    dist = sec.distribution(SPEC)
    assert dist is not None
    finding = sec.theorem21_finding(dist, *sec.run_points(ctx, dist))
    assert finding.holds is False and "impossible" in finding.evidence
    assert "stronger attack" in finding.evidence


def test_theorem21_not_tested_without_an_attack_at_2_eta() -> None:
    spec = {**SPEC, "dataset_params": {"d": 100, "p": 0.95, "eta": 0.45}}  # 2η = 0.9 > 0.8
    ctx = ReportContext(_study(GOOD, spec))
    findings = SECTIONS.get("tsipras2019").findings(ctx)
    assert findings[0].holds is None


def test_section_applies_only_to_tsipras_studies_and_draws_its_figures() -> None:
    section = SECTIONS.get("tsipras2019")
    other = ReportContext(_study(GOOD, {**SPEC, "dataset": "fashion-mnist"}))
    assert not section.applies(other)
    assert [f.holds for f in section.findings(other)] == [None]
    ctx = ReportContext(_study(GOOD))
    assert section.applies(ctx)
    figs = section.figures(ctx)
    assert [f.name for f in figs] == ["tsipras_frontier", "tsipras_mnist"]
    assert all(f.figure is not None for f in figs)
    page = section.html(ctx)
    assert "41.08" in page and "Table 5" in page
    claims = {f.paper: f.holds for f in section.findings(ctx)}
    assert claims["tsipras2019 Thm. 2.2"] is True
    assert claims["tsipras2019 Table 5 (41.08 vs 13.69)"] is True


@pytest.mark.parametrize(("p", "eta"), [(0.95, 0.3), (0.99, 0.4)])
def test_theorem22_not_tested_outside_its_hypotheses(p: float, eta: float) -> None:
    dist = sec.Distribution.create(100, p, eta)
    assert sec.svm_finding(dist, 2 * eta).holds is None


def test_the_strongest_attack_at_the_radius_is_read() -> None:
    data = _study({**GOOD, "masked": (0.2, 1.0, 0.54)})  # PGD-CE saturated: 54 % is impossible
    cw = data.attacks.assign(label="pgd-cw")
    cw.loc[cw["run_id"] == "r3", "value"] = 0.0  # the CW margin finds them
    both = StudyData.from_frames(
        spec=SPEC,
        runs=data.runs.reset_index().to_dict("records"),
        metrics=data.metrics,
        attacks=pd.concat([data.attacks, cw], ignore_index=True),
    )
    dist = sec.distribution(SPEC)
    assert dist is not None
    alone = sec.theorem21_finding(dist, *sec.run_points(ReportContext(data), dist))
    assert alone.holds is False and "masked" in alone.evidence
    eps, rows = sec.run_points(ReportContext(both), dist)
    assert float(rows.set_index("label").loc["masked", "robust"]) == 0.0
    assert sec.theorem21_finding(dist, eps, rows).holds is True
