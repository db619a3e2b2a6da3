"""Studies: one command from a spec to the trade-off report.

A study (:class:`StudySpec`, from YAML or a preset) trains a family of models along the
robustness axis, attacks and probes every member (:func:`run_study`), stores everything in
a SQLite results store (:func:`open_store`) and feeds the report (``robustscope report``).
"""

from __future__ import annotations

from robustscope.studies.execute import RunOutcome, execute_run
from robustscope.studies.plan import RunPlan, plan
from robustscope.studies.presets import DEFAULT_PRESET, preset, preset_names
from robustscope.studies.runner import StudySummary, run_study
from robustscope.studies.spec import StudyError, StudySpec, load_spec
from robustscope.studies.store import (
    AttackFlag,
    AttackResult,
    Store,
    StoreError,
    collect_provenance,
    export,
    open_store,
)

__all__ = [
    "DEFAULT_PRESET",
    "AttackFlag",
    "AttackResult",
    "RunOutcome",
    "RunPlan",
    "Store",
    "StoreError",
    "StudyError",
    "StudySpec",
    "StudySummary",
    "collect_provenance",
    "execute_run",
    "export",
    "load_spec",
    "open_store",
    "plan",
    "preset",
    "preset_names",
    "run_study",
]
