"""The evaluation check: no gradient-masking warning fired when the models were attacked
(``attacks.evaluate``'s sanity checks, after AutoAttack's). A section of Findings only:
the warnings themselves are shown in the trade-off section and every flag in All numbers.
"""

from __future__ import annotations

from robustscope.report.evidence import Verdict
from robustscope.report.findings import Finding, not_tested
from robustscope.report.section import ReportContext, Section, register_section
from robustscope.report.stats import fired_flags

__all__ = ["EvaluationChecks"]


@register_section("checks", order=70)
class EvaluationChecks(Section):
    """Attack evaluation (attacks.evaluate's checks): no gradient-masking warning fired."""

    title = "Evaluation checks"

    def applies(self, ctx: ReportContext) -> bool:
        """Never on the page (its evidence is in the trade-off section and All numbers)."""
        return False

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
            return [Finding(claim, paper, Verdict.FAILS, "; ".join(fired))]
        return [Finding(claim, paper, Verdict.HOLDS, f"no warning over {len(table)} models")]
