"""The training-set-size axis of studies and the datasize report section (tsipras2019 Figs.
1, 6, 7): spec validation, planning, the store's ``train_size`` column, the section's figures,
table and claims on synthetic studies, and one tiny study end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from robustscope.report import ReportContext, StudyData, compute_findings, load_study, write_report
from robustscope.report.evidence import Verdict
from robustscope.report.sections import datasize
from robustscope.report.stats import series
from robustscope.studies import StudyError, load_spec, plan, preset, run_study
from robustscope.studies.plan import config_hash
from robustscope.studies.store import open_store
from robustscope.studies.store.vocab import POINTS_PROBE, TRAIN_SIZE

SMOKE = preset("smoke")


def _raw(**overrides: Any) -> dict[str, Any]:
    raw = SMOKE.model_dump(mode="json")
    raw["train"] = {k: v for k, v in raw["train"].items() if k != "train_subset"}
    raw.update(overrides)
    return raw


# ----------------------------------------------------------------------------- the spec


def test_train_sizes_are_sorted_and_deduplicated() -> None:
    spec = load_spec(_raw(train_sizes=[1000, 200, 1000, 500.0]))
    assert spec.train_sizes == [200, 500, 1000]
    assert spec.model_dump()["train_sizes"] == [200, 500, 1000]
    # unset: left out of the dump, so the spec (and its stored hash) is as before the axis
    assert "train_sizes" not in SMOKE.model_dump() and SMOKE.train_sizes is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0], "train_sizes: training-set size must be an integer ≥ 1, got 0"),
        ([100, -5], "train_sizes: training-set size must be an integer ≥ 1, got -5"),
        ([1.5], "train_sizes: training-set size must be an integer ≥ 1, got 1.5"),
        ([True], "train_sizes: training-set size must be an integer ≥ 1, got True"),
        (["many"], "train_sizes: training-set size must be an integer ≥ 1, got 'many'"),
        ([], "train_sizes: give at least one training-set size"),
        (500, "train_sizes: give a list of training-set sizes"),
    ],
)
def test_invalid_train_sizes_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(StudyError, match="invalid study spec") as info:
        load_spec(_raw(train_sizes=value))
    assert message in str(info.value)


def test_train_sizes_and_train_subset_are_refused_together() -> None:
    raw = _raw(train_sizes=[100, 200])
    raw["train"]["train_subset"] = 300
    with pytest.raises(StudyError, match=r"train_sizes and train\.train_subset both set"):
        load_spec(raw)


# ----------------------------------------------------------------------------- planning


def test_plan_has_one_run_per_size_with_its_train_subset() -> None:
    spec = load_spec(_raw(train_sizes=[64, 256], seeds=[0, 1]))
    runs = plan(spec)
    # 1 model × (ε = 0, 0.1) × 2 sizes × 2 seeds
    assert len(runs) == 2 * 2 * 2 and len({r.run_id for r in runs}) == len(runs)
    assert [(r.eps, r.train_size, r.seed) for r in runs] == [
        (e, n, s) for e in (0.0, 0.1) for n in (64, 256) for s in (0, 1)
    ]
    for r in runs:
        assert r.config.train_subset == r.train_size
        assert r.run_id == config_hash(r.config)[:12]
        assert f" n={r.train_size} " in r.label
    assert runs[0].label == "mlp32 standard ε=0 n=64 seed=0"
    # the run of size n is the run a spec with train.train_subset = n plans: same id
    single = load_spec(_raw(train={**_raw()["train"], "train_subset": 256}))
    ids = {r.run_id for r in plan(single)}
    assert ids == {r.run_id for r in runs if r.train_size == 256 and r.seed == 0}


def test_plan_without_the_axis_is_unchanged() -> None:
    """The smoke preset's ids and labels, as planned before the axis existed (c406849^)."""
    runs = plan(SMOKE)
    assert [r.run_id for r in runs] == ["7f2af8a26f2e", "960424f4e04f"]
    assert [r.label for r in runs] == ["mlp32 standard ε=0 seed=0", "mlp32 pgd ε=0.1 seed=0"]
    assert all(r.train_size is None and r.config.train_subset == 512 for r in runs)
    assert "train_size" not in runs[0].to_dict()


def test_dry_run_lists_the_plan_with_its_sizes(tmp_path: Path) -> None:
    spec = tmp_path / "sized.yaml"
    spec.write_text(json.dumps(_raw(name="sized", train_sizes=[64, 256])))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robustscope", "study", "--spec", str(spec), "--dry-run"]
    shown = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [(r["eps"], r[TRAIN_SIZE]) for r in rows] == [(0, 64), (0, 256), (0.1, 64), (0.1, 256)]
    table = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    flat = " ".join(table.stdout.split())
    assert "4 run(s) planned over 2 training-set sizes (64, 256)" in flat
    assert "train size" in flat and not (tmp_path / "runs").exists()  # nothing trained


# ----------------------------------------------------------------------------- the section


#: test points per synthetic run
N_POINTS = 2000


def _sized_study(
    clean: dict[tuple[float, int], float],
    *,
    seeds: tuple[int, ...] = (0,),
    failed: tuple[tuple[float, int], ...] = (),
    robust: bool = True,
) -> StudyData:
    """One model, PGD at the ε of ``clean`` ((ε, size) → clean accuracy) per seed; runs in
    ``failed`` failed (their recorded accuracy is garbage that must never be read)."""
    runs, metrics, attacks = [], {}, []
    arrays: dict[tuple[str, str, str], np.ndarray] = {}
    for (eps, size), acc in clean.items():
        for seed in seeds:
            rid = f"e{eps:g}n{size}s{seed}"
            method = "standard" if eps == 0 else "pgd"
            bad = (eps, size) in failed
            runs.append(
                {
                    "run_id": rid,
                    "label": f"cnn {method} ε={eps:g} n={size} seed={seed}",
                    "model": "cnn",
                    "method": method,
                    "family": "pgd",
                    "eps": eps,
                    TRAIN_SIZE: size,
                    "seed": seed,
                    "status": "failed" if bad else "done",
                }
            )
            metrics[rid] = {"clean_accuracy": 0.0 if bad else acc + 0.001 * seed}
            # per-point correctness: the first ⌊acc·N⌋ of N_POINTS test points (nested sets,
            # as models of one family mostly agree on the easy points)
            k = round((0.0 if bad else acc + 0.001 * seed) * N_POINTS)
            arrays[(rid, POINTS_PROBE, "clean")] = np.arange(N_POINTS) < k
            if robust:
                attacks += [_robust_row(rid, 0.0, acc), _robust_row(rid, 0.1, 0.2 + eps)]
    return StudyData.from_frames(
        spec={"name": "sized", "train_sizes": sorted({n for _, n in clean})},
        runs=runs,
        metrics=pd.DataFrame.from_dict(metrics, orient="index"),
        attacks=pd.DataFrame(attacks) if attacks else None,
        arrays=arrays,
    )


def _robust_row(rid: str, attack_eps: float, value: float) -> dict[str, Any]:
    """One row of the long attack results (``Store.attack_results_long()``)."""
    return {
        "run_id": rid,
        "label": "pgd-linf",
        "attack": "pgd",
        "norm": "linf",
        "params": "{}",
        "attack_eps": attack_eps,
        "quantity": "robust_accuracy",
        "value": value,
        "n": 100,
    }


#: tsipras2019 Fig. 6 (MNIST-like): adversarial training helps with 100 examples, costs a
#: little with 1,000 and more with 10,000
PAPER_LIKE = {
    (0.0, 100): 0.60, (0.1, 100): 0.65, (0.2, 100): 0.66,
    (0.0, 1000): 0.85, (0.1, 1000): 0.84, (0.2, 1000): 0.82,
    (0.0, 10000): 0.95, (0.1, 10000): 0.91, (0.2, 10000): 0.86,
}  # fmt: skip


def _claims(data: StudyData) -> tuple[Any, Any]:
    found = [f for f in compute_findings(data) if f.paper == datasize.PAPER]
    assert len(found) == 2
    return found[0], found[1]


def test_gap_grows_holds_on_a_study_like_the_paper() -> None:
    grows, hurts = _claims(_sized_study(PAPER_LIKE, seeds=(0, 1)))
    assert grows.holds is True and hurts.holds is True
    assert grows.evidence.startswith(
        "cnn · pgd ε=0.1: gap -5.0 → 1.0 → 4.0 pts at n = 100, 1000, 10000; slope per decade 4.5 ["
    )
    assert "adversarial training helped at n = 100; cnn · pgd ε=0.2: gap -6.0 → 3.0 → 9.0" in (
        grows.evidence
    )
    assert hurts.evidence.startswith("cnn · pgd ε=0.1: gap 4.0 [") and "at n = 10000" in (
        hurts.evidence
    )
    # without per-point values (a store from before they were kept) nothing is decided
    bare = _sized_study(PAPER_LIKE)
    bare.array = lambda *_: None
    assert all(f.verdict is Verdict.INCONCLUSIVE for f in _claims(bare))


#: the opposite of the paper: adversarial training costs the most with the least data and
#: helps with the most
FLIPPED = {
    (0.0, 100): 0.60, (0.1, 100): 0.56, (0.2, 100): 0.51,
    (0.0, 1000): 0.85, (0.1, 1000): 0.84, (0.2, 1000): 0.82,
    (0.0, 10000): 0.90, (0.1, 10000): 0.95, (0.2, 10000): 0.96,
}  # fmt: skip


def test_the_verdicts_flip_when_the_data_flip() -> None:
    grows, hurts = _claims(_sized_study(FLIPPED))
    assert grows.holds is False and hurts.holds is False
    assert "cnn · pgd ε=0.1: gap 4.0 → 1.0 → -5.0 pts" in grows.evidence
    assert "adversarial training helped at n = 10000" in grows.evidence
    assert "cnn · pgd ε=0.1: gap -5.0 [" in hurts.evidence
    # a trend, not strict monotonicity: equal gaps at the two largest sizes still rise overall
    tie = dict(PAPER_LIKE)
    tie[(0.1, 10000)] = tie[(0.0, 10000)] - 0.01  # gap 1.0 at 1,000 and at 10,000
    grows, hurts = _claims(_sized_study(tie))
    assert "cnn · pgd ε=0.1: gap -5.0 → 1.0 → 1.0 pts" in grows.evidence
    assert grows.holds is True and hurts.holds is True


def test_failed_runs_are_never_evidence() -> None:
    # the failed adversarial runs at 10,000 recorded accuracy 0 (a gap of 95 points)
    data = _sized_study(PAPER_LIKE, failed=((0.1, 10000), (0.2, 10000)))
    grows, hurts = _claims(data)
    assert grows.holds is True and "n = 100, 1000;" in grows.evidence
    assert "10000" not in grows.evidence
    assert hurts.holds is None and hurts.evidence.startswith("not tested here: ")
    # nothing finished at a second size: not tested
    only = {k: v for k, v in PAPER_LIKE.items() if k[1] == 100}
    only.update({(0.0, 1000): 0.85})
    grows, hurts = _claims(_sized_study(only, failed=((0.0, 1000),)))
    assert grows.holds is None and "two or more training-set sizes" in grows.evidence


def test_claims_are_not_tested_without_the_axis() -> None:
    one = {k: v for k, v in PAPER_LIKE.items() if k[1] == 1000}
    data = _sized_study(one)
    grows, hurts = _claims(data)
    assert grows.holds is None and hurts.holds is None
    section = datasize.DataSize()
    assert not section.applies(ReportContext(data))
    assert section.applies(ReportContext(_sized_study(PAPER_LIKE)))


def test_series_split_a_sized_study_by_size() -> None:
    table = _sized_study(PAPER_LIKE, seeds=(0, 1)).table()
    groups = series(table)
    assert list(groups) == ["cnn · pgd · n=100", "cnn · pgd · n=1000", "cnn · pgd · n=10000"]
    for name, rows in groups.items():
        assert set(rows[TRAIN_SIZE]) == {int(name.rsplit("=", 1)[1])} and len(rows) == 6
    # the tradeoff's claim reads each size on its own: at n = 100 accuracy rises with ε
    falling = compute_findings(_sized_study(PAPER_LIKE))[0]
    assert falling.claim.startswith("Clean accuracy decreases")
    assert falling.verdict is Verdict.FAILS
    assert "cnn · pgd · n=100: 60.0 → 65.0 → 66.0 %" in falling.evidence
    assert "cnn · pgd · n=10000: 95.0 → 91.0 → 86.0 % at ε = 0, 0.1, 0.2; slope -45.0 [" in (
        falling.evidence
    )


def test_section_figures_and_table() -> None:
    data = _sized_study(PAPER_LIKE, seeds=(0, 1))
    ctx = ReportContext(data)
    section = datasize.DataSize()
    figures = section.figures(ctx)
    assert [f.name for f in figures] == ["accuracy_vs_train_size", "accuracy_vs_train_eps_by_size"]
    size_fig = figures[0].figure
    assert size_fig is not None and "Figs. 1 and 6" in figures[0].caption
    clean_ax, robust_ax = size_fig.axes[:2]
    assert clean_ax.get_xscale() == "log" and "clean accuracy" in clean_ax.get_ylabel()
    assert "robust accuracy" in robust_ax.get_ylabel()
    curves = [line for line in clean_ax.get_lines() if line.get_marker() == "o"]
    assert len(curves) == 3  # standard, ε = 0.1, ε = 0.2
    assert sorted(tuple(line.get_xdata()) for line in curves)[0] == (100.0, 1000.0, 10000.0)
    standard = next(c for c in curves if c.get_linestyle() == "-")
    assert list(standard.get_ydata()) == pytest.approx([60.05, 85.05, 95.05])  # seed means
    assert figures[1].figure is not None
    html = section.html(ctx)
    assert "n = 100" in html and "n = 10000" in html and "cnn · pgd ε=0.2" in html
    assert '<th class="l">cnn · pgd ε=0.2</th><td>-6</td><td>3</td><td>9</td>' in html
    # without robust accuracies the size figure has the clean panel only
    plain = ReportContext(_sized_study(PAPER_LIKE, robust=False))
    fig = section.figures(plain)[0].figure
    assert fig is not None and len([a for a in fig.axes if a.get_visible()]) == 1


# ----------------------------------------------------------------------------- end to end


def test_a_sized_study_end_to_end(tmp_path: Path) -> None:
    """Two sizes of the smoke study through the real executor, store and report."""
    spec = load_spec(
        _raw(
            name="sized-smoke",
            train_sizes=[64, 256],
            train={"epochs": 6, "batch_size": 16},
            evaluation={
                "n": 50,
                "checks": False,
                "attacks": [{"attack": "pgd", "eps": [0.0, 0.1], "params": {"steps": 2}}],
            },
            probes={"n": 10, "train_n": 0, "run": []},
        )
    )
    out = tmp_path / "sized"
    summary = run_study(spec, out, device="cpu", progress=False, echo=None)
    assert summary.planned == 4 and summary.done == 4 and not summary.failed
    with open_store(out) as store:
        runs = store.runs_table()
        assert sorted(runs[TRAIN_SIZE]) == [64, 64, 256, 256]
        configs = {r["run_id"]: r["config"]["config"]["train_subset"] for r in store.runs()}
        assert configs == dict(zip(runs["run_id"], runs[TRAIN_SIZE].astype(int), strict=True))
    data = load_study(out)
    assert data.train_sizes() == [64, 256]
    report = write_report(out, data).read_text()
    assert '<section id="datasize">' in report
    assert (out / "figures" / "accuracy_vs_train_size.png").is_file()
    assert (out / "figures" / "accuracy_vs_train_eps_by_size.png").is_file()
    grows, hurts = _claims(data)
    # both sizes finished: the claims are tested (on 2 × 2 tiny runs, rarely decided)
    assert Verdict.UNTESTED not in (grows.verdict, hurts.verdict)
    assert "n = 64, 256" in grows.evidence
    assert grows.claim in report


def test_runs_that_did_not_train_are_not_evidence() -> None:
    """A model stuck at chance (10 classes: 10 %) at the largest size would count as a huge
    gap; on a study whose dataset says what chance is, it is left out."""
    stuck = {**PAPER_LIKE, (0.2, 10000): 0.10}
    data = _sized_study(stuck, seeds=(0, 1))
    grows, _ = _claims(data)
    assert "ε=0.2: gap -6.0 → 3.0 → 85.0 pts" in grows.evidence  # no dataset: it counts
    data.spec.update(dataset="fashion-mnist", evaluation={"n": 1000})
    grows, _ = _claims(data)
    assert "ε=0.2: gap -6.0 → 3.0 pts at n = 100, 1000;" in grows.evidence
