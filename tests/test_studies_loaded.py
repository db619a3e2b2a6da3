"""Studies over existing models (issue 16 §1): a spec's ``checkpoints`` and
``robustscope study --checkpoints``.

Two tiny models are trained by the lab (``training.train``: standard and PGD at ε = 0.1) into
run directories, and one trained model's state dict is saved as an external PyTorch file
(DataParallel prefixes) and brought in with ``robustscope import``. Studies over them must
store every run's results without training, skip them when run again, measure a file again
when its content changes, refuse checkpoints that do not fit the study's dataset, and write a
report whose sections say once which models have no training history (a lab checkpoint in
its run directory keeps the history saved beside it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from clirun import run_main as cli
from robustscope import checkpoint, models
from robustscope.cli import app
from robustscope.report import compute_findings, load_study, write_report
from robustscope.report.data import NO_HISTORY
from robustscope.report.evidence import Verdict
from robustscope.report.section import ReportContext
from robustscope.report.sections.tradeoff import fig_frontier
from robustscope.studies import StudyError, load_spec, open_store, plan, presets, run_study
from robustscope.studies.loaded import EXTERNAL, training_history
from robustscope.studies.runner import measure_hash
from robustscope.training import train
from robustscope.training.config import TrainConfig

TINY = {"model": "mlp", "model_kwargs": {"widths": [16]}}
TRAIN = {"epochs": 3, "batch_size": 32, "train_subset": 600}
EVALUATION = {
    "n": 60,
    "checks": False,
    "attacks": [{"attack": "pgd", "eps": [0, 0.1, 0.2], "params": {"steps": 3}}],
}
PROBES = {"n": 60, "train_n": 60, "run": [{"name": "input_fisher"}]}


def _config(**fields: Any) -> TrainConfig:
    return TrainConfig(**{"dataset": "digits", "device": "cpu", **TINY, **TRAIN, **fields})


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/std`` and ``runs/adv`` (lab run directories) and ``theirs.safetensors`` (an
    imported state dict of a model trained elsewhere)."""
    root = tmp_path_factory.mktemp("zoo")
    train(_config(), root / "runs" / "std", progress=False, log=None)
    adv = _config(method="pgd", method_params={"eps": 0.1, "steps": 3})
    train(adv, root / "runs" / "adv", progress=False, log=None)
    theirs = train(_config(seed=7), None, progress=False, log=None).model
    weights = {f"module.{k}": v for k, v in theirs.state_dict().items()}
    torch.save({"state_dict": weights}, root / "theirs.pth")
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(root / "theirs.pth"),
            "--model",
            "mlp",
            "--model-kwarg",
            "widths=[16]",
            "--dataset",
            "digits",
            "--out",
            str(root / "theirs.safetensors"),
        ],
    )
    assert result.exit_code == 0, result.output
    return root


def _spec(zoo: Path, **fields: Any) -> dict[str, Any]:
    return {
        "name": "loaded",
        "dataset": "digits",
        "checkpoints": [
            str(zoo / "runs" / "*" / "model.safetensors"),
            {"path": str(zoo / "theirs.safetensors"), "label": "theirs"},
        ],
        "evaluation": EVALUATION,
        "probes": PROBES,
        **fields,
    }


# ----------------------------------------------------------------------------- the spec


def test_checkpoint_entries_and_what_they_leave_unchanged() -> None:
    spec = load_spec({"name": "s", "dataset": "digits", "checkpoints": ["a.safetensors"]})
    assert spec.methods == []  # checkpoints without methods: nothing is trained
    (entry,) = spec.checkpoints or []
    assert (entry.path, entry.label, entry.dataset) == ("a.safetensors", None, None)
    both = load_spec(
        {"name": "s", "checkpoints": [{"path": "a", "label": "x"}], "methods": [{"method": "pgd"}]}
    )
    assert [m.method for m in both.methods] == ["pgd"]
    plain = load_spec({"name": "s", "dataset": "digits"})
    assert "checkpoints" not in plain.model_dump(mode="json")  # same dump, same ids as before
    assert measure_hash(plain) == measure_hash(load_spec(plain.model_dump(mode="json")))
    with pytest.raises(StudyError, match=r"no runs: give methods .* or checkpoints"):
        load_spec({"name": "s", "methods": []})
    with pytest.raises(StudyError, match=r"checkpoints\.0\.dataset: 'mnist' differs"):
        load_spec(
            {"name": "s", "dataset": "digits", "checkpoints": [{"path": "a", "dataset": "mnist"}]}
        )
    with pytest.raises(StudyError, match=r"checkpoints\.0\.path"):
        load_spec({"name": "s", "checkpoints": [{"label": "x"}]})


def test_the_plan_places_each_checkpoint(zoo: Path) -> None:
    runs = {p.label: p for p in plan(load_spec(_spec(zoo)), device="cpu")}
    assert sorted(runs) == ["adv", "std", "theirs"]
    adv, std, theirs = runs["adv"], runs["std"], runs["theirs"]
    assert (adv.method, adv.family, adv.eps, adv.norm, adv.model) == (
        "pgd", "pgd", 0.1, "linf", "mlp(widths=[16])"
    )  # fmt: skip
    assert (std.method, std.eps, std.settings()["train_subset"]) == ("standard", 0.0, 600)
    assert (theirs.method, theirs.family, theirs.norm) == (EXTERNAL, EXTERNAL, None)
    assert math.isnan(theirs.eps) and theirs.settings() == {}
    for run in runs.values():
        assert run.config is None and run.source is not None and len(run.run_id) == 12
        assert Path(run.source.path).is_file() and len(run.source.sha256) == 64
    assert theirs.to_dict()["eps"] is None  # stored as NULL: JSON has no NaN
    relabelled = _spec(zoo)
    relabelled["checkpoints"][1]["label"] = "mine"
    again = {p.label: p.run_id for p in plan(load_spec(relabelled), device="cpu")}
    assert again["adv"] == adv.run_id and again["mine"] != theirs.run_id


# ----------------------------------------------------------------------------- studies


def test_a_study_over_checkpoints_stores_skips_and_measures_changed_files(
    zoo: Path, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    for name in ("std", "adv"):  # a copy, to be changed below
        (files / name).mkdir(parents=True)
        (files / name / "model.safetensors").write_bytes(
            (zoo / "runs" / name / "model.safetensors").read_bytes()
        )
    raw = _spec(zoo)
    raw["checkpoints"][0] = str(files / "*")  # run directories by a glob
    spec = load_spec(raw)
    out = tmp_path / "study"
    first = run_study(spec, out, device="cpu", progress=False, echo=None)
    assert (first.planned, first.done, first.failed) == (3, 3, {})
    study = load_study(out)
    table = study.table()
    assert sorted(table["label"]) == ["adv", "std", "theirs"]
    assert not len(study.history) and "train_time_s" not in study.metrics.columns
    by_label = table.reset_index().set_index("label")
    assert by_label.loc["theirs", "method"] == EXTERNAL and math.isnan(
        by_label.loc["theirs", "eps"]
    )
    assert by_label.loc["adv", "eps"] == 0.1 and by_label.loc["std", "method"] == "standard"
    for _, row in by_label.iterrows():
        assert 0.5 < row["clean_accuracy"] <= 1 and row["pgd-linf/0.1/robust_accuracy"] >= 0
        assert row["input_fisher/frobenius_mean"] > 0
        assert study.array(row["run_id"], "points", "clean").shape == (60,)
        assert Path(row["loaded_from"]).is_file() and row["checkpoint"] == row["loaded_from"]
    assert set(study.loaded_ids()) == set(table.index)
    assert not (out / "runs").exists()  # nothing trained, no run directory

    again = run_study(spec, out, device="cpu", progress=False, echo=None)
    assert (again.skipped, again.done) == (3, 0)

    model, meta = checkpoint.load(files / "adv")
    with torch.no_grad():
        model.head.bias.add_(0.01)
    checkpoint.save(files / "adv" / "model.safetensors", model, meta)
    changed = run_study(spec, out, device="cpu", progress=False, echo=None)
    assert (changed.skipped, changed.done) == (2, 1)
    with open_store(out) as store:
        rows = store.runs_table()
    assert sorted(rows["label"]) == ["adv", "std", "theirs"]  # the old content's run is gone
    old = by_label.loc["adv", "run_id"]
    assert old not in set(rows["run_id"])
    assert not [f for f in (out / "artifacts" / old).rglob("*") if f.is_file()]


def test_the_report_of_a_checkpoint_study(zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    run_study(load_spec(_spec(zoo)), out, device="cpu", progress=False, echo=None)
    data = load_study(out)
    ids = data.table().reset_index().set_index("label")["run_id"]
    # the lab's run directories hold each checkpoint's history; the imported model has none
    assert set(data.history["run_id"]) == {ids["std"], ids["adv"]}
    assert data.historyless_ids() == [ids["theirs"]]
    rows = json.loads((zoo / "runs" / "std" / "history.json").read_text())
    final = data.metrics.loc[ids["std"]]
    assert final["train/test_accuracy"] == rows[-1]["test_accuracy"]
    assert final["train_time_s"] == pytest.approx(sum(r["train_time_s"] for r in rows))
    path = write_report(out)
    page = path.read_text()
    assert "No training history: the models were loaded from checkpoints." not in page
    assert page.count("Loaded from checkpoints, without a training history: theirs.") == 1
    assert "Models without a training ε" in page and "theirs" in page
    assert (out / "figures" / "frontier.png").is_file()
    assert (out / "figures" / "robust_vs_attack_eps.png").is_file()
    assert (out / "figures" / "training.png").is_file()
    assert "checkpoints (loaded, not trained)" in page and "seeds" not in page.split("<h2")[0]
    findings = compute_findings(load_study(out))
    assert findings and all(isinstance(f.verdict, Verdict) for f in findings)
    trend = next(f for f in findings if f.claim.startswith("Clean accuracy decreases"))
    assert "theirs" not in trend.evidence and "mlp(widths=[16]) · pgd" in trend.evidence


def test_history_is_read_only_when_it_belongs_to_the_weights(zoo: Path, tmp_path: Path) -> None:
    """``history.json`` counts for a checkpoint when its last row is the metrics the file
    recorded at save time; a history of other weights, a broken file or a model without
    one give no history, and a study of those alone says so once."""
    source = zoo / "runs" / "std"
    rows = json.loads((source / "history.json").read_text())
    assert training_history(source / "model.safetensors") == rows
    assert training_history(zoo / "theirs.safetensors") == []  # imported: no history
    files = tmp_path / "std"
    files.mkdir()
    (files / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    assert training_history(files / "model.safetensors") == []  # away from its run directory
    later = [*rows, {**rows[-1], "epoch": rows[-1]["epoch"] + 1, "test_accuracy": 0.5}]
    (files / "history.json").write_text(json.dumps(later))
    assert training_history(files / "model.safetensors") == []  # a later epoch's history
    (files / "history.json").write_text("[{")
    assert training_history(files / "model.safetensors") == []  # not JSON
    (files / "history.json").write_text(json.dumps(rows))
    assert training_history(files / "model.safetensors") == rows
    (files / "history.json").unlink()
    out = tmp_path / "study"
    spec = _spec(zoo)
    spec["checkpoints"] = [str(files / "model.safetensors")]
    run_study(load_spec(spec), out, device="cpu", progress=False, echo=None)
    page = write_report(out).read_text()
    assert page.count("No training history: the models were loaded from checkpoints.") == 1
    findings = compute_findings(load_study(out))
    tracked = [f for f in findings if f.paper.startswith(("shi2020 Fig. 2", "shi2020 Fig. 3"))]
    assert len(tracked) == 2
    assert all(f.verdict == Verdict.UNTESTED and NO_HISTORY in f.evidence for f in tracked)


def test_a_study_of_one_external_model_reports_it(zoo: Path, tmp_path: Path) -> None:
    probes = ["input_fisher", "margins", "layer_spectra", "weight_norms"]
    raw = {
        **_spec(zoo),
        "checkpoints": [str(zoo / "theirs.safetensors")],
        "probes": {**PROBES, "run": [{"name": n} for n in probes]},
    }
    out = tmp_path / "theirs"
    run_study(load_spec(raw), out, device="cpu", progress=False, echo=None)
    page = write_report(out).read_text()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "frontier.png",
        "robust_vs_attack_eps.png",
    ]  # nothing drawn against a training ε no model has
    assert page.count("Not shown: drawn against the training ε, which no model") == 2
    assert "models without a training ε by label" in page  # its probe scalars, tabulated
    assert "No training history: the models were loaded from checkpoints." in page


def test_a_mixed_study_draws_trained_and_loaded_models(zoo: Path, tmp_path: Path) -> None:
    raw = {
        **_spec(zoo),
        "checkpoints": [{"path": str(zoo / "theirs.safetensors"), "label": "theirs"}],
        "models": [TINY],
        "methods": [{"method": "pgd", "eps": [0, 0.1], "params": {"steps": 3}}],
        "train": {**TRAIN, "track": ["clean"]},
        "posthoc": {
            "percents": [10],
            "n": 30,
            "train_n": 60,
            "transferred": [{"attack": "fgsm", "eps": [0, 0.1]}],
            "adaptive": [],
            "robust": False,
        },
    }
    out = tmp_path / "mixed"
    summary = run_study(load_spec(raw), out, device="cpu", progress=False, echo=None)
    assert (summary.planned, summary.done, summary.failed) == (3, 3, {})
    study = load_study(out)
    table = study.table()
    theirs = table.index[table["label"] == "theirs"][0]
    assert study.loaded_ids() == [theirs] and set(study.history["run_id"]) == set(table.index) - {
        theirs
    }
    standard = table.index[table["eps"] == 0][0]
    for rid in (theirs, standard):  # posthoc 'standard': ε = 0 and the external model
        assert study.array(rid, "posthoc", "clean_accuracy") is not None
    ctx = ReportContext(study)
    assert ctx.robust is not None
    fig = fig_frontier(ctx.table, ctx.robust, ctx.palette)
    assert fig is not None
    lines = fig.axes[0].lines
    assert any(line.get_marker() == "*" and line.get_label() == "theirs" for line in lines)
    assert sum(len(line.get_xdata()) for line in lines if line.get_marker() != "*") >= 2
    page = write_report(out).read_text()
    assert "Loaded from checkpoints, without a training history: theirs." in page
    assert 'id="fig-training"' in page and 'id="fig-frontier"' in page
    assert "Models without a training ε" in page


def test_checkpoints_that_do_not_fit_are_refused(zoo: Path, tmp_path: Path) -> None:
    def refused(checkpoints: list[Any], match: str, dataset: str = "digits") -> None:
        spec = load_spec({**_spec(zoo), "dataset": dataset, "checkpoints": checkpoints})
        with pytest.raises(StudyError, match=match):
            plan(spec, device="cpu")

    theirs = str(zoo / "theirs.safetensors")
    refused([theirs], rf"checkpoints\.0: {theirs}: field 'dataset' records 'digits' but the "
            "study's dataset is 'mnist'", dataset="mnist")  # fmt: skip
    other = tmp_path / "other.safetensors"  # records no dataset; 28×28 inputs
    checkpoint.save(other, models.create("mlp", 10, (1, 28, 28), widths=[4]))
    refused([str(other)], r"field 'model\.input_shape' is \(1, 28, 28\) but the study's dataset")
    few = tmp_path / "few.safetensors"
    checkpoint.save(few, models.create("mlp", 3, (1, 8, 8), widths=[4]))
    refused([{"path": str(few)}], r"field 'model\.num_classes' is 3")
    refused([{"path": theirs, "dataset": "digits"}, str(other)], r"checkpoints\.1: .*input_shape")
    wrapped = tmp_path / "wrapped.safetensors"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    checkpoint.save(wrapped, models.wrap(net, (1, 8, 8), 10))
    refused([str(wrapped)], r"wrapped with robustscope\.models\.wrap.*'robustscope import")
    refused([str(tmp_path / "none" / "*.safetensors")], r"checkpoints\.0: .* matches no checkpoint")
    refused([str(tmp_path / "missing.safetensors")], r"checkpoints\.0: .*no such checkpoint")
    (tmp_path / "a").mkdir()
    checkpoint.save(tmp_path / "a" / "theirs.safetensors", checkpoint.load(theirs)[0])
    refused(
        [theirs, str(tmp_path / "a" / "theirs.safetensors")],
        "are both labelled 'theirs'",
    )


def test_the_one_line_form(
    zoo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    default = presets.PRESETS[presets.DEFAULT_PRESET]
    monkeypatch.setitem(default, "evaluation", EVALUATION)  # the default preset, made cheap
    monkeypatch.setitem(default, "probes", PROBES)
    pattern = str(zoo / "runs" / "*" / "model.safetensors")
    out = tmp_path / "mine"
    code, stdout, stderr = cli(
        monkeypatch, capsys, "study", "--checkpoints", pattern, "--out", str(out), "--dry-run",
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    rows = json.loads(stdout)  # the dataset is the one the checkpoints record
    assert sorted((r["label"], r["method"]) for r in rows) == [("adv", "pgd"), ("std", "standard")]
    args = ["study", "--checkpoints", pattern, "--checkpoints", str(zoo / "theirs.safetensors")]
    args += ["--dataset", "digits", "--out", str(out), "--device", "cpu", "--no-progress"]
    code, stdout, stderr = cli(monkeypatch, capsys, *args, "--json")
    assert code == 0, stderr
    found = json.loads(stdout)
    assert (found["planned"], found["done"], found["failed"]) == (3, 3, {})
    assert Path(found["report"]).is_file()
    with open_store(out) as store:
        stored = (store.study() or {})["spec"]
        assert (stored["name"], stored["dataset"], stored["methods"]) == ("mine", "digits", [])
        assert stored["evaluation"]["attacks"][0]["eps"] == [0.0, 0.1, 0.2]
        assert set(store.runs_table()["status"]) == {"done"}
    code, stdout, stderr = cli(monkeypatch, capsys, *args, "--json")
    assert code == 0 and json.loads(stdout)["skipped"] == 3
    wrong = ["study", "--checkpoints", pattern, "--dataset", "mnist", "--dry-run"]
    code, _, stderr = cli(monkeypatch, capsys, *wrong)
    assert code == 2 and "field 'dataset' records 'digits'" in stderr and "mnist" in stderr
    code, _, stderr = cli(monkeypatch, capsys, "study", "--preset", "smoke", "--dataset", "mnist")
    assert code == 2 and "--dataset goes with --checkpoints alone" in stderr
