"""A study claims its runs: two drivers on one directory train each run once; claims of
dead drivers are taken over (same host: the pid is gone; any host: the heartbeat is older
than the lease); a live driver's claim is never taken; all held → a message naming it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robustscope.studies import (
    StudyError,
    load_spec,
    open_store,
    plan,
    preset,
    record,
    run_study,
    runner,
)
from robustscope.studies.execute import RunOutcome
from robustscope.studies.store import Claimant, Heartbeat, Store, StoreError
from robustscope.studies.store.claims import pid_alive

HOST = socket.gethostname()


def _spec(name: str = "claims", eps: list[float] | None = None) -> Any:
    raw = preset("smoke").model_dump(mode="json")
    raw["name"] = name
    raw["methods"] = [{"method": "pgd", "eps": eps or [0.0, 0.1], "params": {"steps": 3}}]
    return load_spec(raw)


def _claim_row(store: Store, run_id: str, token: str, pid: int, *, host: str = HOST,
               age: float = 0.0) -> None:  # fmt: skip
    """A claim as another driver would have left it, last renewed ``age`` seconds ago."""
    t = time.time() - age
    with store.transaction() as c:
        c.execute(
            "INSERT OR REPLACE INTO claims (run_id, token, host, pid, since, heartbeat) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, token, host, pid, t - 5.0, t),
        )


def _registered(tmp_path: Path, spec: Any) -> tuple[Path, list[str]]:
    out = tmp_path / spec.name
    plans = plan(spec, device="cpu")
    with open_store(out, create=True) as store:
        record.register_study(store, spec, plans)
    return out, [p.run_id for p in plans]


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another live process (not this one)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc.pid
    proc.kill()
    proc.wait()


# ----------------------------------------------------------------------------- the rules


def test_claim_rules(tmp_path: Path, dead_pid: int, live_pid: int) -> None:
    out, (r0, r1) = _registered(tmp_path, _spec())
    me = Claimant.here()
    with open_store(out) as store:
        first = store.claim_run(r0, me)
        assert (first.outcome, first.holder) == ("claimed", None)
        since = store.claim_of(r0).since  # type: ignore[union-attr]
        assert store.claim_run(r0, me).outcome == "claimed"  # one's own claim: renewed
        assert store.claim_of(r0).since == since  # type: ignore[union-attr]  # ... not restarted

        # a live driver on this host, fresh heartbeat: held, whoever asks
        _claim_row(store, r1, "live", live_pid)
        held = store.claim_run(r1, me)
        assert held.outcome == "held" and held.holder is not None
        assert (held.holder.host, held.holder.pid, held.holder.token) == (HOST, live_pid, "live")
        # ... also with an old heartbeat as long as the lease has not run out
        _claim_row(store, r1, "live", live_pid, age=100.0)
        assert store.claim_run(r1, me, lease_s=180.0).outcome == "held"
        # ... and taken over once it has
        taken = store.claim_run(r1, me, lease_s=60.0)
        assert taken.outcome == "claimed" and taken.holder is not None
        assert taken.holder.token == "live" and "no heartbeat for 100 s (lease 60 s)" in str(
            taken.reason
        )
        assert store.claim_of(r1).token == me.token  # type: ignore[union-attr]

        # a driver whose process has ended on this host: taken over at once
        _claim_row(store, r1, "dead", dead_pid)
        assert not pid_alive(dead_pid)
        taken = store.claim_run(r1, me)
        assert taken.outcome == "claimed" and taken.holder is not None
        assert taken.reason == f"its process (pid {dead_pid} on this host) has ended"

        # another host: its pid says nothing here, only the heartbeat counts
        _claim_row(store, r1, "far", dead_pid, host="elsewhere.example", age=10.0)
        assert store.claim_run(r1, me).outcome == "held"
        _claim_row(store, r1, "far", dead_pid, host="elsewhere.example", age=1000.0)
        assert store.claim_run(r1, me).outcome == "claimed"

        # a run done with the caller's measurement settings is not claimed again
        store.upsert_run(r0, "claims", {"measure_hash": "abc"}, status="done")
        assert store.claim_run(r0, me, measure_hash="abc").outcome == "measured"
        assert store.claim_run(r0, me, measure_hash="other").outcome == "claimed"

        assert store.claimed_by(me.token) == sorted([r0, r1])
        assert store.release_run(r0, "not-me") is False and store.release_run(r0, me.token)
        assert store.claimed_by(me.token) == [r1]
        claim = store.claim_of(r1)
        assert claim is not None
        desc = claim.describe(now=claim.heartbeat + 3.2)
        assert desc.startswith(f"host {HOST}, pid {os.getpid()}, since ")
        assert desc.endswith("UTC (last heartbeat 3 s ago)")


def test_a_zombie_is_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        assert pid_alive(proc.pid)
        proc.send_signal(signal.SIGKILL)
        deadline = time.time() + 10
        while pid_alive(proc.pid) and time.time() < deadline:  # killed, not reaped: a zombie
            time.sleep(0.05)
        assert not pid_alive(proc.pid)
    finally:
        proc.wait()
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(-5)


def test_heartbeat_renews_from_a_background_thread(tmp_path: Path) -> None:
    out, (r0, r1) = _registered(tmp_path, _spec())
    me = Claimant.here()
    with open_store(out) as store:
        store.claim_run(r0, me, now=1000.0)
        _claim_row(store, r1, "someone-else", os.getpid(), age=500.0)
        with Heartbeat(store.path, me.token, interval=0.05) as beat:
            time.sleep(0.5)
        assert beat.beats >= 3 and not beat._thread.is_alive()
        mine, other = store.claim_of(r0), store.claim_of(r1)
        assert mine is not None and time.time() - mine.heartbeat < 1.0
        assert mine.since == 1000.0  # the claim itself is unchanged
        assert other is not None and time.time() - other.heartbeat > 400  # not renewed
    with pytest.raises(StoreError, match="interval must be > 0"):
        Heartbeat(out, "t", interval=0)


# ----------------------------------------------------------------------------- run_study


def test_run_study_takes_over_a_dead_drivers_claims(tmp_path: Path, dead_pid: int) -> None:
    spec = _spec()
    out, ids = _registered(tmp_path, spec)
    with open_store(out) as store:
        for rid in ids:
            store.set_status(rid, "running")  # as the killed driver left them
            _claim_row(store, rid, "killed", dead_pid)
    lines: list[str] = []
    summary = run_study(spec, out, device="cpu", progress=False, echo=lines.append)
    assert summary.done == 2 and summary.held == {}
    assert sum("taking over from host" in line and "has ended" in line for line in lines) == 2
    with open_store(out) as store:
        assert all(r["status"] == "done" and r["attempts"] == 2 for r in store.runs())
        assert store.claims_table().empty


def test_run_study_leaves_held_runs_and_stops_when_all_are_held(
    tmp_path: Path, live_pid: int
) -> None:
    spec = _spec()
    out, (r0, r1) = _registered(tmp_path, spec)
    with open_store(out) as store:
        _claim_row(store, r0, "other-driver", live_pid)
    lines: list[str] = []
    summary = run_study(spec, out, device="cpu", progress=False, echo=lines.append)
    assert summary.done == 1 and list(summary.held) == [r0]
    assert f"host {HOST}, pid {live_pid}, since" in summary.held[r0]
    assert any("held by another robustscope study process" in line for line in lines)
    with open_store(out) as store:
        runs = {r["run_id"]: r for r in store.runs()}
        assert (runs[r0]["status"], runs[r0]["attempts"]) == ("pending", 0)  # never touched
        assert (runs[r1]["status"], runs[r1]["attempts"]) == ("done", 1)
        assert store.claims_table()["run_id"].tolist() == [r0]  # the other driver's, kept

    with pytest.raises(StudyError) as err:  # everything left is held
        run_study(spec, out, device="cpu", progress=False, echo=None)
    message = str(err.value)
    assert "all 1 run(s) left are held by another robustscope study process" in message
    assert f"host {HOST}, pid {live_pid}, since " in message and "last heartbeat" in message


def test_an_interrupted_driver_releases_its_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec()
    out, _ = _registered(tmp_path, spec)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, device="cpu", progress=False, echo=None)
    with open_store(out) as store:
        assert store.claims_table().empty
        statuses = {r["run_id"]: (r["status"], r["error"]) for r in store.runs()}
        assert ("pending", "interrupted before it finished") in statuses.values()


def test_a_driver_whose_claim_was_taken_over_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (suspended) driver finishing a run that another driver took over in the meantime
    must not overwrite the new holder's run: nothing is written, the holder is returned."""
    spec = _spec(eps=[0.0])
    out, (r0,) = _registered(tmp_path, spec)
    slow, fast = Claimant("slow", HOST, os.getpid()), Claimant("fast", HOST, os.getpid())
    run = plan(spec, device="cpu")[0]
    with open_store(out) as store:
        assert record.claim(store, run, slow, "mh").outcome == "claimed"
        with store.transaction() as c:  # slow's lease runs out while it trains
            c.execute("UPDATE claims SET heartbeat = heartbeat - 1000")
        taken = record.claim(store, run, fast, "mh", lease_s=60.0)
        assert taken.outcome == "claimed" and taken.holder is not None
        outcome = RunOutcome(run_id=r0, ok=True, metrics={"clean_accuracy": 0.5})
        lost_to = record.record_outcome(store, spec.name, run, outcome, "mh", slow)
        assert lost_to is not None and lost_to.token == "fast"
        row = {r["run_id"]: r for r in store.runs()}[r0]
        assert row["status"] == "running" and store.metrics_table().empty
        assert store.claim_of(r0).token == "fast"  # type: ignore[union-attr]
        # the holder records normally
        assert record.record_outcome(store, spec.name, run, outcome, "mh", fast) is None
        assert {r["run_id"]: r for r in store.runs()}[r0]["status"] == "done"
        assert store.measured("mh") == {r0}


def test_the_ray_driver_claims_the_runs_it_submits(tmp_path: Path, live_pid: int) -> None:
    ray = pytest.importorskip("ray")
    spec = _spec()
    out, (r0, r1) = _registered(tmp_path, spec)
    with open_store(out) as store:
        _claim_row(store, r0, "other-driver", live_pid)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_study(spec, out, executor="ray", device="cpu", echo=None)
    finally:
        ray.shutdown()
    assert summary.done == 1 and list(summary.held) == [r0]
    with open_store(out) as store:
        runs = {r["run_id"]: r for r in store.runs()}
        assert runs[r0]["attempts"] == 0 and runs[r1]["attempts"] == 1
        assert not (out / "runs" / r0).exists()  # never submitted
