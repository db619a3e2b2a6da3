"""Claims as the papers state them (issue 15 §5): each Finding read in the regime its paper
states, on synthetic studies where it holds, fails or cannot be tested by construction."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from robustscope.report import StudyData, compute_findings
from robustscope.report.evidence import Verdict
from robustscope.report.findings import Finding
from robustscope.studies.store.vocab import POINTS_PROBE


def _finding(data: StudyData, start: str) -> Finding:
    return next(f for f in compute_findings(data) if f.claim.startswith(start))


def _runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r.setdefault("method", "standard" if r["eps"] == 0 else "pgd")
        r.setdefault("family", "pgd")
    return rows


def test_capacity_claim_reads_the_models_in_the_spec_order() -> None:
    """shi2020 Table 1: clean and robust accuracy of TRADES rise together with capacity."""
    rng = np.random.default_rng(0)
    models = ["vgg-linear", "vgg-half", "vgg"]

    def study(clean: list[float], robust: list[float]) -> StudyData:
        runs, metrics, attacks, arrays = [], {}, [], {}
        for m, c, r in zip(models, clean, robust, strict=True):
            rid = f"t-{m}"
            runs.append({"run_id": rid, "model": m, "method": "trades", "family": "trades",
                         "eps": 0.1, "seed": 0})  # fmt: skip
            cc = rng.random(1000) < c
            rr = cc & (rng.random(1000) < r / c)
            metrics[rid] = {"clean_accuracy": cc.mean()}
            arrays[(rid, POINTS_PROBE, "clean")] = cc
            arrays[(rid, POINTS_PROBE, "pgd-linf")] = rr[None, :]
            arrays[(rid, POINTS_PROBE, "pgd-linf/eps")] = np.array([0.1])
            attacks.append({"run_id": rid, "label": "pgd-linf", "attack": "pgd", "norm": "linf",
                            "params": "{}", "attack_eps": 0.1, "quantity": "robust_accuracy",
                            "value": rr.mean(), "n": 1000})  # fmt: skip
        spec = {"name": "cap", "models": [{"model": "vgg13", "label": m} for m in models],
                "evaluation": {"n": 1000, "attacks": [{"attack": "pgd", "eps": [0.1]}]}}  # fmt: skip
        return StudyData.from_frames(
            spec=spec,
            runs=runs,
            metrics=pd.DataFrame.from_dict(metrics, orient="index"),
            attacks=pd.DataFrame(attacks),
            arrays=arrays,
        )

    up = _finding(study([0.35, 0.70, 0.72], [0.17, 0.38, 0.42]), "With more model capacity")
    assert up.verdict is Verdict.HOLDS
    assert "trades at ε = 0.1, vgg-linear → vgg-half → vgg" in up.evidence
    # standard accuracy up, robust accuracy down: the claim is about both together
    split = _finding(study([0.35, 0.70, 0.72], [0.40, 0.30, 0.20]), "With more model capacity")
    assert split.verdict is Verdict.FAILS


def _tracked_study(cckl: list[float]) -> StudyData:
    runs = _runs([{"run_id": "s", "model": "m", "eps": 0.0, "seed": 0}])
    history = [
        {"run_id": "s", "epoch": e + 1, "track/test/clean_accuracy": 0.5 + 0.05 * e,
         "track/test/cckl_value": c}
        for e, c in enumerate(cckl)
    ]  # fmt: skip
    return StudyData.from_frames(
        spec={"name": "t"},
        runs=runs,
        metrics=pd.DataFrame({"clean_accuracy": [0.8]}, index=["s"]),
        history=pd.DataFrame(history),
    )


def test_cckl_over_training_epochs() -> None:
    """shi2020 Fig. 2: CCKL over epochs tracks test accuracy (a permutation test of ρ)."""
    claim = "Over the epochs of training, CCKL"
    assert _finding(_tracked_study([1, 2, 3, 4, 5]), claim).verdict is Verdict.HOLDS
    assert _finding(_tracked_study([5, 4, 3, 2, 1]), claim).verdict is Verdict.FAILS
    assert _finding(_tracked_study([3, 1, 4, 5, 2]), claim).verdict is Verdict.INCONCLUSIVE
    untracked = _finding(_tracked_study([1, 2]), claim)  # two epochs: too few
    assert untracked.verdict is Verdict.UNTESTED


def test_weight_norm_claims_only_in_their_regime() -> None:
    """terzi2021 Fig. 5 for ℓ2 training at ε ≥ 1 only; tsipras2019 Table 5 on linear models."""
    rows = _runs(
        [
            {"run_id": f"{m}{i}", "model": m, "eps": e, "norm": "l2", "seed": 0}
            for m in ("linear", "cnn")
            for i, e in enumerate((0.0, 0.5, 1.0, 2.0, 4.0))
        ]
    )
    l2 = {f"{m}{i}": v for m in ("linear", "cnn") for i, v in enumerate((5, 6, 7, 4, 3))}
    l1 = {f"linear{i}": v for i, v in enumerate((40.0, 30.0, 20.0, 15.0, 14.0))}
    l1 |= {f"cnn{i}": v for i, v in enumerate((100.0, 200.0, 300.0, 400.0, 500.0))}
    probes = pd.DataFrame({"weight_norms/l2_total": l2, "weight_norms/l1_total": l1})
    spec = {"name": "w", "models": [{"model": "linear"}, {"model": "cnn"}]}
    data = StudyData.from_frames(spec=spec, runs=rows, probes=probes)
    regime = _finding(data, "Under ℓ2 adversarial training with ε > 1")
    # read on ε ∈ {1, 2, 4} only (7 → 4 → 3); the rise below ε = 1 is not part of it
    assert "7 → 4 → 3 at ε = 1, 2, 4" in regime.evidence
    assert "5 → 6" not in regime.evidence
    linear = _finding(data, "The ℓ1 norm of the weights of adversarially trained linear")
    assert linear.verdict is Verdict.HOLDS and "cnn" not in linear.evidence
    linf = StudyData.from_frames(
        spec=spec, runs=[dict(r, norm="linf") for r in rows], probes=probes
    )
    assert _finding(linf, "Under ℓ2 adversarial").verdict is Verdict.UNTESTED


def test_wen2020_loss_and_error_both_halves_on_cifar_only() -> None:
    rng = np.random.default_rng(1)
    runs, metrics, arrays, probes = [], {}, {}, {}
    for i, eps in enumerate((0.0, 4 / 255, 8 / 255, 16 / 255)):
        rid = f"r{i}"
        runs.append({"run_id": rid, "model": "resnet", "eps": eps, "seed": 0})
        correct = rng.random(2000) < 0.9 - 0.05 * i
        loss = rng.gamma(2.0, 0.3 - 0.05 * i, size=2000)
        metrics[rid] = {"clean_accuracy": correct.mean()}
        probes[rid] = {"margins/test/loss_mean": loss.mean()}
        arrays[(rid, POINTS_PROBE, "clean")] = correct
        arrays[(rid, "margins", "test/loss")] = loss

    def study(dataset: str) -> StudyData:
        return StudyData.from_frames(
            spec={
                "name": "w",
                "dataset": dataset,
                "evaluation": {"n": 2000},
                "probes": {"n": 2000},
            },
            runs=_runs(runs),
            metrics=pd.DataFrame.from_dict(metrics, orient="index"),
            probes=pd.DataFrame.from_dict(probes, orient="index"),
            arrays=arrays,
        )

    claim = "The test loss falls as ε grows while the test error rises"
    on_cifar = _finding(study("cifar10"), claim)
    assert on_cifar.verdict is Verdict.HOLDS
    assert (
        "test loss:" in on_cifar.evidence and "clean accuracy (1 − test error)" in on_cifar.evidence
    )
    elsewhere = _finding(study("fashion-mnist"), claim)
    assert elsewhere.verdict is Verdict.UNTESTED and "CIFAR-10/100 only" in elsewhere.evidence


def test_no_fallback_column_changes_the_claim() -> None:
    """Confidence is the mean max-probability: a study without it is not tested, never read
    from the true-class probability instead."""
    runs = _runs([{"run_id": f"r{i}", "model": "m", "eps": e, "seed": 0}
                  for i, e in enumerate((0.0, 0.1, 0.2, 0.3))])  # fmt: skip
    probes = pd.DataFrame({"margins/test/p_true_mean": [0.9, 0.8, 0.7, 0.6]},
                          index=[f"r{i}" for i in range(4)])  # fmt: skip
    data = StudyData.from_frames(spec={"name": "c"}, runs=runs, probes=probes)
    f = _finding(data, "Predictions become less confident")
    assert f.verdict is Verdict.UNTESTED and "confidence/mean_max_prob" in f.evidence


def test_g1_is_resampled_over_the_shared_pairs() -> None:
    """shi2020 §3.3: G1 of the robust model below the standard one's — decided on the
    taylor_split probe's per-pair values (the same pairs for every model); without them and
    with one seed there is nothing to resample."""
    rng = np.random.default_rng(2)
    runs = _runs([{"run_id": f"r{i}", "model": "m", "eps": e, "seed": 0}
                  for i, e in enumerate((0.0, 0.1))])  # fmt: skip
    g1 = {"r0": rng.gamma(2.0, 1.0, 256), "r1": rng.gamma(2.0, 0.1, 256)}
    probes = pd.DataFrame({"taylor_split/g1_mean": {k: v.mean() for k, v in g1.items()}})
    arrays = {(k, "taylor_split", "g1"): v for k, v in g1.items()}
    claim = "Adversarial training keeps the model from using the non-robust component"
    with_pairs = StudyData.from_frames(spec={"name": "g"}, runs=runs, probes=probes, arrays=arrays)
    assert _finding(with_pairs, claim).verdict is Verdict.HOLDS
    bare = StudyData.from_frames(spec={"name": "g"}, runs=runs, probes=probes)
    assert _finding(bare, claim).verdict is Verdict.INCONCLUSIVE
