"""The study-level bookkeeping on top of the results store (driver side only).

* :func:`register_study` — the spec and every planned run (status ``pending`` for new
  runs; existing runs keep their status);
* :func:`measured_runs` — runs done with the current evaluation/probe settings;
* :func:`mark_running`, :func:`record_outcome` — a run's life cycle; an outcome's history,
  metrics, probe scalars and arrays and its final status are written in one transaction.

``robustscope show`` reads its table through ``robustscope.report.summary_rows``.
"""

from __future__ import annotations

from typing import Any

from robustscope.studies.execute import RunOutcome
from robustscope.studies.plan import RunPlan
from robustscope.studies.spec import StudySpec
from robustscope.studies.store import collect_provenance

__all__ = ["mark_running", "measured_runs", "record_outcome", "register_study"]


def register_study(store: Any, spec: StudySpec, plans: list[RunPlan]) -> None:
    """Record the spec and every planned run (new runs ``pending``; others unchanged)."""
    store.add_study(spec.name, spec.model_dump(mode="json"))
    store.add_provenance(
        None, collect_provenance(config=spec.model_dump(mode="json")), study=spec.name
    )
    known = {r["run_id"]: r for r in store.runs()}
    for p in plans:
        if p.run_id in known:
            continue
        store.upsert_run(
            p.run_id,
            spec.name,
            p.to_dict(),
            method=p.method,
            eps=p.eps,
            seed=p.seed,
            status="pending",
        )


def measured_runs(store: Any, mhash: str) -> set[str]:
    """Ids of the runs finished with the measurement settings of hash ``mhash``."""
    out = set()
    for r in store.runs(status="done"):
        config = r["config"] if isinstance(r["config"], dict) else {}
        if config.get("measure_hash") == mhash:
            out.add(r["run_id"])
    return out


def mark_running(store: Any, run_id: str) -> None:
    store.set_status(run_id, "running")


def record_outcome(store: Any, study: str, run: RunPlan, outcome: RunOutcome, mhash: str) -> None:
    """Write everything ``outcome`` measured and its status (done / failed) in one
    transaction: a run is either recorded whole or not at all."""
    with store.transaction():
        _record(store, study, run, outcome, mhash)


def _record(store: Any, study: str, run: RunPlan, outcome: RunOutcome, mhash: str) -> None:
    config = {**run.to_dict(), "measure_hash": mhash if outcome.ok else None}
    store.upsert_run(
        run.run_id,
        study,
        config,
        method=run.method,
        eps=run.eps,
        seed=run.seed,
        status="running",
    )
    if outcome.history:
        store.add_history(run.run_id, outcome.history)
    if outcome.metrics:
        store.add_metrics(run.run_id, outcome.metrics)
    for p in outcome.probes:
        store.add_probe(run.run_id, p.probe, "all", p.scalars, p.arrays)
    store.add_provenance(
        run.run_id,
        outcome.provenance
        or collect_provenance(run.config.device, run.config.model_dump(mode="json")),
    )
    store.set_status(
        run.run_id,
        "done" if outcome.ok else "failed",
        error=outcome.error,
        checkpoint=outcome.checkpoint,
        train_time_s=outcome.metrics.get("train_time_s"),
    )
