"""The study-level bookkeeping on top of the results store (driver side only).

* :func:`register_study` — the spec and every planned run (status ``pending`` for new
  runs; existing runs keep their status);
* :func:`measured_runs` — runs done with the current evaluation/probe settings;
* :func:`mark_running`, :func:`record_outcome` — a run's life cycle; an outcome's history,
  metrics, probe scalars and arrays and its final status are written together;
* :func:`summary_table` — one row per run for ``robustscope show``.
"""

from __future__ import annotations

import math
import platform
import socket
from pathlib import Path
from typing import Any

from robustscope.studies.execute import RunOutcome
from robustscope.studies.plan import RunPlan
from robustscope.studies.spec import StudySpec

__all__ = ["mark_running", "measured_runs", "record_outcome", "register_study", "summary_table"]


def _provenance(device: str) -> dict[str, Any]:
    import torch

    import robustscope

    return {
        "robustscope_version": robustscope.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device,
        "host": socket.gethostname(),
    }


def register_study(store: Any, spec: StudySpec, plans: list[RunPlan]) -> None:
    """Record the spec and every planned run (new runs ``pending``; others unchanged)."""
    store.add_study(spec.name, spec.model_dump(mode="json"))
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
    """Write everything ``outcome`` measured, then its status (done / failed)."""
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
    store.add_provenance(run.run_id, _provenance(run.config.device))
    store.set_status(
        run.run_id,
        "done" if outcome.ok else "failed",
        error=outcome.error,
        checkpoint=outcome.checkpoint,
        train_time_s=outcome.metrics.get("train_time_s"),
    )


def summary_table(study_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run: label, status, clean accuracy, robust accuracy under the spec's first
    attack at each of its ε > 0, and the mean input-Fisher norm when probed."""
    from robustscope.studies import store as store_mod

    path = Path(study_dir) / "results.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results store; run `robustscope study` first")
    with store_mod.open(path) as store:
        study = store.study() or {}
        runs = store.runs()
        metrics = store.metrics_table()
        probes = store.probes_table()
    attacks = study.get("spec", {}).get("evaluation", {}).get("attacks", [])
    first = ""
    if attacks:
        a = attacks[0]
        first = a.get("label") or f"{a.get('attack', 'pgd')}-{a.get('norm', 'linf')}"
    rows = []
    for r in sorted(runs, key=lambda r: (r["config"].get("model", ""), r["eps"], r["seed"])):
        rid = r["run_id"]
        m = metrics.loc[rid].to_dict() if rid in metrics.index else {}
        row: dict[str, Any] = {"run": r["config"].get("label", rid), "status": r["status"]}
        row["clean"] = m.get("clean_accuracy", math.nan)
        for key in sorted(k for k in m if k.endswith("/robust_accuracy")):
            attack, eps, _ = key.rsplit("/", 2)
            if float(eps) > 0 and attack == first:
                row[f"{attack} ε={eps}"] = m[key]
        if rid in probes.index and "input_fisher/frobenius_mean" in probes.columns:
            row["Fisher ‖F‖_F"] = float(probes.loc[rid, "input_fisher/frobenius_mean"])
        rows.append(row)
    return rows
