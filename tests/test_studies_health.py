"""Issue 15: a study never publishes a collapsed model, and escalates flagged evaluations.

The study test is real: digits, a 32-unit MLP, PGD-AT at ε = 1 (a ball covering the whole
[0, 1] box, so the adversary can turn any image into any other and the model can only learn
the class prior: it collapses) beside a standard run; the first evaluation attack is a
one-step PGD with a tiny step (an evaluation that barely attacks), so the gradient-masking
checks fire (Square breaks what it left) and the study escalates to ``autoattack-lite`` with
few steps. The default escalation is ``autoattack`` (AutoAttack's ensemble); these tests name
``autoattack-lite`` so that they run whatever the ensemble's state.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from robustscope.report import StudyData, load_study, summary_rows, write_report
from robustscope.report.section import ReportContext
from robustscope.report.stats import main_robust_column, trained
from robustscope.studies import StudyError, load_spec, open_store, preset, run_study
from robustscope.studies.escalation import MASKING_FLAGS, escalate
from robustscope.studies.health import CHANCE_Z, LOADED_FIX, assess, chance_line
from robustscope.studies.loaded import EXTERNAL
from robustscope.studies.runner import measure_hash
from robustscope.studies.spec import DEFAULT_ESCALATION, Escalation
from robustscope.studies.store import AttackResult, StoreError, views
from robustscope.studies.store.vocab import COLLAPSED, HEALTHY

WEAK_PGD = {"steps": 1, "step_size": 0.001, "random_start": False}
FEW_STEPS = {"attack": "autoattack-lite", "params": {"steps": 5, "n_target_classes": 2}}


def _spec(**evaluation: Any) -> dict[str, Any]:
    raw = preset("smoke").model_dump(mode="json")
    raw["name"] = "health"
    raw["methods"] = [{"method": "pgd", "eps": [0.0, 1.0], "params": {"steps": 3}}]
    raw["evaluation"] = {
        "n": 100,
        "checks": True,
        "attacks": [{"attack": "pgd", "eps": [0.0, 0.1, 0.2], "params": WEAK_PGD}],
        "escalate": FEW_STEPS,
        **evaluation,
    }
    raw["probes"] = {"n": 50, "train_n": 0, "run": []}
    return raw


# --- the rule ---------------------------------------------------------------------------------


def test_chance_rule_and_its_line() -> None:
    chance, line = chance_line(10, 1000)
    assert chance == 0.1 and line == pytest.approx(0.1 + CHANCE_Z * math.sqrt(0.09 / 1000))
    assert assess(clean_accuracy=0.097, n=1000, classes=10).status == COLLAPSED
    assert assess(clean_accuracy=line, n=1000, classes=10).status == COLLAPSED
    assert assess(clean_accuracy=line + 1e-3, n=1000, classes=10).status == HEALTHY
    # fewer points, a wider line: 20 % of 100 points cannot be told from a guess
    assert assess(clean_accuracy=0.2, n=100, classes=10).collapsed
    # unknown K or accuracy: nothing to judge, taken as trained
    assert assess(clean_accuracy=0.1, n=100, classes=None).status == HEALTHY
    assert assess(clean_accuracy=None, n=100, classes=10).status == HEALTHY


def test_stuck_loss_rule() -> None:
    def rows(train: list[float], test: float) -> list[dict[str, float]]:
        return [{"epoch": i + 1, "train_loss": v, "test_loss": test} for i, v in enumerate(train)]

    guess = math.log(10)
    stuck = assess(clean_accuracy=0.3, n=1000, classes=10, history=rows([2.31, 2.30], guess))
    assert stuck.collapsed and "never fell" in (stuck.reason or "")
    # an ε warm-up may raise the adversarial training loss: a test loss far from a guess's
    # says the model learned
    warm = rows([1.2, 1.5, 1.6], 0.7)
    assert assess(clean_accuracy=0.8, n=1000, classes=10, history=warm).status == HEALTHY
    # a loss that fell, or a single epoch, is not stuck
    assert not assess(
        clean_accuracy=0.3, n=1000, classes=10, history=rows([2.3, 2.0], 2.2)
    ).collapsed
    assert not assess(clean_accuracy=0.3, n=1000, classes=10, history=rows([2.3], 2.3)).collapsed


def test_likely_fix_names_what_the_method_can_change() -> None:
    def fix(method: str, eps: float, params: dict[str, Any] | None = None) -> str:
        h = assess(clean_accuracy=0.1, n=1000, classes=10, method=method, eps=eps,
                   method_params=params)  # fmt: skip
        assert h.collapsed and h.fix is not None
        return h.fix

    assert "eps_warmup" in fix("pgd", 0.1) and "lower lr" in fix("pgd", 0.1)
    assert "longer ε warm-up" in fix("trades", 0.1, {"eps_warmup": 0.3})
    assert "eps_warmup" not in fix("standard", 0.0) and "more epochs" in fix("standard", 0.0)
    assert "eps_warmup" not in fix("noise", 0.1)  # Gaussian augmentation has no ε warm-up
    # a model from outside the lab: check what it was trained on (not how the lab trains)
    assert fix(EXTERNAL, math.nan) == LOADED_FIX and "robustscope import" in LOADED_FIX


# --- the spec -----------------------------------------------------------------------------


def test_escalate_setting() -> None:
    assert DEFAULT_ESCALATION == "autoattack"  # AutoAttack's ensemble, unless the spec says
    default = load_spec(_spec(escalate=Escalation().model_dump()))
    assert default.evaluation.escalate == Escalation()
    named = load_spec(_spec(escalate="autoattack-lite")).evaluation.escalate
    assert named == Escalation(attack="autoattack-lite")
    assert load_spec(_spec(escalate=None)).evaluation.escalate is None
    full = load_spec(_spec())
    # the default hashes as a spec from before the setting; another setting does not
    raw = _spec()
    raw["evaluation"].pop("escalate")
    assert measure_hash(load_spec(raw)) == measure_hash(default) != measure_hash(full)
    assert measure_hash(load_spec(_spec(escalate=None))) != measure_hash(default)


@pytest.mark.parametrize(
    ("escalate", "message"),
    [
        ("nope", "evaluation.escalate: unknown attack 'nope'"),
        ("deepfool", "cannot re-attack the first evaluation"),
        ({"attack": "apgd", "params": {"eps": 0.1}}, "eps is the flagged evaluation's"),
    ],
)
def test_escalate_errors_name_the_field(escalate: Any, message: str) -> None:
    with pytest.raises(StudyError, match=message):
        load_spec(_spec(escalate=escalate))


def test_escalation_label_must_be_free() -> None:
    attacks = [
        {"attack": "pgd", "eps": [0.1]},
        {"attack": "apgd", "eps": [0.1], "label": "pgd-linf+autoattack-lite"},
    ]
    with pytest.raises(StudyError, match="the name of the first attack's escalation"):
        load_spec(_spec(attacks=attacks))


def test_no_escalation_without_a_masking_flag_or_a_setting() -> None:
    ev = load_spec(_spec()).evaluation
    entry = ev.attacks[0]
    bug = SimpleNamespace(flags=[SimpleNamespace(name="outside_threat_model")])
    assert escalate(None, None, None, bug, entry, ev) is None  # type: ignore[arg-type]
    masked = SimpleNamespace(flags=[SimpleNamespace(name=MASKING_FLAGS[0])])
    off = load_spec(_spec(escalate=None)).evaluation
    assert escalate(None, None, None, masked, entry, off) is None  # type: ignore[arg-type]


# --- the store ----------------------------------------------------------------------------


def test_store_health_and_escalation_columns(tmp_path: Path) -> None:
    def result(label: str, acc: float, escalates: str | None = None) -> AttackResult:
        return AttackResult(label, "pgd", "linf", {}, n=10, epsilons=(0.1,),
                            robust_accuracy=(acc,), robust_accuracy_on_correct=(acc,),
                            escalates=escalates)  # fmt: skip

    with open_store(tmp_path, create=True) as store:
        store.add_study("s", {})
        store.upsert_run("r", "s", {}, method="pgd", eps=0.1, seed=0)
        assert store.runs_table()["health"].isna().all()  # not assessed yet
        store.set_health("r", COLLAPSED, "at chance", "warm up")
        got = store.runs_table().iloc[0]
        assert (got["health"], got["health_reason"], got["health_fix"]) == (
            COLLAPSED,
            "at chance",
            "warm up",
        )
        with pytest.raises(StoreError, match="health of run 'r' must be one of ok, collapsed"):
            store.set_health("r", "sick")
        with pytest.raises(StoreError, match="escalates 'pgd-linf', which is not among"):
            store.set_attack_results("r", [result("pgd-linf+x", 0.1, "pgd-linf")])
        store.set_attack_results(
            "r", [result("pgd-linf", 0.5), result("pgd-linf+x", 0.2, "pgd-linf")]
        )
        long = store.attack_results_long()
    folded = views.fold_escalations(long)
    assert set(folded["label"]) == {"pgd-linf"} and folded["value"].tolist() == [0.2, 0.2]
    both = views.escalations(long)
    assert both[["evaluated", "escalated", "reported"]].values.tolist() == [[0.5, 0.2, 0.2]]


# --- a real study -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("health") / "study"
    lines: list[str] = []
    summary = run_study(load_spec(_spec()), out, device="cpu", progress=False, echo=lines.append)
    assert summary.done == 2 and not summary.failed
    return out, lines


def _ids(out: Path) -> tuple[str, str]:
    """``(standard run id, collapsed run id)``."""
    with open_store(out) as store:
        runs = store.runs_table().set_index("eps")
    return str(runs.loc[0.0, "run_id"]), str(runs.loc[1.0, "run_id"])


def test_collapsed_run_is_marked_in_the_store(study: tuple[Path, list[str]]) -> None:
    out, lines = study
    std, bad = _ids(out)
    with open_store(out) as store:
        runs = store.runs_table().set_index("run_id")
        clean = store.metrics_table()["clean_accuracy"]
    assert runs.loc[std, "health"] == HEALTHY and clean[std] > 0.5
    assert runs.loc[bad, "health"] == COLLAPSED and clean[bad] < 0.22
    assert "standard errors of chance" in runs.loc[bad, "health_reason"]
    assert "eps_warmup" in runs.loc[bad, "health_fix"]
    assert any("pgd ε=1" in line and "COLLAPSED" in line for line in lines)  # the driver says


def test_flagged_runs_are_escalated_and_report_the_lower_figure(
    study: tuple[Path, list[str]],
) -> None:
    out, _ = study
    std, _ = _ids(out)
    with open_store(out) as store:
        rob = store.robustness_table()
        flags = store.attack_flags_long()
    assert {"black_box_stronger"} <= set(flags.loc[flags.run_id == std, "flag"])
    mine = rob[rob.run_id == std].set_index(["label", "attack_eps"])["robust_accuracy"]
    second = rob[(rob.run_id == std) & rob.escalates.notna()]
    assert set(second["label"]) == {"pgd-linf+autoattack-lite"}
    assert set(second["escalates"]) == {"pgd-linf"} and set(second["attack"]) == {"autoattack-lite"}
    assert sorted(second["attack_eps"]) == [0.0, 0.1, 0.2]  # the same ε
    data = load_study(out)
    table = ReportContext(data).table
    lower = []
    for eps in (0.1, 0.2):
        own, esc = mine[("pgd-linf", eps)], mine[("pgd-linf+autoattack-lite", eps)]
        assert esc <= own  # the ensemble attacks only what PGD left robust (worst case)
        reported = table.loc[std, f"pgd-linf/{eps:g}/robust_accuracy"]
        assert reported == min(own, esc)
        lower.append(esc < own)
        # the Findings resample the per-point values of the evaluation reported
        pts = data.points(std, f"pgd-linf/{eps:g}/robust_accuracy")
        assert pts is not None and float(pts.values.mean()) == pytest.approx(reported)
    assert any(lower)  # the one-step PGD barely attacked: the ensemble finds more
    main = main_robust_column(data)
    assert main is not None and main.label == "pgd-linf"
    assert table.loc[std, main.column] == min(
        mine[("pgd-linf", main.eps)], mine[(second["label"].iloc[0], main.eps)]
    )
    # only the spec's evaluation is a robust column; the escalation is folded into it
    assert {c.label for c in data.robust_columns()} == {"pgd-linf"}


def test_show_marks_both(study: tuple[Path, list[str]]) -> None:
    out, _ = study
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "robustscope", "show", str(out)]
    shown = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert shown.returncode == 0, shown.stderr
    rows = {r["label"]: r for r in json.loads(shown.stdout)}
    bad, good = rows["mlp32 pgd ε=1 seed=0"], rows["mlp32 standard ε=0 seed=0"]
    assert bad["health"] == COLLAPSED and "eps_warmup" in bad["health_fix"]
    assert good["health"] == HEALTHY and good["health_reason"] is None
    assert good["escalated"] == "autoattack-lite"
    strict = [
        {k: None if v != v else v for k, v in r.items()} for r in summary_rows(load_study(out))
    ]
    assert json.loads(shown.stdout) == strict
    text = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    flat = " ".join(text.stdout.split())
    assert text.returncode == 0 and "COLLAPSED mlp32 pgd ε=1 seed=0" in flat
    assert "likely fix: train with an ε warm-up" in flat and "ESCALATED mlp32 standard" in flat


def test_report_leaves_the_collapsed_run_out_and_warns(study: tuple[Path, list[str]]) -> None:
    out, _ = study
    std, bad = _ids(out)
    data = load_study(out)
    ctx = ReportContext(data)
    assert list(ctx.table.index) == [std]  # every figure and Finding reads this table
    assert list(data.collapsed().index) == [bad]
    assert list(trained(data.table(), data.spec).index) == [std]
    label = "mlp32 pgd ε=1 seed=0"
    assert not any(label in f.evidence for f in ctx.findings)
    html = write_report(out).read_text()
    checks = html.split('<section id="checks">', 1)[1].split("</section>", 1)[0]
    assert label in checks and "failed to train" in checks and "eps_warmup" in checks
    assert "Escalated" in checks and "autoattack-lite" in checks
    assert '<a href="#checks">' in html  # in the contents


def test_trained_reads_the_mark_and_judges_unmarked_tables() -> None:
    marked = pd.DataFrame({"health": [HEALTHY, COLLAPSED, None], "clean_accuracy": [0.9, 0.9, 0.1]})
    assert list(trained(marked, {"dataset": "digits"}).index) == [0, 2]  # the mark decides
    unmarked = marked.drop(columns="health")
    assert list(trained(unmarked, {"dataset": "digits", "evaluation": {"n": 100}}).index) == [0, 1]
    assert len(trained(unmarked, {})) == 3  # no dataset: no chance level to judge by


def test_a_study_where_no_run_trained_says_so(tmp_path: Path) -> None:
    """Stored before runs were marked (no health column): the report applies the rule itself."""
    runs = [{"run_id": "a", "label": "stuck", "method": "pgd", "eps": 0.3}]
    data = StudyData.from_frames(
        spec={"name": "s", "dataset": "digits", "evaluation": {"n": 500}},
        runs=runs,
        metrics=pd.DataFrame({"run_id": ["a"], "clean_accuracy": [0.11]}),
    )
    assert data.health().loc["a", "health"] == COLLAPSED and not len(data.table())
    findings = ReportContext(data).findings
    assert [f.evidence for f in findings] == ["not tested here: no finished run trained"]
    html = write_report(tmp_path, data).read_text()
    checks = html.split('<section id="checks">', 1)[1].split("</section>", 1)[0]
    assert "stuck" in checks and "eps_warmup" in checks
    assert "No finished run trained: nothing to show." in html
