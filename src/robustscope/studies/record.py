"""The study-level bookkeeping on top of the results store (driver side only).

* :func:`register_study` — the spec and every planned run (status ``pending`` for new
  runs; existing runs keep their status); a loaded run whose checkpoint file changed
  replaces the run of its old content (same file, same label), which is removed;
* :func:`measured_runs` — runs done with the current evaluation/probe settings;
* :func:`claim` — claim a run for this driver and count the attempt (``running``), unless
  another live driver holds it or it was measured meanwhile (``docs/store.md``, claims);
* :func:`record_outcome` — an outcome's history, metrics, attack results (escalated ones
  included), probe scalars and arrays, its health (whether it trained), its final status and
  the release of its claim, in one transaction;
* :func:`release_claims` — at the driver's end, give back the runs it claimed but did not
  record (they return to ``pending``).

``robustscope show`` reads its table through ``robustscope.report.summarize``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from robustscope.studies.execute import RunOutcome
from robustscope.studies.plan import RunPlan
from robustscope.studies.spec import StudySpec
from robustscope.studies.store import (
    LEASE_S,
    Claim,
    Claimant,
    ClaimResult,
    Store,
    collect_provenance,
)
from robustscope.studies.store.vocab import LOADED, MEASURE_HASH_KEY, TRAIN_TIME_S

__all__ = [
    "claim",
    "measured_runs",
    "record_outcome",
    "register_study",
    "release_claims",
    "superseded",
]


def register_study(store: Store, spec: StudySpec, plans: list[RunPlan]) -> None:
    """Record the spec and every planned run (new runs ``pending``; others unchanged); remove
    the stored runs of checkpoints whose content changed (:func:`superseded`)."""
    store.add_study(spec.name, spec.model_dump(mode="json"))
    store.add_provenance(
        None, collect_provenance(config=spec.model_dump(mode="json")), study=spec.name
    )
    known = {r["run_id"]: r for r in store.runs()}
    for run_id in superseded(known.values(), plans):
        store.remove_run(run_id)
        known.pop(run_id)
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


def superseded(stored: Iterable[Mapping[str, Any]], plans: list[RunPlan]) -> list[str]:
    """Ids of the ``stored`` runs (``Store.runs()`` rows) that loaded a checkpoint file a
    planned run loads again under the same label with another id: the file's content
    changed, so their results describe a model that is gone."""
    planned = {(p.source.path, p.label): p.run_id for p in plans if p.source is not None}
    out = []
    for row in stored:
        cfg = row.get("config")
        if not isinstance(cfg, Mapping) or not isinstance(cfg.get(LOADED), Mapping):
            continue
        now = planned.get((str(cfg[LOADED].get("path")), str(cfg.get("label"))))
        if now is not None and now != row["run_id"]:
            out.append(str(row["run_id"]))
    return out


def measured_runs(store: Store, mhash: str) -> set[str]:
    """Ids of the runs finished with the measurement settings of hash ``mhash``."""
    return store.measured(mhash)


def claim(
    store: Store, run: RunPlan, claimant: Claimant, mhash: str, *, lease_s: float = LEASE_S
) -> ClaimResult:
    """Claim ``run`` for ``claimant`` and mark it ``running`` (an attempt), in one
    transaction; ``held`` / ``measured`` results leave the run untouched."""
    with store.transaction():
        result = store.claim_run(run.run_id, claimant, measure_hash=mhash, lease_s=lease_s)
        if result.outcome == "claimed":
            store.set_status(run.run_id, "running")
    return result


def record_outcome(
    store: Store,
    study: str,
    run: RunPlan,
    outcome: RunOutcome,
    mhash: str,
    claimant: Claimant | None = None,
) -> Claim | None:
    """Write everything ``outcome`` measured and its status (done / failed), and release
    ``claimant``'s claim of the run, in one transaction: a run is either recorded whole or
    not at all. The run's attack results replace those stored before, as a whole.

    A ``claimant`` that no longer holds the run (its claim went stale and another driver
    took it over) records nothing: the run belongs to the new holder, which is returned;
    None when the outcome was recorded.
    """
    with store.transaction():
        if claimant is not None and not store.release_run(run.run_id, claimant.token):
            holder = store.claim_of(run.run_id)
            if holder is not None:
                return holder
        _record(store, study, run, outcome, mhash)
    return None


def release_claims(store: Store, claimant: Claimant) -> list[str]:
    """Release every run ``claimant`` still holds; those still ``running`` (claimed, never
    recorded: the driver stopped) go back to ``pending``. Returns their ids."""
    with store.transaction():
        released = store.claimed_by(claimant.token)
        for run_id in released:  # recorded runs released their claim: these never finished
            store.set_status(run_id, "pending", error="interrupted before it finished")
            store.release_run(run_id, claimant.token)
    return released


def _record(store: Store, study: str, run: RunPlan, outcome: RunOutcome, mhash: str) -> None:
    config = {**run.to_dict(), MEASURE_HASH_KEY: mhash if outcome.ok else None}
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
    if outcome.ok or outcome.attacks:  # a run that failed before its attacks keeps the old
        store.set_attack_results(run.run_id, outcome.attacks)
    h = outcome.health
    if h is None:  # failed before it could be told: an old mark is cleared
        store.set_health(run.run_id, None)
    else:
        store.set_health(run.run_id, h.status, h.reason, h.fix)
    for p in outcome.probes:
        store.add_probe(run.run_id, p.probe, "all", p.scalars, p.arrays)
    store.add_provenance(
        run.run_id, outcome.provenance or collect_provenance(run.device, run.settings())
    )
    store.set_status(
        run.run_id,
        "done" if outcome.ok else "failed",
        error=outcome.error,
        checkpoint=outcome.checkpoint,
        train_time_s=outcome.metrics.get(TRAIN_TIME_S),
    )
