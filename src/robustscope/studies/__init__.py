"""Studies: one command from a spec to the trade-off report.

A study (:class:`StudySpec`, from YAML or a preset) trains a family of models along the
robustness axis, attacks and probes every member (:func:`run_study`), stores everything in
a SQLite results store (:func:`open`) and feeds the report (``robustscope report``).
"""

from __future__ import annotations

from robustscope.studies.execute import RunOutcome, execute_run
from robustscope.studies.plan import RunPlan, plan
from robustscope.studies.presets import DEFAULT_PRESET, preset, preset_names
from robustscope.studies.runner import StudySummary, run_study
from robustscope.studies.spec import StudyError, StudySpec, load_spec
from robustscope.studies.store import Store, StoreError, collect_provenance, export, open

__all__ = [
    "DEFAULT_PRESET",
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
    "open",
    "plan",
    "preset",
    "preset_names",
    "run_study",
]
