"""``summary_rows``: one row per run for ``robustscope show``; :func:`summarize` adds which
of its keys hold robust accuracies (and at which ε), so that no caller reads them apart.

Example::

    for row in summary_rows(load_study("runs/tradeoff-fmnist")):
        print(row)
    # {'label': 'cnn standard ε=0 seed=0', 'status': 'done', 'clean': 0.881,
    #  'pgd-linf ε=0.05': 0.312, ..., 'Fisher ‖F‖_F': 3.61}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from robustscope.report.data import StudyData
from robustscope.studies.store import views
from robustscope.studies.store.vocab import (
    CLEAN_ACCURACY,
    COLLAPSED,
    HEALTH,
    HEALTH_COLUMNS,
    TRAIN_SIZE,
    format_eps,
)

__all__ = ["Summary", "summarize", "summary_rows"]

FISHER = "input_fisher/frobenius_mean"


@dataclass(frozen=True)
class Summary:
    """The summary table of a study.

    Attributes:
        rows: one dict per run (see :func:`summary_rows`).
        attack: the label of the attack whose robust accuracies the rows show (None: none).
        robust: row key → attack ε of each robust-accuracy key (``"pgd-linf ε=0.1"`` → 0.1).
    """

    rows: list[dict[str, Any]]
    attack: str | None
    robust: dict[str, float]


def summary_rows(data: StudyData) -> list[dict[str, Any]]:
    """One row per run (every status), ordered by model, family, ε, training-set size and
    seed: ``label``, ``status``, ``clean`` (clean accuracy), ``"<attack> ε=<e>"`` — robust
    accuracy under the spec's first attack at each of its evaluated ε > 0 — and
    ``"Fisher ‖F‖_F"`` (mean input-Fisher Frobenius norm) when that probe ran. Missing
    numbers are NaN.

    Robust accuracies are those the study reports: an escalated evaluation's lower figure
    (:meth:`StudyData.effective_attacks`). In a study where an evaluation was escalated every
    row has ``escalated`` (the escalation's attack, or None); in a study with a collapsed run
    every row has ``health``, ``health_reason`` and ``health_fix``
    (:meth:`StudyData.health`; None for a run not finished)."""
    return summarize(data).rows


def summarize(data: StudyData) -> Summary:
    """:func:`summary_rows` with the description of its robust-accuracy keys."""
    runs = data.runs
    first = data.first_attack()
    cols = [c for c in data.robust_columns() if c.label == first and c.eps > 0]
    keys = {c.column: f"{c.label} ε={format_eps(c.eps)}" for c in cols}
    robust = {keys[c.column]: c.eps for c in cols}
    if not len(runs):
        return Summary([], first if cols else None, robust)
    attacks = views.attack_results_wide(data.effective_attacks())
    has_fisher = FISHER in data.probes.columns
    health = data.health()
    collapsed = bool((health[HEALTH] == COLLAPSED).any())
    escalations = data.escalations()
    escalated = {
        (str(rid), str(label)): str(attack)
        for rid, label, attack in escalations[["run_id", "label", "attack"]]
        .drop_duplicates()
        .itertuples(index=False)
    }
    by = [k for k in ("model", "family", "eps", TRAIN_SIZE, "seed") if k in runs.columns]
    order = runs.sort_values(by, kind="stable")
    rows = []
    for _, run in order.iterrows():
        rid = str(run["run_id"])
        metrics = data.metrics.loc[rid] if rid in data.metrics.index else None
        robustness = attacks.loc[rid] if rid in attacks.index else None
        row: dict[str, Any] = {"label": str(run["label"]), "status": str(run.get("status", ""))}

        def get(frame: Any, col: str) -> float:
            if frame is None or col not in frame.index:
                return math.nan
            value = frame[col]
            return float(value) if value == value else math.nan

        row["clean"] = get(metrics, CLEAN_ACCURACY)
        for c in cols:
            row[keys[c.column]] = get(robustness, c.column)
        if has_fisher:
            probes = data.probes.loc[rid] if rid in data.probes.index else None
            row["Fisher ‖F‖_F"] = get(probes, FISHER)
        if escalated:
            row["escalated"] = escalated.get((rid, str(first)))
        if collapsed:
            for col in HEALTH_COLUMNS:
                row[col] = health.at[rid, col] if rid in health.index else None
        rows.append(row)
    return Summary(rows, first if cols else None, robust)
