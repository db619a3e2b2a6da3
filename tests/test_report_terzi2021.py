"""The terzi2021 report section on synthetic studies whose verdicts are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustscope.report import StudyData, write_report
from robustscope.report.evidence import Verdict
from robustscope.report.section import ReportContext
from robustscope.report.sections import terzi2021 as sec


def study(means: dict[float, float], *, spread: float = 5.0, n: int = 32) -> StudyData:
    """One ℓ2 PGD family whose effective information per example is N(mean, spread²)."""
    rng = np.random.default_rng(0)
    runs, metrics, probes, arrays = [], {}, {}, {}
    for i, (eps, mean) in enumerate(means.items()):
        rid = f"r{i}"
        runs.append(
            {"run_id": rid, "model": "cnn", "method": "standard" if eps == 0 else "pgd",
             "family": "pgd", "eps": eps, "norm": "l2"}
        )  # fmt: skip
        metrics[rid] = {"clean_accuracy": 0.9 - 0.05 * i}
        points = rng.normal(mean, spread, n)
        arrays[(rid, "effective_information", "information")] = points
        probes[rid] = {"effective_information/information_mean": points.mean(),
                       "effective_information/rank_mean": 40.0}  # fmt: skip
    return StudyData.from_frames(
        spec={"name": "t", "dataset": "fashion-mnist"},
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        probes=pd.DataFrame.from_dict(probes, orient="index"),
        arrays=arrays,
    )


def test_information_claim_holds_when_every_robust_member_is_clearly_below() -> None:
    f = sec.information_finding(ReportContext(study({0.0: -200, 0.5: -215, 2.0: -240})))
    assert f.holds is True, f.evidence
    assert "cnn · pgd: standard -2" in f.evidence


def test_information_claim_fails_when_a_member_is_not_below_beyond_noise() -> None:
    # ε = 0.5 is 1 nat below: within 2 se of 32 points with spread 5 (≈ 2.5)
    f = sec.information_finding(ReportContext(study({0.0: -200, 0.5: -201, 2.0: -240})))
    assert f.verdict is Verdict.INCONCLUSIVE  # not below beyond noise: undecided, not refuted
    up = sec.information_finding(ReportContext(study({0.0: -200, 0.5: -180})))
    assert up.verdict is Verdict.FAILS  # above beyond noise: the claim does not hold


def test_without_the_probe_the_claim_is_not_tested_and_the_section_is_off(tmp_path: Path) -> None:
    data = StudyData.from_frames(spec={"name": "t"}, runs=[{"run_id": "a"}])
    ctx = ReportContext(data)
    assert sec.information_finding(ctx).holds is None
    assert not sec.Terzi2021().applies(ctx)
    with_probe = study({0.0: -200, 1.0: -230})
    assert sec.Terzi2021().applies(ReportContext(with_probe))
    text = write_report(tmp_path, data=with_probe).read_text()
    assert "terzi2021: information, transferability and inversion" in text
    assert (tmp_path / "figures" / "terzi2021_information.png").is_file()


def transfer_study(
    gains: dict[float, list[float]], *, targets: list[str], n: int = 1000
) -> StudyData:
    """A family whose standard member transfers at 80 % to every target and each robust
    member at 80 % + its gain per target; distances 1, 2, 3, …"""
    runs, metrics, probes, arrays = [], {}, {}, {}
    for i, (eps, gain) in enumerate({0.0: [0.0] * len(targets), **gains}.items()):
        rid = f"r{i}"
        runs.append(
            {"run_id": rid, "model": "cnn", "method": "standard" if eps == 0 else "pgd",
             "family": "pgd", "eps": eps, "norm": "l2"}
        )  # fmt: skip
        metrics[rid] = {"clean_accuracy": 0.9}
        arrays[(rid, "transfer", "accuracy")] = 0.8 + np.asarray(gain)
        arrays[(rid, "transfer", "distance")] = np.arange(1.0, len(targets) + 1)
        probes[rid] = {"transfer/n_test": float(n)}
    spec = {
        "name": "t",
        "dataset": "fashion-mnist",
        "probes": {"run": [{"name": "transfer", "options": {"targets": ",".join(targets)}}]},
    }
    return StudyData.from_frames(
        spec=spec,
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        probes=pd.DataFrame.from_dict(probes, orient="index"),
        arrays=arrays,
    )


def test_transfer_claim_holds_when_a_robust_member_beats_standard_on_every_target() -> None:
    data = transfer_study({0.5: [0.01, 0.0], 2.0: [0.06, 0.05]}, targets=["mnist-5k", "digits"])
    f = sec.transfer_finding(ReportContext(data))
    assert f.holds is True, f.evidence
    assert "mnist-5k: 80.0 → 86.0 % (ε = 2)" in f.evidence
    # +1 point on 1,000 points is within noise (se ≈ 1.8 points): inconclusive
    flat = transfer_study({0.5: [0.01, 0.06]}, targets=["mnist-5k", "digits"])
    assert sec.transfer_finding(ReportContext(flat)).verdict is Verdict.INCONCLUSIVE
    worse = transfer_study({0.5: [-0.10, 0.06]}, targets=["mnist-5k", "digits"])
    assert sec.transfer_finding(ReportContext(worse)).verdict is Verdict.FAILS


def test_distance_claim_needs_five_targets_and_a_significant_rank_correlation() -> None:
    few = transfer_study({1.0: [0.01, 0.02, 0.03]}, targets=["a", "b", "c"])
    assert sec.distance_finding(ReportContext(few)).holds is None
    names = ["a", "b", "c", "d", "e", "f"]
    rising = transfer_study({1.0: [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]}, targets=names)
    assert sec.distance_finding(ReportContext(rising)).holds is True
    falling = transfer_study({1.0: [0.05, 0.04, 0.03, 0.02, 0.01, 0.0]}, targets=names)
    assert sec.distance_finding(ReportContext(falling)).holds is False
    assert sec.transfer_targets({}) == ["mnist-5k", "digits"]  # the probe's default


def inversion_study(
    psnr_means: dict[float, float], *, n: int = 8, once_helps: bool = True
) -> StudyData:
    rng = np.random.default_rng(1)
    runs, metrics, arrays = [], {}, {}
    for i, (eps, mean) in enumerate(psnr_means.items()):
        rid = f"r{i}"
        runs.append(
            {"run_id": rid, "model": "cnn", "method": "standard" if eps == 0 else "pgd",
             "family": "pgd", "eps": eps, "norm": "l2"}
        )  # fmt: skip
        metrics[rid] = {"clean_accuracy": 0.9}
        arrays[(rid, "inversion", "psnr")] = rng.normal(mean, 1.0, n)
        arrays[(rid, "inversion", "loss_curve")] = np.geomspace(1, 0.1 / (i + 1), 11)
        arrays[(rid, "inversion", "effective_curve")] = np.geomspace(2, 0.2, 11)
        arrays[(rid, "inversion", "noise_once_curve")] = np.geomspace(1, 0.05, 11)
        plain = rng.normal(0.5, 0.05, n)
        arrays[(rid, "inversion", "final_loss")] = plain
        arrays[(rid, "inversion", "noise_once_loss")] = plain - (0.2 if once_helps else 0.0)
        for key in ("images", "saliency", "large_eps"):
            arrays[(rid, "visual_evidence", key)] = rng.random((n, 1, 8, 8)).astype(np.float32)
        arrays[(rid, "visual_evidence", "tsne")] = rng.normal(size=(30, 2))
        arrays[(rid, "visual_evidence", "tsne_labels")] = rng.integers(0, 10, 30).astype(float)
        for key in ("originals", "reconstructions", "effective", "noise_once"):
            arrays[(rid, "inversion", key)] = rng.random((n, 1, 8, 8)).astype(np.float32)
    return StudyData.from_frames(
        spec={"name": "t", "dataset": "fashion-mnist"},
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        probes=pd.DataFrame(
            {"inversion/n": [float(n)] * len(runs)}, index=[r["run_id"] for r in runs]
        ),
        arrays=arrays,
    )


def test_inversion_claim_and_figures(tmp_path: Path) -> None:
    good = inversion_study({0.0: 8.0, 1.0: 12.0, 3.0: 15.0})
    f = sec.inversion_finding(ReportContext(good))
    assert f.holds is True and "standard 8." in f.evidence
    flat = sec.inversion_finding(ReportContext(inversion_study({0.0: 8.0, 1.0: 7.9})))
    assert flat.verdict is Verdict.INCONCLUSIVE
    worse = sec.inversion_finding(ReportContext(inversion_study({0.0: 8.0, 1.0: 4.0})))
    assert worse.verdict is Verdict.FAILS
    assert sec.noise_once_finding(ReportContext(good)).holds is True
    same = inversion_study({0.0: 8.0, 1.0: 12.0}, once_helps=False)
    assert sec.noise_once_finding(ReportContext(same)).verdict is Verdict.INCONCLUSIVE
    write_report(tmp_path, data=good)
    for name in ("terzi2021_inversion", "terzi2021_images", "terzi2021_evidence", "terzi2021_tsne"):
        assert (tmp_path / "figures" / f"{name}.png").is_file()
