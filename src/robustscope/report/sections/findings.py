"""The Findings section: every registered section's claims in one table, with a count of
the verdicts (the claims themselves live in the section of their paper)."""

from __future__ import annotations

from collections import Counter

from robustscope.report.evidence import RULE, Verdict
from robustscope.report.page import esc, findings_html
from robustscope.report.section import ReportContext, Section, register_section

__all__ = ["Findings"]


@register_section("findings", order=10)
class Findings(Section):
    """Every section's claims in one table, with a count of the verdicts."""

    title = "Findings"

    def html(self, ctx: ReportContext) -> str:
        findings = ctx.findings
        counts = Counter(f.verdict for f in findings)
        intro = (
            f"<p>{counts[Verdict.HOLDS]} claim(s) hold, {counts[Verdict.FAILS]} do not, "
            f"{counts[Verdict.INCONCLUSIVE]} are inconclusive, {counts[Verdict.UNTESTED]} not "
            "tested here. Each claim is read as its paper states it, per model × method "
            "series along the training ε (“robust vs standard” claims compare each ε &gt; 0 "
            "model with the ε = 0 one).</p>"
            f'<p class="rule"><b>Statistical rule.</b> {esc(RULE)}</p>'
        )
        return intro + findings_html(findings)
