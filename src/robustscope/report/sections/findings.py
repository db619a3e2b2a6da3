"""The Findings section: every registered section's claims in one table, with a count of
the verdicts (the claims themselves live in the section of their paper)."""

from __future__ import annotations

from collections import Counter

from robustscope.report.page import findings_html
from robustscope.report.section import ReportContext, Section, register_section

__all__ = ["Findings"]


@register_section("findings", order=10)
class Findings(Section):
    """Every section's claims in one table, with a count of the verdicts."""

    title = "Findings"

    def html(self, ctx: ReportContext) -> str:
        findings = ctx.findings
        verdicts = Counter(
            "untested" if f.holds is None else ("hold" if f.holds else "fail") for f in findings
        )
        intro = (
            f"<p>{verdicts['hold']} claim(s) hold, {verdicts['fail']} do not, "
            f"{verdicts['untested']} not tested here. Trends are read on the seed means along "
            "the training ε of each model × method and must be strictly monotone; "
            "“robust vs standard” claims compare each ε &gt; 0 model with the ε = 0 one.</p>"
        )
        return intro + findings_html(findings)
