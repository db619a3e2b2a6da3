"""All numbers: the summary table (as ``robustscope show`` prints it), every run with its
status and error, and every metric, attack result, flag and probe scalar by run."""

from __future__ import annotations

from typing import Any

import pandas as pd

from robustscope.report.data import RUN_COLUMNS, StudyData
from robustscope.report.page import error_line, skip_html, table_html
from robustscope.report.section import ReportContext, Section, register_section
from robustscope.report.summary import summary_rows
from robustscope.studies.store import views
from robustscope.studies.store.vocab import CLEAN_ACCURACY, QUANTITIES, TRAIN_PREFIX, TRAIN_SIZE

__all__ = ["Numbers"]


def _all_metrics(data: StudyData) -> pd.DataFrame:
    """Every run's metrics, attack results and flags, one column each (index ``run_id``)."""
    frames = [views.attack_results_wide(data.attacks), views.flags_wide(data.flags)]
    out = data.metrics
    for frame in frames:
        if len(frame.columns):
            out = out.join(frame, how="outer") if len(out.columns) else frame
    return out


def _metric_order(data: StudyData, columns: list[str]) -> list[str]:
    """Clean accuracy, then the attack results (by label, quantity, ε), the flags, the last
    epoch's training values and the rest."""
    rank = {q: i for i, q in enumerate(QUANTITIES)}
    attack = {
        c.column: (c.label, rank.get(c.quantity, len(rank)), c.quantity, c.eps)
        for c in views.attack_columns(data.attacks)
    }
    flags = {c.column for c in data.flag_columns()}

    def key(c: str) -> tuple[int, Any]:
        if c == CLEAN_ACCURACY:
            return (0, "")
        if c in attack:
            return (1, attack[c])
        if c in flags:
            return (2, c)
        if c.startswith(TRAIN_PREFIX):
            return (3, c)
        return (4, c)

    return sorted(columns, key=key)


@register_section("numbers", order=90)
class Numbers(Section):
    """The lab: every number of the study in tables (also before any run finished)."""

    title = "All numbers"
    needs_runs = False

    def html(self, ctx: ReportContext) -> str:
        d = ctx.data
        parts = ["<h3>Summary (one row per run)</h3>"]
        rows = summary_rows(d)
        parts.append(table_html(pd.DataFrame(rows), index=False) if rows else skip_html("No run."))
        sized = len(d.train_sizes()) > 1  # the training-set size: a column of sized studies
        shown = [c for c in (*RUN_COLUMNS, "error") if c != TRAIN_SIZE or sized]
        runs = d.runs[[c for c in shown if c in d.runs.columns]]
        if "error" in runs.columns:
            runs = runs.assign(error=[error_line(e) for e in runs["error"]])
        if len(runs):
            by = ["model", "family", "eps", *([TRAIN_SIZE] if sized else []), "seed"]
            order = runs.sort_values(by, kind="stable")
            parts.append("<h3>Runs</h3>" + table_html(order, index=False))
            labels = dict(zip(order["run_id"], order["label"], strict=True))
            for title, frame in (("Metrics", _all_metrics(d)), ("Probe scalars", d.probes)):
                if not len(frame.columns):
                    continue
                ids = [r for r in order["run_id"] if r in frame.index]
                cols = (
                    _metric_order(d, list(frame.columns))
                    if title == "Metrics"
                    else sorted(frame.columns)
                )
                wide = frame.loc[ids, cols].T
                wide.columns = [str(labels[r]) for r in ids]
                parts.append(
                    f"<details{' open' if len(cols) <= 30 else ''}><summary>{title} "
                    f"({len(cols)} quantities × {len(ids)} runs)</summary>"
                    + table_html(wide, index_label="quantity")
                    + "</details>"
                )
        return "".join(parts)
