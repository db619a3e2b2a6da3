"""The evaluation check: no gradient-masking warning fired when the models were attacked
(``attacks.evaluate``'s sanity checks, after AutoAttack's), and the warnings about runs the
report does not take at face value:

* **collapsed runs** — runs that failed to train (:mod:`robustscope.studies.health`), named
  with the reason and the likely fix; :meth:`StudyData.table` has left them out of every
  Finding and figure;
* **escalated evaluations** — runs re-attacked with the spec's ``evaluation.escalate`` attack
  after a gradient-masking flag fired (:mod:`robustscope.studies.escalation`), with both
  figures per ε; the report uses the lower.

The section is on the page only when there is such a warning; the gradient-masking flags
themselves are shown in the trade-off section and every flag in All numbers.
"""

from __future__ import annotations

import pandas as pd

from robustscope.report.evidence import Verdict
from robustscope.report.findings import Finding, not_tested
from robustscope.report.page import esc, fmt, table_html
from robustscope.report.section import ReportContext, Section, register_section
from robustscope.report.stats import fired_flags
from robustscope.studies.store.vocab import HEALTH_FIX, HEALTH_REASON, format_eps

__all__ = ["EvaluationChecks", "collapsed_html", "escalations_html"]


def collapsed_html(ctx: ReportContext) -> str:
    """The warning naming every collapsed run, why and the likely fix ("" when none)."""
    bad = ctx.data.collapsed()
    if not len(bad):
        return ""
    items = "".join(
        f"<li><b>{esc(row['label'])}</b> (run {esc(rid)}): {esc(row[HEALTH_REASON])}. "
        f"Likely fix: {esc(row[HEALTH_FIX])}.</li>"
        for rid, row in bad.iterrows()
    )
    return (
        f'<p><span class="no">Warning: {len(bad)} run(s) failed to train</span> and are left '
        "out of the Findings and of every figure (a model that did not train is no evidence "
        f"for or against a claim):</p><ul>{items}</ul>"
    )


def escalations_html(ctx: ReportContext) -> str:
    """Every escalated evaluation with both robust accuracies per ε > 0 ("" when none)."""
    found = ctx.data.escalations()
    if not len(found):
        return ""
    runs = found["run_id"].nunique()
    found = found[found["attack_eps"] > 0]  # at ε = 0 both are the clean accuracy
    labels = ctx.data.runs.set_index("run_id")["label"]
    table = pd.DataFrame(
        {
            "run": [labels.get(r, r) for r in found["run_id"]],
            "evaluation": found["label"],
            "escalated to": found["attack"],
            "attack ε": [format_eps(e) for e in found["attack_eps"]],
            "robust accuracy (evaluation)": [fmt(v) for v in found["evaluated"]],
            "robust accuracy (escalated)": [fmt(v) for v in found["escalated"]],
            "reported": [fmt(v) for v in found["reported"]],
        }
    )
    return (
        f'<p><span class="no">Escalated: {runs} run(s)</span> raised a gradient-masking flag on '
        "their first evaluation and were attacked again with the study's "
        "<code>evaluation.escalate</code> attack at the same ε and norm, on the points "
        "the first evaluation left robust (the escalated figure counts a point robust only "
        "when neither attack broke it); every figure and Finding uses the lower robust "
        "accuracy at each ε.</p>" + table_html(table, index=False)
    )


@register_section("checks", order=70)
class EvaluationChecks(Section):
    """Attack evaluation (attacks.evaluate's checks): no gradient-masking warning fired."""

    title = "Evaluation checks"
    needs_runs = False  # its warnings matter most when no run trained

    def applies(self, ctx: ReportContext) -> bool:
        """On the page when a run collapsed or an evaluation was escalated (the gradient-masking
        flags are in the trade-off section and All numbers)."""
        return bool(len(ctx.data.collapsed()) or len(ctx.data.escalations()))

    def html(self, ctx: ReportContext) -> str:
        return collapsed_html(ctx) + escalations_html(ctx)

    def findings(self, ctx: ReportContext) -> list[Finding]:
        claim = "No gradient-masking warning fired when the models were attacked"
        paper = "evaluation check (attacks.evaluate's sanity checks, after AutoAttack)"
        data, table = ctx.data, ctx.table
        evaluation = data.spec.get("evaluation") or {}
        flagged = any(c.column in table.columns for c in data.flag_columns())
        attacked = any(c.eps > 0 for c in data.robust_columns())
        if not flagged and (evaluation.get("checks") is False or not attacked):
            return [not_tested(claim, paper, "the checks did not run")]
        fired = fired_flags(data, table)
        if fired:
            escalated = set(data.escalations()["run_id"]) & set(table.index)
            note = (
                f" ({len(escalated)} run(s) escalated: see Evaluation checks)" if escalated else ""
            )
            return [Finding(claim, paper, Verdict.FAILS, "; ".join(fired) + note)]
        return [Finding(claim, paper, Verdict.HOLDS, f"no warning over {len(table)} models")]
