"""Running a study: plan → executor → store. Idempotent and resumable.

:func:`run_study` plans the runs of a spec, skips those already measured with the same
evaluation and probe settings, executes the others with an executor and writes each
outcome to the results store as it arrives (only this driver writes the store):

* ``local`` — one run after another in this process, with the training progress bars;
* ``ray`` — each run a Ray task with the spec's ``resources`` request (``num_cpus``,
  ``num_gpus``), on a local Ray instance or the cluster at ``address``. Run directories
  are written by the workers, so on a multi-machine cluster ``out`` must be on a shared
  file system.

Kill the driver at any moment and run the same command again: finished runs are kept (the
store commits each run's results in one transaction), an interrupted run resumes training
from its last checkpoint and is then attacked and probed again.

Two drivers on one study directory share the work: each claims a run in the store before
executing it (``docs/store.md``, claims), so every run is trained once. A driver skips runs
another live driver holds, takes over the claims of drivers that died, and, when every run
left is held by others, stops with a :class:`StudyError` naming the holder.

Experiment trackers (:mod:`robustscope.trackers`: MLflow, TensorBoard) see the study through
the :class:`StudyTracker` protocol: ``start`` once the runs are planned, ``record`` for each
outcome right after the store recorded it — in the driver, so runs executed by Ray workers are
logged too, once. Without trackers nothing of this happens.

Layout of a study directory ``out``: ``results.sqlite`` (the store), ``runs/<run_id>/``
(each trained run's checkpoints; a run loaded from a spec's ``checkpoints`` has none), ``artifacts/`` (arrays referenced by the store),
``report.html`` and ``figures/`` (written by ``robustscope report``).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from robustscope.studies.execute import RunOutcome, execute_run
from robustscope.studies.plan import RunPlan, plan
from robustscope.studies.spec import StudyError, StudySpec
from robustscope.studies.store import HEARTBEAT_S, LEASE_S, Claim, Claimant, Heartbeat
from robustscope.studies.store.vocab import CLEAN_ACCURACY

__all__ = ["StudySummary", "StudyTracker", "measure_hash", "run_study"]

Executor = Literal["local", "ray"]


#: bumped whenever the same evaluation/probe settings start to measure differently (an
#: attack's or probe's defaults changed), so stored results are measured again, not mixed in.
#: 2: evaluate's ε-continuation (warm_start=True) and DeepFool's box="clip" + refine_steps=10
#: 3: every run stores its per-point evaluation (probe ``points``: what the report's
#:    intervals resample) and its health; flagged evaluations are escalated
MEASURE_VERSION = 3


def measure_hash(spec: StudySpec) -> str:
    """Hash of the spec's evaluation, probe and post-hoc settings and of :data:`MEASURE_VERSION`: a
    run measured with other settings, or by an older version of the measurements, is
    measured again (its training is kept).
    """
    blob = {
        "evaluation": spec.evaluation.model_dump(mode="json"),
        "probes": spec.probes.model_dump(mode="json"),
        "version": MEASURE_VERSION,
    }
    if spec.posthoc is not None:  # unset, the hash is what it was before the field existed
        blob["posthoc"] = spec.posthoc.model_dump(mode="json")
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StudySummary:
    """What :func:`run_study` did.

    Attributes:
        out: the study directory.
        planned: number of runs in the plan.
        skipped: runs already measured (not executed again), also by another driver
            meanwhile.
        done: runs executed successfully now.
        failed: run id → error message of runs that failed now.
        seconds: wall time.
        held: run id → the other driver holding it (host, pid, since) — runs left to it.
    """

    out: Path
    planned: int
    skipped: int
    done: int
    failed: dict[str, str]
    seconds: float
    held: dict[str, str] = field(default_factory=dict)


Take = Callable[[RunPlan], str]


class StudyTracker(Protocol):
    """An experiment tracker fed by the study driver (:mod:`robustscope.trackers`).

    ``start`` is called once the runs are planned and the study registered in the store,
    before any run executes (an error there stops the study before it trains); ``record``
    after each outcome the store recorded, in the driver (never in a worker). An error in
    ``record`` is reported on the driver's lines and does not stop the study: the store
    keeps every result. Ending the tracked study (e.g. attaching the report) is the
    tracker's own call, made by its owner after :func:`run_study` returns.
    """

    def start(self, spec: StudySpec, out: Path, plans: list[RunPlan]) -> None: ...

    def record(self, run: RunPlan, outcome: RunOutcome) -> None: ...


def _run_local(
    todo: list[RunPlan], take: Take, spec: StudySpec, out: Path, progress: bool
) -> Iterator[RunOutcome]:
    """Execute the runs one after another, each claimed just before it starts; runs held by
    others are tried again after each run (their holder may have finished or died)."""
    left = list(todo)
    while True:
        chosen = None
        for run in list(left):
            outcome = take(run)
            if outcome != "held":
                left.remove(run)
            if outcome == "claimed":
                chosen = run
                break
        if chosen is None:
            return
        yield execute_run(chosen, spec, out / "runs" / chosen.run_id, progress=progress)


def _run_ray(
    todo: list[RunPlan], spec: StudySpec, out: Path, address: str | None
) -> Iterator[RunOutcome]:
    if not todo:
        return
    try:
        import ray
    except ImportError:
        raise StudyError(
            "--executor ray needs Ray: pip install 'ray[default]' (or pip install -e .[ray])"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(execute_run)
        res = {"num_cpus": spec.resources.get("num_cpus", 1.0)}
        if spec.resources.get("num_gpus", 0.0):
            res["num_gpus"] = spec.resources["num_gpus"]
        pending = [
            task.options(**res).remote(run, spec, str(out / "runs" / run.run_id)) for run in todo
        ]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started_here:
            ray.shutdown()


def _remarks(outcome: RunOutcome) -> str:
    """What the driver's line about a finished run adds: a collapse and its likely fix, and
    the evaluations escalated."""
    out = ""
    escalated = [a for a in outcome.attacks if a.escalates is not None]
    if escalated:
        out += " — gradient masking flagged: " + ", ".join(
            f"{a.escalates} escalated to {a.attack}" for a in escalated
        )
    h = outcome.health
    if h is not None and h.collapsed:
        out += f" — COLLAPSED, left out of the report: {h.reason}; likely fix: {h.fix}"
    return out


def _track(
    trackers: Sequence[StudyTracker],
    run: RunPlan,
    outcome: RunOutcome,
    echo: Callable[[str], None] | None,
) -> None:
    """Give a recorded outcome to every tracker; a tracker's failure is one line (a warning
    when the driver is silent), not the study's end: the store holds the results."""
    for tracker in trackers:
        try:
            tracker.record(run, outcome)
        except Exception as exc:
            line = f"{run.label}: not logged to {tracker}: {type(exc).__name__}: {exc}"
            if echo is None:
                warnings.warn(line, RuntimeWarning, stacklevel=2)
            else:
                echo(line)


def _all_held(out: Path, held: dict[str, Claim], lease_s: float) -> StudyError:
    holders = {(c.host, c.pid): c for c in held.values()}
    who = "; ".join(c.describe() for c in holders.values())
    return StudyError(
        f"{out}: all {len(held)} run(s) left are held by another robustscope study process "
        f"({who}), which is running them. Wait for it to finish, or stop it: the claims of a "
        f"process that has ended are taken over at once on its host, and from another host "
        f"after {lease_s:.0f} s without a heartbeat"
    )


def run_study(
    spec: StudySpec,
    out: str | Path | None = None,
    *,
    executor: Executor = "local",
    address: str | None = None,
    device: str = "auto",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    lease_s: float = LEASE_S,
    heartbeat_s: float = HEARTBEAT_S,
    trackers: Sequence[StudyTracker] = (),
) -> StudySummary:
    """Run (or resume) the study ``spec`` into ``out`` (default ``runs/<spec.name>``).

    Args:
        spec: the validated study.
        out: the study directory.
        executor: ``"local"`` or ``"ray"`` (see the module doc).
        address: Ray cluster address (``ray`` only; None starts a local instance).
        device: training/evaluation device of every run (``auto``: CUDA when present).
        progress: training progress bars (local executor).
        echo: receives one line per run started/finished (None: silent).
        lease_s: seconds without a heartbeat after which another driver's claim is stale.
        heartbeat_s: seconds between two renewals of this driver's claims.
        trackers: experiment trackers told about the study and each recorded outcome
            (:class:`StudyTracker`; e.g. :class:`robustscope.trackers.MlflowTracker`).

    Returns:
        a :class:`StudySummary`; failed runs are listed there and in the store, not raised.

    Raises:
        StudyError: every run left to do is held by another live driver (the message names
            it), or the executor is unknown.
    """
    from robustscope.studies import record
    from robustscope.studies.store import open_store

    if executor not in ("local", "ray"):
        raise StudyError(f"unknown executor {executor!r}; valid executors: local, ray")
    if not lease_s > 2 * heartbeat_s > 0:
        raise StudyError(
            f"lease_s ({lease_s:g} s) must exceed twice heartbeat_s ({heartbeat_s:g} s): a "
            "live driver's claim would otherwise look stale between two heartbeats"
        )
    t0 = time.perf_counter()
    say = echo or (lambda _line: None)
    out = Path(out) if out is not None else Path("runs") / spec.name
    out.mkdir(parents=True, exist_ok=True)
    plans = plan(spec, device=device)
    mhash = measure_hash(spec)
    claimant = Claimant.here()
    with open_store(out / "results.sqlite", create=True) as store:
        record.register_study(store, spec, plans)
        for tracker in trackers:
            tracker.start(spec, out, plans)
        measured = record.measured_runs(store, mhash)
        todo = [p for p in plans if p.run_id not in measured]
        skipped = len(plans) - len(todo)
        if skipped:
            say(f"{spec.name}: {skipped} of {len(plans)} runs already measured; skipping them")
        by_id = {p.run_id: p for p in todo}
        held: dict[str, Claim] = {}

        def take(run: RunPlan) -> str:
            nonlocal skipped
            result = record.claim(store, run, claimant, mhash, lease_s=lease_s)
            if result.outcome == "held":
                assert result.holder is not None  # a held run names its holder
                held[run.run_id] = result.holder
                return "held"
            held.pop(run.run_id, None)
            if result.outcome == "measured":
                skipped += 1
                say(f"{run.label}: measured by another process meanwhile; skipping it")
            elif result.holder is not None:
                say(f"{run.label}: taking over from {result.holder.describe()}: {result.reason}")
            return result.outcome

        done, failed = 0, {}
        try:
            with Heartbeat(store.path, claimant.token, heartbeat_s):
                outcomes: Iterable[RunOutcome]
                if executor == "local":
                    outcomes = _run_local(todo, take, spec, out, progress)
                else:  # the driver claims the runs it submits
                    outcomes = _run_ray(
                        [p for p in todo if take(p) == "claimed"], spec, out, address
                    )
                for i, outcome in enumerate(outcomes, 1):
                    run = by_id[outcome.run_id]
                    lost_to = record.record_outcome(store, spec.name, run, outcome, mhash, claimant)
                    if lost_to is not None:
                        say(
                            f"[{i}/{len(todo)}] {run.label}: not recorded — its claim went stale "
                            f"and {lost_to.describe()} took it over"
                        )
                    elif outcome.ok:
                        done += 1
                        clean = outcome.metrics.get(CLEAN_ACCURACY, float("nan"))
                        how = (
                            "loaded from its checkpoint"
                            if run.source is not None
                            else f"{outcome.timings.get('train', 0):.0f} s training"
                        )
                        say(
                            f"[{i}/{len(todo)}] {run.label}: clean {clean:.3f} ({how})"
                            + _remarks(outcome)
                        )
                    else:
                        failed[run.run_id] = outcome.error or "unknown error"
                        say(f"[{i}/{len(todo)}] {run.label}: FAILED — {outcome.error}")
                    if lost_to is None:
                        _track(trackers, run, outcome, echo)
        finally:
            record.release_claims(store, claimant)
    if held and not done and not failed:
        raise _all_held(out, held, lease_s)
    if held:
        say(
            f"{len(held)} run(s) are held by another robustscope study process "
            f"({next(iter(held.values())).describe()}); left to it"
        )
    return StudySummary(
        out,
        len(plans),
        skipped,
        done,
        failed,
        time.perf_counter() - t0,
        {rid: c.describe() for rid, c in held.items()},
    )
