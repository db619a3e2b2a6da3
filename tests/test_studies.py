"""Studies: specs, the planner, the results store, local/Ray execution, kill-and-resume."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from robustscope import studies
from robustscope.studies import StudyError, load_spec, plan, preset, record, run_study
from robustscope.studies.store import SCHEMA_VERSION, Claimant, StoreError

SMOKE = preset("smoke")


def _spec(**overrides: Any) -> studies.StudySpec:
    raw = SMOKE.model_dump(mode="json")
    raw.update(overrides)
    return load_spec(raw)


# ----------------------------------------------------------------------------- specs


def test_presets_validate_and_default_is_listed() -> None:
    assert studies.DEFAULT_PRESET == "tradeoff-fmnist"
    names = studies.preset_names()
    assert {"tradeoff-fmnist", "shi2020-small", "wen2020-small", "smoke"} <= set(names)
    for name in names:
        spec = preset(name)
        assert spec.name == name and spec.description and plan(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": "imagenet"}, "dataset: unknown name 'imagenet'; allowed: "),
        ({"methods": [{"method": "pgd", "eps": ["x/2"]}]}, "methods.0.eps"),
        ({"methods": [{"method": "pgd", "eps": [-0.1]}]}, "ε must be finite and ≥ 0"),
        ({"train": {"model": "mlp"}}, "set by the study's dataset/models/methods/seeds"),
        ({"train": {"epochz": 3}}, "unknown training option(s) epochz"),
        ({"probes": {"run": [{"name": "nope"}]}}, "probes.run: unknown name 'nope'"),
        (
            {"evaluation": {"attacks": [{"attack": "pgd", "bogus": 1}]}},
            "evaluation.attacks.0.bogus",
        ),
        (
            {"evaluation": {"attacks": [{"attack": "pgd"}, {"attack": "pgd", "eps": [0.2]}]}},
            "evaluation.attacks: two attacks are named 'pgd-linf'",
        ),
        ({"methods": [{"method": "pgd", "eps": "0,8/255"}]}, None),
    ],
)
def test_spec_errors_name_the_field(change: dict[str, Any], message: str | None) -> None:
    raw = SMOKE.model_dump(mode="json")
    raw.update(change)
    if message is None:  # accepted: ε lists written as in the papers
        assert load_spec(raw).methods[0].eps == [0.0, 8 / 255]
        return
    with pytest.raises(StudyError) as err:
        load_spec(raw)
    assert message in str(err.value)


def test_spec_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    raw = SMOKE.model_dump(mode="json")
    raw.pop("name")
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).name == "mine"  # the file's stem
    path.write_text("dataset: [unclosed")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(StudyError, match="no such study spec file"):
        load_spec(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- planner


def test_plan_merges_eps_zero_and_ids_are_stable() -> None:
    spec = _spec(
        methods=[
            {"method": "pgd", "eps": [0, 0.1], "params": {"steps": 3}},
            {"method": "trades", "eps": [0, "1/10"], "params": {"steps": 3}},
        ],
        seeds=[0, 1],
    )
    runs = plan(spec)
    methods = sorted((r.method, r.eps, r.seed) for r in runs)
    # ε = 0 is one standard run per seed, shared by both methods
    assert methods == [
        ("pgd", 0.1, 0),
        ("pgd", 0.1, 1),
        ("standard", 0.0, 0),
        ("standard", 0.0, 1),
        ("trades", 0.1, 0),
        ("trades", 0.1, 1),
    ]
    assert len({r.run_id for r in runs}) == 6
    assert [r.run_id for r in plan(spec)] == [r.run_id for r in runs]
    # the device does not change a run's identity; a training option does
    assert [r.run_id for r in plan(spec, device="cuda")] == [r.run_id for r in runs]
    other = _spec(**{**spec.model_dump(mode="json"), "train": {**spec.train, "lr": 0.01}})
    assert not {r.run_id for r in plan(other)} & {r.run_id for r in runs}
    pgd = next(r for r in runs if r.method == "pgd")
    assert pgd.config.method_params == {"steps": 3, "eps": 0.1}


def test_plan_tracks_pgd_at_the_largest_eps() -> None:
    spec = _spec(train={**SMOKE.train, "track": ["clean", "pgd"]})
    for run in plan(spec):
        assert run.config.track_params["pgd"]["eps"] == 0.1


# ----------------------------------------------------------------------------- store


def test_store_round_trip(tmp_path: Path) -> None:
    with studies.open_store(tmp_path, create=True) as store:
        store.add_study("s", {"a": 1})
        store.upsert_run("r1", "s", {"label": "one", "model": "m"}, method="pgd", eps=0.1, seed=0)
        store.upsert_run("r2", "s", {"label": "two"}, method="standard", eps=0.0, seed=0)
        store.set_status("r1", "running")
        store.add_history("r1", [{"epoch": 1, "loss": 1.5, "note": "x"}, {"epoch": 2, "loss": 1.0}])
        store.add_history("r1", [{"epoch": 2, "loss": 0.5}])  # replaces epoch 2
        store.add_metrics("r1", {"a": 0.25, "nan": math.nan, "inf": math.inf, "ninf": -math.inf})
        arrays = {"h": np.arange(6, dtype=np.float32).reshape(2, 3), "v": np.array([0.1, np.nan])}
        store.add_probe("r1", "margins", "test", {"mean": 0.3}, arrays)
        store.set_status("r1", "done", checkpoint="runs/r1", train_time_s=3.0)
    with studies.open_store(tmp_path / "results.sqlite") as store:
        assert store.study()["spec"] == {"a": 1}
        runs = {r["run_id"]: r for r in store.runs()}
        assert runs["r1"]["status"] == "done" and runs["r1"]["attempts"] == 1
        assert runs["r2"]["status"] == "pending" and [r["run_id"] for r in store.runs("done")] == [
            "r1"
        ]
        m = store.metrics_table()
        assert m.loc["r1", "a"] == 0.25 and math.isnan(m.loc["r1", "nan"])
        assert m.loc["r1", "inf"] == math.inf and m.loc["r1", "ninf"] == -math.inf
        h = store.history_table()
        assert list(h["loss"]) == [1.5, 0.5] and "note" not in h.columns
        assert store.probes_table().loc["r1", "margins/mean"] == 0.3
        got = store.load_artifact("r1", "margins", "h", split="test")
        assert got is not None and got.dtype == np.float32
        np.testing.assert_array_equal(got, arrays["h"])
        np.testing.assert_array_equal(
            store.load_artifact("r1", "margins", "v", "test"), arrays["v"]
        )
        assert store.load_artifact("r1", "margins", "missing", "test") is None
        t = store.runs_table()
        assert set(t["run_id"]) == {"r1", "r2"} and {"label", "eps", "status"} <= set(t.columns)
    paths = studies.export(tmp_path, format="csv")
    import pandas as pd

    assert pd.read_csv(tmp_path / "export" / "metrics.csv").loc[0, "a"] == 0.25
    assert {p.name for p in paths} >= {"runs.csv", "metrics.csv", "history.csv", "probes.csv"}


def test_store_refuses_other_schema_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no results store"):
        studies.open_store(tmp_path)
    path = tmp_path / "results.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"results.sqlite: results store schema version"):
        studies.open_store(path)


def test_store_survives_sigkill_mid_write(tmp_path: Path) -> None:
    code = f"""
import sys
from robustscope import studies
store = studies.open_store({str(tmp_path)!r}, create=True)
store.add_study("s", {{}})
store.upsert_run("r", "s", {{}})
i = 0
while True:
    store.add_metrics("r", {{f"m{{i}}_{{j}}": float(i) for j in range(50)}})
    i += 1
    if i == 20:
        print("ready", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with studies.open_store(tmp_path) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = store.metrics_table().columns
        per_tx: dict[str, int] = {}
        for name in names:
            per_tx[name.split("_")[0]] = per_tx.get(name.split("_")[0], 0) + 1
        assert len(per_tx) >= 20 and set(per_tx.values()) == {50}  # only whole transactions


# ----------------------------------------------------------------------------- running


def test_smoke_study_local_then_rerun_skips(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    lines: list[str] = []
    summary = run_study(SMOKE, out, device="cpu", progress=False, echo=lines.append)
    assert summary.planned == 2 and summary.done == 2 and not summary.failed
    with studies.open_store(out) as store:
        runs = store.runs_table()
        assert set(runs["status"]) == {"done"}
        metrics = store.metrics_table()
        assert {"clean_accuracy", "train/test_accuracy", "train_time_s"} <= set(metrics.columns)
        rob = store.robustness_table()
        assert len(rob) == 2 * 3 and set(rob["label"]) == {"pgd-linf"}  # 2 runs × 3 ε
        assert set(rob["attack_eps"]) == {0.0, 0.1, 0.2} and set(rob["n"]) == {100}
        assert set(rob["params"]) == {'{"steps":5}'} and set(rob["attack"]) == {"pgd"}
        clean = rob.join(metrics["clean_accuracy"], on="run_id")
        at0 = clean[clean.attack_eps == 0]
        assert (at0["robust_accuracy"] == at0["clean_accuracy"]).all()  # ε = 0 is clean
        assert (clean["robust_accuracy"] <= clean["clean_accuracy"]).all()
        history = store.history_table()
        assert len(history) == 4 and "track/test/input_fisher_frobenius_mean" in history.columns
        probes = store.probes_table()
        assert (probes["input_fisher/frobenius_mean"] > 0).all()
        rid = runs["run_id"].iloc[0]
        eig = store.load_artifact(rid, "input_fisher", "eigenvalues")
        assert eig is not None and eig.shape == (100, 10)
        # provenance collected where the run was computed (execute_run), and for the study
        prov = store.provenance(rid)
        assert {"host", "torch_version", "config_hash", "created", "device"} <= set(prov)
        assert prov["device"] == "cpu" and len(prov["config_hash"]) == 64
        assert "config_hash" in store.provenance(None)
    from robustscope.report import load_study, summary_rows, write_report

    data = load_study(out)
    rows = summary_rows(data)
    assert len(rows) == 2 and all(r["status"] == "done" for r in rows)
    # the per-point evaluation the Findings' intervals resample reproduces the stored numbers
    table = data.table()
    for rid in table.index:
        clean = data.points(rid, "clean_accuracy")
        assert clean is not None and len(clean) == 100
        assert clean.values.mean() == pytest.approx(table.loc[rid, "clean_accuracy"], abs=1e-12)
        for c in data.robust_columns() + data.robust_columns(on_correct=True):
            pts = data.points(rid, c.column)
            assert pts is not None
            value = pts.draw(np.arange(100)[None, :])[0]
            assert value == pytest.approx(table.loc[rid, c.column], abs=1e-12, nan_ok=True)
    # `robustscope show`: --json is those rows; the table names the attack once in its title
    shown = _cli("show", str(out), "--json")
    stdout, _ = shown.communicate(timeout=120)
    strict = [{k: None if v != v else v for k, v in r.items()} for r in rows]  # NaN → null
    assert shown.returncode == 0 and json.loads(stdout) == strict
    table = _cli("show", str(out))
    stdout, _ = table.communicate(timeout=120)
    first = next(k for k in rows[0] if " ε=" in k).split(" ε=")[0]
    flat = " ".join(stdout.split())  # rich may wrap the title at 80 columns
    assert table.returncode == 0 and f"robust accuracy under {first}" in flat
    assert f"{rows[0]['clean']:.3f}" in stdout

    report = write_report(out)
    text = report.read_text()
    assert "smoke" in text and text.count("data:image/png;base64,") >= 3
    assert (out / "figures" / "frontier.png").is_file()
    again = run_study(SMOKE, out, device="cpu", progress=False, echo=None)
    assert again.skipped == 2 and again.done == 0
    # new measurement settings: measured again, training kept (no new epochs)
    remeasure = _spec(evaluation={**SMOKE.evaluation.model_dump(), "n": 50})
    third = run_study(remeasure, out, device="cpu", progress=False, echo=None)
    assert third.done == 2 and third.skipped == 0
    with studies.open_store(out) as store:
        assert all(r["attempts"] == 2 for r in store.runs())


def _cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "robustscope", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def test_study_sigkill_then_resume(tmp_path: Path) -> None:
    raw = SMOKE.model_dump(mode="json")
    raw["train"] = {**raw["train"], "epochs": 4}
    raw["methods"] = [{"method": "pgd", "eps": [0.0, 0.1, 0.2], "params": {"steps": 3}}]
    spec_path = tmp_path / "killme.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "study"
    args = ["study", "--spec", str(spec_path), "--out", str(out), "--device", "cpu", "--no-report"]
    proc = _cli(*args)
    db = out / "results.sqlite"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                conn = sqlite3.connect(db, timeout=5)
                done = conn.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:
                done = 0
            if done >= 1:
                break
        time.sleep(0.2)
    assert done >= 1, "the study never finished a run"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with studies.open_store(out) as store:
        before = {r["run_id"]: r for r in store.runs()}
    finished_before = {k for k, r in before.items() if r["status"] == "done"}
    assert finished_before and len(before) == 3
    proc = _cli(*args, "--json")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["skipped"] == len(finished_before) and summary["failed"] == {}
    with studies.open_store(out) as store:
        after = {r["run_id"]: r for r in store.runs()}
        assert all(r["status"] == "done" for r in after.values())
        for rid in finished_before:  # not executed again
            assert after[rid]["attempts"] == before[rid]["attempts"] == 1
        history = store.history_table()
        assert history.groupby("run_id")["epoch"].max().eq(4).all()


def test_smoke_study_on_ray(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(SMOKE, tmp_path / "ray", executor="ray", device="cpu", echo=None)
    finally:
        ray.shutdown()
    assert summary.done == 2 and not summary.failed
    with studies.open_store(tmp_path / "ray") as store:
        assert set(store.runs_table()["status"]) == {"done"}
        assert "clean_accuracy" in store.metrics_table().columns


# ----------------------------------------------------------------------------- two drivers


def test_two_study_processes_on_one_directory_train_each_run_once(tmp_path: Path) -> None:
    spec = _spec(
        name="twice",
        methods=[{"method": "pgd", "eps": [0.0, 0.05, 0.1, 0.2], "params": {"steps": 3}}],
    )
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    out = tmp_path / "study"
    args = ["study", "--spec", str(path), "--out", str(out), "--device", "cpu", "--no-report"]
    procs = [_cli(*args, "--json"), _cli(*args, "--json")]
    results = [p.communicate(timeout=600) for p in procs]
    done = 0
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        # a process finding every run left held by the other stops with a message (exit 2)
        assert proc.returncode in (0, 2), stderr
        if proc.returncode == 2:
            assert "held by another robustscope study process" in stderr, stderr
        else:
            summary = json.loads(stdout)
            assert summary["failed"] == {}
            done += summary["done"]
    assert done == 4  # the two processes trained four runs between them
    with studies.open_store(out) as store:
        runs = store.runs()
        assert len(runs) == 4
        assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs)  # once each
        assert store.claims_table().empty
        assert len(store.robustness_table()) == 4 * 3


def test_cli_names_the_holder_when_everything_is_held(tmp_path: Path) -> None:
    """Every run claimed by another live process (a sleeping one, heartbeat fresh): the
    second `robustscope study` stops at once, naming the holder."""
    spec = _spec(name="held")
    out = tmp_path / "held"
    with studies.open_store(out, create=True) as store:
        record.register_study(store, spec, plan(spec, device="cpu"))
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        holder = Claimant("other-driver", socket.gethostname(), sleeper.pid)
        for r in store.runs():
            assert store.claim_run(r["run_id"], holder).outcome == "claimed"
    path = tmp_path / "held.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    try:
        proc = _cli(
            "study", "--spec", str(path), "--out", str(out), "--device", "cpu", "--no-report"
        )
        _, stderr = proc.communicate(timeout=300)
    finally:
        sleeper.kill()
        sleeper.wait()
    flat = " ".join(stderr.split())  # rich wraps long lines
    assert proc.returncode == 2, stderr
    assert flat.startswith("error:")
    assert "all 2 run(s) left are held by another robustscope study process" in flat
    assert f"host {socket.gethostname()}, pid {sleeper.pid}, since " in flat
    assert "taken over at once on its host" in flat
    with studies.open_store(out) as store:
        assert all(r["attempts"] == 0 for r in store.runs())
