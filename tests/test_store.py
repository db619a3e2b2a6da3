"""The results store (robustscope.studies.store): round trips, upserts, artifacts, attack
results, wide tables, schema versions, SIGKILL safety, concurrent reads, export, claims."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from robustscope.studies import store as store_mod
from robustscope.studies.store import (
    SCHEMA_VERSION,
    AttackFlag,
    AttackResult,
    Store,
    StoreError,
    export,
    open_store,
    vocab,
)

NAN, INF = math.nan, math.inf


def _same(a: float, b: float) -> bool:
    """Equal floats, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def _study(tmp_path: Path, runs: int = 2) -> Store:
    store = open_store(tmp_path, create=True)
    store.add_study("s", {"name": "s", "eps": [0.0, 0.1], "nested": {"x": [1, 2]}})
    for i in range(runs):
        store.upsert_run(
            f"r{i}",
            "s",
            {"label": f"run {i}", "model": "mlp", "config": {"dataset": "digits", "lr": 0.1}},
            method="pgd" if i else "standard",
            eps=0.1 * i,
            seed=i,
        )
    return store


# ----------------------------------------------------------------------------- round trips


def test_every_table_round_trips_with_nan_and_inf(tmp_path: Path) -> None:
    third = 1.0 / 3.0
    arrays = {"hist": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with _study(tmp_path) as store:
        store.set_status("r1", "running", started=100.0)
        store.add_history(
            "r1",
            [
                {"epoch": 1, "loss": third, "acc": np.float32(0.5), "stop_reason": None},
                {"epoch": 2, "loss": NAN, "acc": torch.tensor(0.75), "note": "text", "d": {}},
                {"epoch": 3, "loss": INF, "flag": True, "lr": -INF},
            ],
        )
        metrics = {"clean_accuracy": 0.1 + 0.2, "nan": NAN, "inf": INF, "ninf": -INF, "n": 7}
        store.add_metrics("r1", metrics)
        store.add_probe("r1", "margins", "test", {"mean": third, "undefined": NAN}, arrays)
        store.add_provenance("r1", {"host": "h", "device": "cpu", "git_commit": None})
        store.add_provenance(None, {"robustscope_version": "9.9"})
        store.set_status("r1", "done", checkpoint="runs/s/r1", train_time_s=np.float64(2.5))
        store.set_status("r0", "running")
        store.set_status("r0", "failed", error="boom", finished=200.0)

    with open_store(tmp_path / "results.sqlite") as store:
        assert store.study() == {
            "name": "s",
            "spec": {"name": "s", "eps": [0.0, 0.1], "nested": {"x": [1, 2]}},
            "created": pytest.approx(time.time(), abs=60),
            "updated": pytest.approx(time.time(), abs=60),
        }
        runs = {r["run_id"]: r for r in store.runs()}
        r1, r0 = runs["r1"], runs["r0"]
        assert (r1["status"], r1["attempts"], r1["checkpoint"]) == ("done", 1, "runs/s/r1")
        assert r1["started"] == 100.0 and r1["finished"] >= 100.0 and r1["train_time_s"] == 2.5
        assert (r1["method"], r1["eps"], r1["seed"]) == ("pgd", 0.1, 1)
        assert r1["config"]["config"] == {"dataset": "digits", "lr": 0.1}
        assert (r0["status"], r0["error"], r0["finished"]) == ("failed", "boom", 200.0)
        assert [r["run_id"] for r in store.runs("done")] == ["r1"]

        hist = store.history_long()
        got = {(e, k): v for e, k, v in hist[["epoch", "key", "value"]].itertuples(index=False)}
        want = {
            (1, "loss"): third,
            (1, "acc"): 0.5,
            (2, "loss"): NAN,
            (2, "acc"): 0.75,
            (3, "loss"): INF,
            (3, "flag"): 1.0,
            (3, "lr"): -INF,
        }
        assert got.keys() == want.keys()  # strings, None and dicts were skipped
        assert all(_same(got[k], want[k]) for k in want), got

        m = store.metrics_table().loc["r1"].to_dict()
        assert m.keys() == metrics.keys()
        assert all(_same(m[k], float(v)) for k, v in metrics.items()), m

        p = store.probes_long()
        assert list(p["split"]) == ["test", "test"] and list(p["key"]) == ["mean", "undefined"]
        assert p["value"].iloc[0] == third and math.isnan(p["value"].iloc[1])
        np.testing.assert_array_equal(
            store.load_artifact("r1", "margins", "hist", "test"), arrays["hist"]
        )

        prov = store.provenance("r1")
        assert prov == {"host": "h", "device": "cpu"}  # None (unknown) is not recorded
        assert store.provenance() == {"robustscope_version": "9.9"}
        assert len(store.provenance_table()) == 3

        # the storage convention itself: REAL columns, ±inf as REAL, NaN as NULL
        kinds = dict(store.conn.execute("SELECT name, typeof(value) FROM metrics"))
        assert kinds == {
            "clean_accuracy": "real",
            "nan": "null",
            "inf": "real",
            "ninf": "real",
            "n": "real",
        }


def test_values_are_validated_and_converted_to_plain_floats(tmp_path: Path) -> None:
    with _study(tmp_path) as store:
        store.add_metrics("r0", {"a": np.float32(0.25), "b": torch.tensor(3), "c": np.int64(2)})
        assert dict(store.conn.execute("SELECT name, typeof(value) FROM metrics")) == {
            "a": "real",
            "b": "real",
            "c": "real",
        }
        assert store.metrics_table().loc["r0"].tolist() == [0.25, 3.0, 2.0]
        with pytest.raises(StoreError, match="metric 'x' of run 'r0' must be a real number"):
            store.add_metrics("r0", {"ok": 1.0, "x": "0.5"})
        with pytest.raises(StoreError, match="must be a real number"):
            store.add_metrics("r0", {"v": np.array([1.0, 2.0])})
        assert "ok" not in store.metrics_table().columns  # the failed call wrote nothing
        with pytest.raises(StoreError, match=r"run 'nope' is not in the store; call upsert_run"):
            store.add_metrics("nope", {"a": 1.0})
        with pytest.raises(StoreError, match="study 'other' is not in the store"):
            store.upsert_run("r9", "other", {})
        with pytest.raises(StoreError, match="status must be one of"):
            store.set_status("r0", "finished")
        with pytest.raises(StoreError, match="has no 'epoch' key"):
            store.add_history("r0", [{"loss": 1.0}])
        with pytest.raises(StoreError, match="array 'a' has dtype object; store numbers only"):
            store.add_probe("r0", "p", "test", {}, {"a": np.array([1, "x"], dtype=object)})
        with pytest.raises(StoreError, match="array 'b' has dtype <U1; store numbers only"):
            store.add_probe("r0", "p", "test", {}, {"b": "x"})


# ----------------------------------------------------------------------------- idempotence


def test_upserts_are_idempotent_and_replace(tmp_path: Path) -> None:
    with _study(tmp_path) as store:
        rows = [{"epoch": e, "loss": 1.0 / e, "acc": 0.1 * e} for e in (1, 2, 3)]
        store.add_history("r0", rows)
        store.add_history("r0", rows)
        assert store.conn.execute("SELECT count(*) FROM history").fetchone()[0] == 6
        store.add_history("r0", [{"epoch": 2, "loss": NAN}])  # replaces one value only
        h = store.history_table().set_index("epoch")
        assert math.isnan(h.loc[2, "loss"]) and h.loc[2, "acc"] == 0.2 and h.loc[3, "loss"] == 1 / 3

        store.add_metrics("r0", {"a": 1.0, "b": 2.0})
        store.add_metrics("r0", {"a": 1.5})
        assert store.metrics_table().loc["r0"].to_dict() == {"a": 1.5, "b": 2.0}

        store.set_status("r0", "done")
        store.upsert_run("r0", "s", {"label": "renamed"}, method="standard", eps=0.0, seed=0)
        (r0,) = [r for r in store.runs() if r["run_id"] == "r0"]
        assert r0["status"] == "done" and r0["config"] == {"label": "renamed"}
        store.upsert_run("r0", "s", {}, status="pending")
        assert store.runs("pending")[0]["run_id"] == "r0"
        assert store.metrics_table().loc["r0", "a"] == 1.5  # results kept

        store.set_status("r0", "running")
        store.set_status("r0", "running")
        assert store.runs("running")[0]["attempts"] == 2

        # a probe result replaces the previous one for (run, probe, split), files included
        store.add_probe("r0", "p", "test", {"x": 1.0, "old": 2.0}, {"a": np.zeros(3)})
        first = store.root / store.artifacts_table()["path"].iloc[0]
        store.add_probe("r0", "p", "test", {"x": 3.0}, {"a": np.ones(3)})
        second = store.root / store.artifacts_table()["path"].iloc[0]
        assert store.probes_long()[["key", "value"]].values.tolist() == [["x", 3.0]]
        assert not first.exists() and second.exists() and first != second
        store.add_probe("r0", "p", "test", {"x": 3.0}, {"a": np.ones(3)})  # same again
        assert second.exists() and len(list(second.parent.iterdir())) == 1


# ----------------------------------------------------------------------------- artifacts


def test_artifacts_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    f64 = rng.standard_normal((7, 5))
    f64[0, :3] = [NAN, INF, -0.0]
    arrays: dict[str, Any] = {
        "f64": f64,
        "f32": rng.standard_normal((4, 3)).astype(np.float32),
        "f32_transposed": rng.standard_normal((3, 6)).astype(np.float32).T,
        "big_endian": np.arange(4, dtype=">f8").reshape(2, 2),
        "int": np.arange(5, dtype=np.int64),
        "bool": np.array([[True, False]]),
        "scalar": np.float64(2.5),
        "torch": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "nested/key": np.ones(2),
    }
    with _study(tmp_path) as store:
        store.add_probe("r1", "spectra", "all", {"n": 1}, arrays)
    with open_store(tmp_path) as store:
        index = store.artifacts_table().set_index("key")
        for key, value in arrays.items():
            want = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            got = store.load_artifact("r1", "spectra", key)
            assert got is not None, key
            assert got.dtype == want.dtype and got.shape == want.shape, key
            assert got.tobytes() == np.ascontiguousarray(want).tobytes(), key  # bit-exact
            row = index.loc[key]
            file = tmp_path / row["path"]
            assert file.is_file() and file.parent.parent.parent.parent.name == "artifacts"
            assert row["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
            assert row["shape"] == want.shape and row["dtype"] == want.dtype.str
        assert np.signbit(store.load_artifact("r1", "spectra", "f64")[0, 2])  # -0.0 kept
        assert store.load_artifact("r1", "spectra", "missing") is None
        assert store.load_artifact("r1", "spectra", "f64", split="test") is None

        file = tmp_path / index.loc["f32", "path"]
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        file.write_bytes(bytes(data))
        with pytest.raises(StoreError, match=rf"{file.name}: content differs from the SHA-256"):
            store.load_artifact("r1", "spectra", "f32")
        file.unlink()
        with pytest.raises(StoreError, match=rf"{file.name}: artifact spectra/all/f32 .* cannot"):
            store.load_artifact("r1", "spectra", "f32")


def test_transactions_nest_and_roll_back_files(tmp_path: Path) -> None:
    with _study(tmp_path) as store:
        with store.transaction():
            store.add_metrics("r0", {"kept": 1.0})
            with pytest.raises(RuntimeError), store.transaction():  # a savepoint
                store.add_metrics("r0", {"inner": 1.0})
                store.add_probe("r0", "p", "test", {"x": 1.0}, {"a": np.ones(2)})
                inner_file = next((tmp_path / "artifacts").rglob("*.npz"))
                raise RuntimeError("one step failed")
            store.add_probe("r0", "q", "test", {"y": 2.0})
        assert store.metrics_table().loc["r0"].dropna().to_dict() == {"kept": 1.0}
        assert list(store.probes_long()["probe"]) == ["q"]
        assert not inner_file.exists()  # written in the rolled-back savepoint, then removed

        with pytest.raises(RuntimeError), store.transaction():
            store.add_metrics("r0", {"lost": 1.0})
            store.add_probe("r0", "p", "test", {"x": 1.0}, {"a": np.arange(3.0)})
            written = [p for p in (tmp_path / "artifacts").rglob("*.npz")]
            assert len(written) == 1
            raise RuntimeError("driver crashed")
        assert "lost" not in store.metrics_table().columns and "p" not in set(
            store.probes_long()["probe"]
        )
        assert not written[0].exists()  # the rolled-back transaction's file was removed


# ----------------------------------------------------------------------------- wide tables


def _pgd(i: int, **kw: Any) -> AttackResult:
    """Run i's PGD result: 0.1·i at ε = 0.1 (0.2·i on correct), 0.05·i at 0.2 (NaN on correct)."""
    fields: dict[str, Any] = {
        "label": "pgd-linf",
        "attack": "pgd",
        "norm": "linf",
        "params": {"steps": 20, "rel_stepsize": 0.25},
        "n": 100,
        "epsilons": (0.1, 0.2),
        "robust_accuracy": (0.1 * i, 0.05 * i),
        "robust_accuracy_on_correct": (0.2 * i, NAN),
        "flags": (AttackFlag("zero_gradients", "3 points have zero gradients", 3.0),),
    }
    fields.update(kw)
    return AttackResult(**fields)


def test_wide_tables_one_row_per_run(tmp_path: Path) -> None:
    with _study(tmp_path, runs=3) as store:
        for i in range(3):
            rid = f"r{i}"
            store.add_history(
                rid, [{"epoch": e, "loss": e + i, "test_accuracy": 0.5} for e in (1, 2)]
            )
            store.add_metrics(rid, {"clean_accuracy": 0.9 - 0.1 * i, "seed": 42.0})
            store.set_attack_results(rid, [_pgd(i)])
            store.add_probe(rid, "input_fisher", "all", {"frobenius_mean": float(i)})
            store.add_probe(rid, "margins", "all", {"test/margin_mean": -float(i)})
        runs = store.runs_table()
        assert list(runs["run_id"]) == ["r0", "r1", "r2"]
        assert list(runs["label"]) == ["run 0", "run 1", "run 2"]
        assert list(runs["dataset"]) == ["digits"] * 3 and list(runs["family"]) == [
            "standard",
            "pgd",
            "pgd",
        ]
        assert runs["eps"].tolist() == [0.0, 0.1, 0.2]

        h = store.history_table()
        assert list(h.columns) == ["run_id", "epoch", "loss", "test_accuracy"]
        assert len(h) == 6 and not h.duplicated(["run_id", "epoch"]).any()
        assert h.set_index(["run_id", "epoch"]).loc[("r2", 2), "loss"] == 4

        m = store.metrics_table()
        assert list(m.index) == ["r0", "r1", "r2"] and "label" not in m.columns
        assert list(m.columns) == ["clean_accuracy", "seed"]  # attack results are not metrics
        mj = store.metrics_table(with_runs=True)
        assert list(mj.index) == ["r0", "r1", "r2"]
        assert list(mj.columns[:10]) == [
            "label",
            "model",
            "dataset",
            "method",
            "family",
            "eps",
            "norm",
            "train_size",
            "seed",
            "status",
        ]
        assert mj.loc["r2", "eps"] == 0.2 and mj.loc["r2", "seed"] == 2
        assert mj.loc["r2", "seed:metric"] == 42.0  # a colliding metric name is suffixed

        rob = store.robustness_table()
        assert list(rob.columns) == [
            "run_id",
            "label",
            "attack",
            "norm",
            "params",
            "attack_eps",
            "n",
            "escalates",
            "robust_accuracy",
            "robust_accuracy_on_correct",
        ]
        assert len(rob) == 6  # 3 runs × 2 ε; flags are not robustness rows
        assert rob["escalates"].isna().all()  # the spec's own evaluations
        row = rob[(rob.run_id == "r2") & (rob.attack_eps == 0.1)].iloc[0]
        assert (row["label"], row["attack"], row["norm"], row["n"]) == (
            "pgd-linf",
            "pgd",
            "linf",
            100,
        )
        assert row["params"] == '{"rel_stepsize":0.25,"steps":20}'  # canonical JSON
        assert (row["robust_accuracy"], row["robust_accuracy_on_correct"]) == (0.2, 0.4)
        assert math.isnan(rob[(rob.run_id == "r2") & (rob.attack_eps == 0.2)].iloc[0, -1])

        long = store.attack_results_long()  # as stored: the quantities as rows
        assert len(long) == 12 and list(long.columns[-4:]) == [
            "quantity",
            "value",
            "n",
            "escalates",
        ]
        assert set(long.columns) == {*rob.columns, "quantity", "value"} - {
            "robust_accuracy",
            "robust_accuracy_on_correct",
        }
        # the storage convention: REAL ε and values, NaN as NULL, n an INTEGER
        kinds = store.conn.execute(
            "SELECT DISTINCT typeof(attack_eps), typeof(value), typeof(n) FROM attack_results "
            "WHERE run_id = 'r2' ORDER BY 2"
        ).fetchall()
        assert kinds == [("real", "null", "integer"), ("real", "real", "integer")]
        wide = store.attack_results_table()
        quantities = ("robust_accuracy", "robust_accuracy_on_correct")  # label, quantity, ε
        assert list(wide.columns) == [f"pgd-linf/{e}/{q}" for q in quantities for e in (0.1, 0.2)]
        assert wide.loc["r1", "pgd-linf/0.1/robust_accuracy"] == 0.1
        flags = store.attack_flags_long()
        assert flags.values.tolist() == [
            [f"r{i}", "pgd-linf", "zero_gradients", "3 points have zero gradients", 3.0]
            for i in range(3)
        ]

        p = store.probes_table()
        assert list(p.columns) == ["input_fisher/frobenius_mean", "margins/test/margin_mean"]
        assert p["input_fisher/frobenius_mean"].tolist() == [0.0, 1.0, 2.0]

        store.add_probe("r0", "input_fisher", "train", {"frobenius_mean": 9.0})
        with pytest.raises(StoreError, match="several splits; pass split="):
            store.probes_table()
        assert store.probes_table(split="train").loc["r0", "input_fisher/frobenius_mean"] == 9.0


def test_attack_results_replace_per_run_and_are_validated(tmp_path: Path) -> None:
    with _study(tmp_path) as store:
        cw = _pgd(1, label="cw-linf-linf", attack="cw-linf", params={}, flags=())
        store.set_attack_results("r1", [_pgd(1), cw])
        assert set(store.robustness_table()["label"]) == {"pgd-linf", "cw-linf-linf"}
        store.set_attack_results("r1", [_pgd(2, flags=())])  # measured again, without CW
        rob = store.robustness_table()
        assert set(rob["label"]) == {"pgd-linf"} and rob["robust_accuracy"].tolist() == [0.2, 0.1]
        assert store.attack_flags_long().empty  # the old flags went with the old results

        # exact ε: 8/255 and 0.0313725 are different rows, never merged by rounding
        store.set_attack_results("r0", [_pgd(1, epsilons=(8 / 255, 0.0313725), flags=())])
        eps = store.attack_results_long()
        assert sorted(set(eps[eps.run_id == "r0"]["attack_eps"])) == [0.0313725, 8 / 255]
        cols = [c for c in store.attack_results_table().columns if c.startswith("pgd-linf/0.03")]
        assert len(cols) == 4  # two ε, two quantities: four distinct columns

        before = store.attack_results_long()
        other = _pgd(1, params={"steps": 5}, flags=())
        with pytest.raises(StoreError, match=r"two attack results labelled 'pgd-linf' \(pgd linf"):
            store.set_attack_results("r1", [_pgd(1), other])
        with pytest.raises(StoreError, match="must be AttackResult records, got dict"):
            store.set_attack_results("r1", [{"label": "x"}])  # type: ignore[list-item]
        with pytest.raises(StoreError, match="run 'nope' is not in the store"):
            store.set_attack_results("nope", [_pgd(1)])
        pd.testing.assert_frame_equal(store.attack_results_long(), before)  # nothing written

    with pytest.raises(StoreError, match="one entry per ε"):
        _pgd(1, epsilons=(0.1,))
    with pytest.raises(StoreError, match="an ε is listed twice"):
        _pgd(1, epsilons=(0.1, 0.1))
    with pytest.raises(StoreError, match="norm must be one of linf, l2"):
        _pgd(1, norm="l1")
    with pytest.raises(StoreError, match="params are not JSON-serialisable"):
        _pgd(1, params={"x": object()})
    with pytest.raises(StoreError, match=r"ε must be finite and ≥ 0, got -0\.1"):
        _pgd(1, epsilons=(-0.1, 0.2))


def test_empty_store_tables(tmp_path: Path) -> None:
    with open_store(tmp_path, create=True) as store:
        assert store.study() is None and store.runs() == []
        assert list(store.history_table().columns) == ["run_id", "epoch"]
        assert store.metrics_table().empty and store.probes_table().empty
        assert store.runs_table().empty and "eps" in store.runs_table().columns
        assert store.robustness_table().empty and "attack_eps" in store.robustness_table()
        assert store.attack_results_long().empty and store.attack_flags_long().empty
        assert store.attack_results_table().empty and store.claims_table().empty
    with Store.open(tmp_path / "results.sqlite") as again:  # the classmethod spelling
        assert again.path == tmp_path / "results.sqlite" and again.root == tmp_path


# ----------------------------------------------------------------------------- schema


def test_a_new_store_has_the_tables_of_the_vocabulary(tmp_path: Path) -> None:
    with open_store(tmp_path, create=True) as store:
        rows = store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert sorted(n for (n,) in rows) == sorted(vocab.TABLES)
        columns = {
            table: [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]
            for table in ("attack_results", "attack_flags")
        }
    assert columns["attack_results"] == list(vocab.ATTACK_RESULT_COLUMNS)
    assert columns["attack_flags"] == list(vocab.ATTACK_FLAG_COLUMNS)


def test_schema_version_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"results.sqlite: no results store here"):
        open_store(tmp_path)
    path = tmp_path / "results.sqlite"
    open_store(path, create=True).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    newer = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match=rf"{path}: results store schema version {newer} is newer"):
        open_store(path)
    with pytest.raises(StoreError, match="newer"):
        open_store(tmp_path, create=True)  # create never overwrites

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=rf"{other}: a SQLite database holding tables \['t'\]"):
        open_store(other)
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA user_version = 77")
    conn.close()
    with pytest.raises(StoreError, match=rf"{other}: results store schema version 77 is newer"):
        open_store(other)
    conn = sqlite3.connect(other)
    conn.execute("PRAGMA user_version = -1")
    conn.close()
    with pytest.raises(StoreError, match=rf"{other}: unknown results store schema version -1"):
        open_store(other)

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=rf"{junk}: not a readable results store"):
        open_store(junk)


_V1_SCHEMA = """
CREATE TABLE studies (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, study TEXT NOT NULL REFERENCES studies(name),
    config TEXT NOT NULL, method TEXT, eps REAL, seed INTEGER, status TEXT NOT NULL,
    checkpoint TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started REAL,
    finished REAL, train_time_s REAL);
CREATE TABLE history (run_id TEXT NOT NULL, epoch INTEGER NOT NULL, key TEXT NOT NULL, value,
    PRIMARY KEY (run_id, epoch, key));
CREATE TABLE metrics (run_id TEXT NOT NULL, name TEXT NOT NULL, value,
    PRIMARY KEY (run_id, name));
CREATE TABLE probes (run_id TEXT NOT NULL, probe TEXT NOT NULL, split TEXT NOT NULL,
    key TEXT NOT NULL, value, PRIMARY KEY (run_id, probe, split, key));
CREATE TABLE artifacts (run_id TEXT NOT NULL, probe TEXT NOT NULL, split TEXT NOT NULL,
    key TEXT NOT NULL, path TEXT NOT NULL, shape TEXT NOT NULL, dtype TEXT NOT NULL,
    PRIMARY KEY (run_id, probe, split, key));
CREATE TABLE provenance (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
    PRIMARY KEY (run_id, key));
INSERT INTO studies VALUES ('s', '{}', 1.0, 1.0);
INSERT INTO runs VALUES ('r', 's', '{"label": "old"}', 'pgd', 0.1, 0, 'done', NULL, NULL, 1,
    1.0, 2.0, 3.0), ('q', 's', '{}', 'pgd', 0.2, 0, 'failed', NULL, 'x', 1, 1.0, 2.0, 'nan');
INSERT INTO history VALUES ('r', 1, 'loss', 'nan'), ('r', 1, 'acc', 0.5);
INSERT INTO metrics VALUES ('r', 'a', 0.25), ('r', 'b', 'inf'), ('r', 'c', '-inf'), ('r', 'd', 'nan'),
    ('r', 'pgd-linf/0.1/robust_accuracy', 0.5), ('r', 'pgd-linf/0.1/robust_accuracy_on_correct', 'nan'),
    ('r', 'pgd-linf/flag/zero_gradients', 1.0), ('r', 'train/test_accuracy', 0.75);
INSERT INTO probes VALUES ('r', 'p', 'all', 'k', 'nan');
INSERT INTO provenance VALUES ('r', 'host', 'h'), ('r', 'git', NULL);
PRAGMA user_version = 1;
"""


def test_version_1_store_is_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    conn.executescript(_V1_SCHEMA)
    conn.close()
    with open_store(tmp_path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        meta = dict(store.conn.execute("SELECT key, value FROM meta"))
        assert meta["migrated_from"] == "1"  # 1 → 2 → 3 in one go
        m = store.metrics_table().loc["r"]
        assert m["a"] == 0.25 and m["b"] == INF and m["c"] == -INF and math.isnan(m["d"])
        assert dict(store.conn.execute("SELECT name, typeof(value) FROM metrics"))["d"] == "null"
        assert list(m.index) == ["a", "b", "c", "d", "train/test_accuracy"]
        rob = store.robustness_table()  # the spec ('{}') lists no attack: guessed from the label
        assert rob[["label", "attack", "norm", "params", "attack_eps"]].values.tolist() == [
            ["pgd-linf", "pgd", "linf", None, 0.1]
        ]
        assert rob["robust_accuracy"].tolist() == [0.5] and rob["n"].isna().all()
        assert math.isnan(rob["robust_accuracy_on_correct"].iloc[0])
        assert store.attack_flags_long()["flag"].tolist() == ["zero_gradients"]
        h = store.history_table()
        assert math.isnan(h.loc[0, "loss"]) and h.loc[0, "acc"] == 0.5
        assert math.isnan(store.probes_table().loc["r", "p/k"])
        assert store.provenance("r") == {"host": "h"}
        times = {r["run_id"]: r["train_time_s"] for r in store.runs()}
        assert times == {"r": 3.0, "q": None}  # v1's text 'nan' became NULL
        store.add_metrics("r", {"e": 1.0})  # writable after migration
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []


# ----------------------------------------------------------------------------- crash safety

_WRITER = """
import sys, time
import numpy as np
sys.path.insert(0, {src!r})
from robustscope.studies.store import open_store
store = open_store({root!r}, create=True)
store.add_study("s", {{}})
store.upsert_run("r", "s", {{}})
i = 0
while True:
    with store.transaction():
        store.add_metrics("r", {{f"t{{i}}/m{{j}}": float(i) for j in range(200)}})
        store.add_probe("r", f"p{{i}}", "all", {{"i": float(i)}}, {{"a": np.full((30, 30), float(i))}})
        if {block} and i == 10:
            print("inside", flush=True)  # rows and the array file written, not committed
            time.sleep(60)
        store.set_status("r", "running")
    i += 1
    if i == 10 and not {block}:
        print("ready", flush=True)
"""


@pytest.mark.parametrize("block", [False, True], ids=["while-writing", "inside-transaction"])
def test_sigkill_mid_write_leaves_whole_transactions(tmp_path: Path, block: bool) -> None:
    """SIGKILL a writer (at a random point of its loop, or blocked inside a transaction whose
    rows and array file are written); reopening finds exactly the committed transactions."""
    src = str(Path(store_mod.__file__).resolve().parents[3])  # the sources under test
    code = _WRITER.format(src=src, root=str(tmp_path), block=block)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not block:
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert line == ("inside" if block else "ready") and proc.returncode == -signal.SIGKILL

    with open_store(tmp_path) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        per_tx = store.metrics_long()["name"].str.split("/").str[0].value_counts()
        n = len(per_tx)
        assert set(per_tx) == {200}  # only whole transactions
        assert set(per_tx.index) == {f"t{i}" for i in range(n)}
        assert n == 10 if block else n >= 10
        assert sorted(store.probes_long()["value"]) == [float(i) for i in range(n)]
        for i in range(n):
            got = store.load_artifact("r", f"p{i}", "a")
            np.testing.assert_array_equal(got, np.full((30, 30), float(i)))
        assert store.runs()[0]["attempts"] == n
        if block:  # the uncommitted transaction's file exists (written first) but no row names it
            files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.npz")}
            assert len(files) == n + 1 and set(store.artifacts_table()["path"]) < files
        store.add_metrics("r", {"after": 1.0})  # the store is writable again
    print(f"transactions committed before SIGKILL ({'blocked' if block else 'random'}): {n}")


def test_reader_sees_committed_state_while_a_writer_is_mid_transaction(tmp_path: Path) -> None:
    with _study(tmp_path) as writer, open_store(tmp_path) as reader:
        writer.add_metrics("r0", {"a": 1.0})
        with writer.transaction():
            writer.add_metrics("r0", {"a": 2.0, "b": 3.0})
            t0 = time.perf_counter()
            seen = reader.metrics_table().loc["r0"].to_dict()
            assert time.perf_counter() - t0 < 1.0  # WAL: the reader does not wait
            assert seen == {"a": 1.0}
        assert reader.metrics_table().loc["r0"].to_dict() == {"a": 2.0, "b": 3.0}
        assert reader.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reader.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert reader.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000


# ----------------------------------------------------------------------------- provenance


def test_collect_provenance_records_versions_and_git(tmp_path: Path) -> None:
    info = store_mod.collect_provenance("cpu", {"b": 1, "a": [0.1]})
    assert info["torch_version"] == torch.__version__ and info["device"] == "cpu"
    assert info["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert info["config_hash"] == hashlib.sha256(b'{"a": [0.1], "b": 1}').hexdigest()
    src = Path(store_mod.__file__).parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else None
    assert info["git_commit"] == expected
    with _study(tmp_path) as store:
        store.add_provenance("r0")  # default: this process
        assert store.provenance("r0")["host"] == info["host"]
        assert store.provenance("r0").get("git_commit") == expected


# ----------------------------------------------------------------------------- export


def _filled(tmp_path: Path) -> None:
    with _study(tmp_path) as store:
        for i, rid in enumerate(["r0", "r1"]):
            store.add_history(rid, [{"epoch": 1, "loss": 0.1 + i / 3, "acc": NAN if i else 0.5}])
            store.add_metrics(rid, {"clean_accuracy": 0.3 + i / 7, "x": INF, "y": NAN})
            store.set_attack_results(rid, [_pgd(i, epsilons=(1 / 3, 8 / 255))])
            store.add_probe(
                rid, "margins", "all", {"mean": -INF, "std": 1 / 3}, {"h": np.ones((2, 2))}
            )
            store.add_provenance(rid, {"host": "h"})
        store.set_status("r1", "done", train_time_s=1.25)


def test_export_csv_reads_back_equal(tmp_path: Path) -> None:
    _filled(tmp_path)
    paths = export(tmp_path, format="csv")
    assert [p.name for p in paths] == [f"{t}.csv" for t in store_mod.EXPORT_TABLES]
    assert all(p.parent == tmp_path / "export" for p in paths)
    with open_store(tmp_path) as store:
        expected = {
            "runs": store.runs_table(),
            "metrics": store.metrics_table(with_runs=True).reset_index(),
            "history": store.history_table(),
            "probes": store.probes_table().reset_index(),
            "attack_results": store.attack_results_long(),
            "attack_flags": store.attack_flags_long(),
        }
    for name, want in expected.items():
        got = pd.read_csv(tmp_path / "export" / f"{name}.csv")
        assert list(got.columns) == list(want.columns), name
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True, obj=name)
    attack = pd.read_csv(tmp_path / "export" / "attack_results.csv")
    assert set(attack["attack_eps"]) == {1 / 3, 8 / 255}  # ε read back exactly
    assert attack["value"].isna().sum() == 2  # each run's NaN (on correct at 8/255): empty
    metrics = pd.read_csv(tmp_path / "export" / "metrics.csv")
    assert metrics["x"].tolist() == [INF, INF] and metrics["y"].isna().all()
    arts = pd.read_csv(tmp_path / "export" / "artifacts.csv")
    assert len(arts) == 2 and json.loads(arts["shape"].iloc[0]) == [2, 2]
    assert all((tmp_path / p).is_file() for p in arts["path"])
    out = export(tmp_path, out=tmp_path / "elsewhere")
    assert all(p.parent == tmp_path / "elsewhere" and p.is_file() for p in out)
    with pytest.raises(StoreError, match="'csv' or 'parquet', got 'xlsx'"):
        export(tmp_path, format="xlsx")


def test_export_parquet_works_or_names_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _filled(tmp_path)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(StoreError, match="pip install pyarrow"):
            export(tmp_path, format="parquet")
    else:
        paths = export(tmp_path, format="parquet")
        got = pd.read_parquet(tmp_path / "export" / "metrics.parquet")
        assert len(paths) == len(store_mod.EXPORT_TABLES) and got["x"].tolist() == [INF, INF]
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(
        StoreError, match="needs pyarrow, which is not installed: pip install pyarrow"
    ):
        export(tmp_path, format="parquet")
