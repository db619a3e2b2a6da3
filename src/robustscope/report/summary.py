"""``summary_rows``: one row per run for ``robustscope show``.

Example::

    for row in summary_rows(load_study("runs/tradeoff-fmnist")):
        print(row)
    # {'label': 'cnn standard ε=0 seed=0', 'status': 'done', 'clean': 0.881,
    #  'pgd-linf ε=0.05': 0.312, ..., 'Fisher ‖F‖_F': 3.61}
"""

from __future__ import annotations

import math
from typing import Any

from robustscope.report.data import StudyData, robust_columns

__all__ = ["summary_rows"]

FISHER = "input_fisher/frobenius_mean"


def summary_rows(data: StudyData) -> list[dict[str, Any]]:
    """One row per run (every status), ordered by model, family, ε and seed: ``label``,
    ``status``, ``clean`` (clean accuracy), ``"<attack> ε=<e>"`` — robust accuracy under
    the spec's first attack at each of its evaluated ε > 0 — and ``"Fisher ‖F‖_F"`` (mean
    input-Fisher Frobenius norm) when that probe ran. Missing numbers are NaN."""
    runs = data.runs
    if not len(runs):
        return []
    first = data.first_attack()
    cols = [
        c for c in robust_columns(list(data.metrics.columns)) if c.attack == first and c.eps > 0
    ]
    has_fisher = FISHER in data.probes.columns
    order = runs.sort_values(["model", "family", "eps", "seed"], kind="stable")
    rows = []
    for _, run in order.iterrows():
        rid = str(run["run_id"])
        metrics = data.metrics.loc[rid] if rid in data.metrics.index else None
        row: dict[str, Any] = {"label": str(run["label"]), "status": str(run.get("status", ""))}

        def get(frame: Any, col: str) -> float:
            if frame is None or col not in frame.index:
                return math.nan
            value = frame[col]
            return float(value) if value == value else math.nan

        row["clean"] = get(metrics, "clean_accuracy")
        for c in cols:
            row[f"{c.attack} ε={c.eps:g}"] = get(metrics, c.column)
        if has_fisher:
            probes = data.probes.loc[rid] if rid in data.probes.index else None
            row["Fisher ‖F‖_F"] = get(probes, FISHER)
        rows.append(row)
    return rows
