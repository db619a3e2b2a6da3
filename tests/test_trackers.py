"""Experiment trackers against the real libraries: a study logged to MLflow (a local file store,
and a real ``mlflow server`` over HTTP) and read back with MLflow's client; TensorBoard event
files written by ``train --tensorboard`` and by a study, read back with TensorBoard's own
reader; the one-line errors when an extra is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from clirun import run_main
from robustscope import studies
from robustscope.studies import load_spec, preset, run_study
from robustscope.trackers import (
    MlflowTracker,
    TensorBoardStudyTracker,
    TensorBoardWriter,
    TrackerError,
)
from robustscope.trackers.mlflow_tracker import run_params

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_mlflow = pytest.mark.skipif(
    not HAS_MLFLOW, reason="mlflow is not installed: pip install 'robustscope[mlflow]'"
)
needs_tensorboard = pytest.mark.skipif(
    not HAS_TENSORBOARD,
    reason="tensorboard is not installed: pip install 'robustscope[tensorboard]'",
)

SMOKE = preset("smoke")


def _tiny(name: str = "tiny", epochs: int = 2) -> studies.StudySpec:
    """The smoke study cut to one standard run."""
    raw = SMOKE.model_dump(mode="json")
    raw.update(name=name, methods=[{"method": "standard", "eps": [0.0]}])
    raw["train"] = {**raw["train"], "epochs": epochs}
    return load_spec(raw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robustscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _children(client: Any, experiment_id: str, parent_id: str) -> dict[str, Any]:
    """The child runs of ``parent_id`` by robustscope run id."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {r.data.tags["robustscope.run_id"]: r for r in runs}


def _study_runs(client: Any, experiment_id: str) -> list[Any]:
    return client.search_runs([experiment_id], filter_string="tags.`robustscope.kind` = 'study'")


def _check_children_against_store(client: Any, children: dict[str, Any], out: Path) -> None:
    """Every child run holds what the store holds for its run: configuration, history per
    epoch, final metrics, attack results and probe scalars."""
    with studies.open_store(out) as store:
        runs = {r["run_id"]: r for r in store.runs()}
        history = store.history_table()
        metrics = store.metrics_table()
        robust = store.robustness_table()
        probes = store.probes_table()
    assert set(children) == set(runs)
    for rid, child in children.items():
        assert child.info.status == "FINISHED"
        assert child.info.run_name == runs[rid]["config"]["label"]
        params = child.data.params
        config = runs[rid]["config"]["config"]
        assert params["epochs"] == str(config["epochs"]) and params["dataset"] == "digits"
        assert params["model_kwargs.widths"] == "[32]"
        assert params["track"] == '["clean", "input_fisher"]'
        assert params["study.model"] == "mlp32" and params["study.family"] in ("pgd", "standard")
        if runs[rid]["method"] == "pgd":
            assert params["method_params.eps"] == "0.1"
        assert child.data.tags["robustscope.health"] in ("ok", "collapsed")
        # the history, per epoch (step = epoch)
        rows = history[history["run_id"] == rid].sort_values("epoch")
        for key in ("train_loss", "test_accuracy", "lr", "track/test/input_fisher_frobenius_mean"):
            logged = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in logged] == rows["epoch"].tolist()
            assert [m.value for m in logged] == pytest.approx(rows[key].tolist(), rel=1e-12)
        # final metrics, attack results, probe scalars: one value each
        got = child.data.metrics
        assert got["clean_accuracy"] == pytest.approx(metrics.loc[rid, "clean_accuracy"])
        assert got["train/test_accuracy"] == pytest.approx(metrics.loc[rid, "train/test_accuracy"])
        mine = robust[robust["run_id"] == rid]
        assert len(mine) == 3
        for _, row in mine.iterrows():
            key = f"attack/pgd-linf/{row['attack_eps']:g}/robust_accuracy"
            assert got[key] == pytest.approx(row["robust_accuracy"])
        assert got["probe/input_fisher/frobenius_mean"] == pytest.approx(
            probes.loc[rid, "input_fisher/frobenius_mean"]
        )
        assert got["seconds/train"] >= 0


@needs_mlflow
def test_mlflow_file_store_holds_the_study_and_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from robustscope.report import write_report

    # not set in the environment: the tracker opts in to the file store it was asked for
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # restored (unset) after the test
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "smoke"
    tracker = MlflowTracker()  # the default: ./mlruns
    assert tracker.uri == (tmp_path / "mlruns").resolve().as_uri()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    summary = run_study(SMOKE, out, device="cpu", progress=False, echo=None, trackers=[tracker])
    assert summary.done == 2
    report = write_report(out)
    tracker.finish(summary, report)

    client = MlflowClient(tracking_uri=tracker.uri)
    experiment = client.get_experiment_by_name("smoke")
    assert experiment is not None
    (parent,) = _study_runs(client, experiment.experiment_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "smoke"
    assert "mlflow.parentRunId" not in parent.data.tags
    assert parent.data.tags["robustscope.study_dir"] == str(out.resolve())
    assert parent.data.params["dataset"] == "digits" and parent.data.params["seeds"] == "[0]"
    assert parent.data.params["evaluation.n"] == "100"
    assert parent.data.metrics["runs_done"] == 2 and parent.data.metrics["runs_failed"] == 0
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "figures", "spec.json"} <= top
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/frontier.png" in figures
    got = Path(client.download_artifacts(parent.info.run_id, "report.html", str(tmp_path)))
    assert got.read_bytes() == report.read_bytes()
    spec = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "spec.json", str(tmp_path))).read_text()
    )
    assert spec == SMOKE.model_dump(mode="json")

    children = _children(client, experiment.experiment_id, parent.info.run_id)
    _check_children_against_store(client, children, out)
    for rid, child in children.items():  # every configuration field is a parameter
        plan = next(p for p in studies.plan(SMOKE, device="cpu") if p.run_id == rid)
        assert child.data.params == run_params(plan)

    # the same study again (every run skipped): the same parent run, continued and ended
    again = MlflowTracker(str(tmp_path / "mlruns"))
    summary = run_study(SMOKE, out, device="cpu", progress=False, echo=None, trackers=[again])
    assert summary.skipped == 2 and again.parent_id == parent.info.run_id
    again.finish(summary)
    (same,) = _study_runs(client, experiment.experiment_id)
    assert same.info.run_id == parent.info.run_id and same.info.status == "FINISHED"
    assert set(_children(client, experiment.experiment_id, parent.info.run_id)) == set(children)


def _start_mlflow_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--default-artifact-root", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(tmp_path / "server.log", "wb") as log:  # the server keeps its own descriptor
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=log,
            # without the server's background job runner (workers nothing here uses)
            env={**_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True,  # its own process group: its workers end with it
        )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return proc, uri
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            log = (tmp_path / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"mlflow server did not answer at {uri}:\n{log}")
        time.sleep(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@needs_mlflow
def test_mlflow_over_http_to_a_real_local_server(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    proc, uri = _start_mlflow_server(tmp_path)
    try:
        spec_path = tmp_path / "tiny.yaml"
        spec_path.write_text(yaml.safe_dump(_tiny().model_dump(mode="json")))
        out = tmp_path / "tiny"
        args = ["study", "--spec", str(spec_path), "--out", str(out), "--device", "cpu"]
        done = _cli(*args, "--no-progress", "--json", "--mlflow-uri", uri)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["done"] == 1  # stdout stays JSON: links go to stderr

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("tiny")
        assert experiment is not None
        (parent,) = _study_runs(client, experiment.experiment_id)
        assert parent.info.status == "FINISHED"
        children = _children(client, experiment.experiment_id, parent.info.run_id)
        assert len(children) == 1
        with studies.open_store(out) as store:
            history = store.history_table()
            (rid,) = store.runs_table()["run_id"]
        child = children[rid]
        assert child.data.params["method"] == "standard" and child.data.params["epochs"] == "2"
        logged = client.get_metric_history(child.info.run_id, "track/test/clean_accuracy")
        assert [m.step for m in logged] == [1, 2]
        assert [m.value for m in logged] == pytest.approx(
            history["track/test/clean_accuracy"].tolist(), rel=1e-12
        )
        # the report went to the server's artifact root
        assert {"report.html", "figures", "spec.json"} <= {
            a.path for a in client.list_artifacts(parent.info.run_id)
        }
        assert list((tmp_path / "artifacts").rglob("report.html"))
    finally:
        _stop(proc)


@needs_mlflow
def test_mlflow_without_a_server_fails_before_training(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(TrackerError, match="no MLflow tracking server answers there"):
        MlflowTracker(uri)


def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """tag → step → value of the event files in ``log_dir``, by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        assert len({e.step for e in events}) == len(events), f"{tag}: a step written twice"
        out[tag] = {e.step: e.value for e in events}
    return out


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _assert_scalars_equal_history(log_dir: Path, history: list[dict[str, Any]]) -> None:
    scalars = _scalars(log_dir)
    keys = set().union(*(_numbers(row) for row in history))
    assert set(scalars) == keys
    for row in history:
        for key, value in _numbers(row).items():  # TensorBoard keeps 32-bit floats
            assert scalars[key][row["epoch"]] == np.float32(value), (key, row["epoch"])


@needs_tensorboard
def test_train_tensorboard_scalars_are_the_history(tmp_path: Path) -> None:
    from robustscope import plugins
    from robustscope.training import TrainConfig, train

    run_dir, tb = tmp_path / "run", tmp_path / "tb" / "run"
    args = ["train", "--dataset", "digits", "--model", "mlp", "--train-subset", "256"]
    args += ["--epochs", "2", "--track", "clean,input_fisher", "--track-n", "20"]
    args += ["--device", "cpu", "--no-progress", "--out", str(run_dir), "--tensorboard", str(tb)]
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    _assert_scalars_equal_history(tb, history)
    assert {"train_loss", "test_accuracy", "track/test/input_fisher_frobenius_mean"} <= set(
        _scalars(tb)
    )
    # another run into the same directory is refused; the run itself may go on (--resume)
    with pytest.raises(TrackerError, match="already holds TensorBoard events"):
        TensorBoardWriter(tb)

    # resumed with --tensorboard after an epoch trained without: the first epoch is written
    # at the end, the second as it ends — each once
    plugins.load()
    config = TrainConfig(
        dataset="digits", model="mlp", train_subset=256, epochs=2, track=["clean"], device="cpu"
    )
    half = tmp_path / "half"
    train(config, half, progress=False, log=None, stop_after_epochs=1)
    later = tmp_path / "tb" / "half"
    writer = TensorBoardWriter(later, resume=True)
    result = train(config, half, resume=True, callbacks=[writer], progress=False, log=None)
    assert writer.written == {2}
    writer.close(result.history)
    _assert_scalars_equal_history(later, result.history)
    again = TensorBoardWriter(later, resume=True)  # nothing new to write
    assert again.written == {1, 2}
    again.close(result.history)
    _assert_scalars_equal_history(later, result.history)


@needs_tensorboard
def test_study_tensorboard_one_directory_per_run(tmp_path: Path) -> None:
    spec = _tiny()
    out, tb = tmp_path / "tiny", tmp_path / "tb"
    tracker = TensorBoardStudyTracker(tb)
    summary = run_study(spec, out, device="cpu", progress=False, echo=None, trackers=[tracker])
    assert summary.done == 1
    (run_dir,) = tb.iterdir()
    assert run_dir.name == "mlp32_standard_ε=0_seed=0"
    with studies.open_store(out) as store:
        table = store.history_table()
    history = [
        {k: v for k, v in row.items() if k != "run_id" and v == v}
        for row in table.to_dict("records")
    ]
    for row in history:
        row["epoch"] = int(row["epoch"])
    _assert_scalars_equal_history(run_dir, history)


class _Recorder:
    """A study tracker that remembers what the driver told it; ``broken`` fails every record."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.calls: list[tuple[str, str]] = []

    def __str__(self) -> str:
        return "the recorder"

    def start(self, spec: Any, out: Path, plans: list[Any]) -> None:
        self.calls.append(("start", spec.name))

    def record(self, run: Any, outcome: Any) -> None:
        assert outcome.run_id == run.run_id and outcome.history
        self.calls.append(("record", run.run_id))
        if self.broken:
            raise RuntimeError("the tracker is down")


def test_the_driver_tells_trackers_each_outcome_once_and_goes_on_when_one_fails(
    tmp_path: Path,
) -> None:
    spec = _tiny(epochs=1)
    good, bad, lines = _Recorder(), _Recorder(broken=True), []
    summary = run_study(
        spec, tmp_path / "s", device="cpu", progress=False, echo=lines.append, trackers=[bad, good]
    )
    assert summary.done == 1 and not summary.failed  # the tracker's failure is not the run's
    (run,) = studies.plan(spec, device="cpu")
    assert good.calls == bad.calls == [("start", "tiny"), ("record", run.run_id)]
    assert any(
        "not logged to the recorder: RuntimeError: the tracker is down" in line for line in lines
    )
    with studies.open_store(tmp_path / "s") as store:
        assert [r["status"] for r in store.runs()] == ["done"]
    again = _Recorder()  # a run measured before is skipped and not told again
    run_study(spec, tmp_path / "s", device="cpu", progress=False, echo=None, trackers=[again])
    assert again.calls == [("start", "tiny")]


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``robustscope ARGS`` in this process; return its one error line (exit status 2)."""
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert "Traceback" not in err
    return " ".join(err.split())


def test_missing_extras_are_one_line_errors_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: import fails
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    out = tmp_path / "study"
    line = _main(monkeypatch, capsys, "study", "--preset", "smoke", "--out", str(out), "--mlflow")
    assert "--mlflow needs the optional package mlflow" in line
    assert "pip install 'robustscope[mlflow]'" in line
    line = _main(
        monkeypatch, capsys, "study", "--preset", "smoke", "--out", str(out), "--tensorboard", "tb"
    )
    assert "pip install 'robustscope[tensorboard]'" in line
    assert not out.exists()  # refused before anything ran
    run_dir = tmp_path / "run"
    line = _main(
        monkeypatch, capsys, "train", "--dataset", "digits", "--out", str(run_dir),
        "--tensorboard", str(tmp_path / "tb"),
    )  # fmt: skip
    assert "--tensorboard needs the optional package tensorboard" in line
    assert "pip install 'robustscope[tensorboard]'" in line
    assert not run_dir.exists()
    with pytest.raises(TrackerError, match=r"robustscope\[mlflow\]"):
        MlflowTracker(str(tmp_path / "mlruns"))
