"""terzi2021: effective information in the activations (Def. 0.6, eq. 8), linear
transferability and task distance (Tables 1–3), inversion and effective images (Figs. 1–2).

Each part reads the probe of the same name (``effective_information``, ``transfer``,
``inversion``); a study that did not run it leaves the part out and its claim "not tested";
a study that ran none of them has no terzi2021 section.
(The weights' ℓ2 norm, log-variance and the representation Fisher of Figs. 4–5 and eq. 5 are
drawn and checked by the ``weights`` section.)

Claims:

* eq. 8 — adversarial training lowers the effective information: in every series each
  member with ε > 0 is below the standard one by more than :data:`Z` standard errors (the
  per-example spread over the probe's points);
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from robustscope.report.findings import Finding, eps_list, not_tested, number, verdict
from robustscope.report.panels import Panel, vs_eps_panels
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series, trained

__all__ = ["Terzi2021", "information_finding"]

PAPER = "terzi2021"
#: standard errors a difference must exceed to count
Z = 2.0
INFO = "effective_information"


def _info_points(ctx: ReportContext, rid: str) -> np.ndarray | None:
    arr = ctx.data.array(rid, INFO, "information")
    if arr is None:
        return None
    values = np.asarray(arr, dtype=np.float64)
    values = values[np.isfinite(values)]
    return values if len(values) else None


def information_finding(ctx: ReportContext) -> Finding:
    claim = "adversarial training lowers the effective information in the activations"
    source = f"{PAPER} eq. 8"
    col = f"{INFO}/information_mean"
    if col not in ctx.table or not ctx.table[col].notna().any():
        return not_tested(claim, source, f"{INFO} was not measured")
    judged = []
    for name, rows in series(trained(ctx.table, ctx.data.spec)).items():
        rows = rows.dropna(subset=[col])
        std = rows[rows["eps"] == 0]
        robust = rows[rows["eps"] > 0]
        if not len(std) or not len(robust):
            continue
        base = _info_points(ctx, str(std.index[0]))
        if base is None:
            continue
        ok = True
        parts = []
        for rid, row in robust.iterrows():
            pts = _info_points(ctx, str(rid))
            if pts is None:
                continue
            se = math.sqrt(base.var(ddof=1) / len(base) + pts.var(ddof=1) / len(pts))
            below = float(base.mean() - pts.mean()) > Z * se
            ok &= below
            parts.append(f"{number(pts.mean())} (ε = {row['eps']:g})")
        judged.append(
            (
                ok,
                f"{name}: standard {number(base.mean())} nats vs {', '.join(parts)} "
                f"at ε = {eps_list(robust.set_index('eps').index)}",
            )
        )
    return verdict(
        claim,
        source,
        judged,
        "no series with a standard and an adversarially trained member measured",
        f" (½ log|F_eff|₊ − (r/2) log 2πe per example, H(x) dropped; below by > {Z:g} se)",
    )


def fig_information(ctx: ReportContext) -> Figure | None:
    """Effective information, the rank of F_eff and the weight-noise variance against ε."""
    panels: list[Panel] = [
        (f"{INFO}/information_mean", "effective information (eq. 8, − H(x))", "nats", False),
        (f"{INFO}/rank_mean", "rank of F_eff (active features)", "rank", False),
        (f"{INFO}/trace_mean", "tr F_eff (eq. 9)", "trace", True),
        (f"{INFO}/noise_trace_mean", "tr J_w Σ* J_wᵀ (feature noise)", "variance", True),
    ]
    made = vs_eps_panels(ctx.table, ctx.palette, panels, used=ctx.used, cols=4)
    return None if made is None else made[0]


@register_section("terzi2021", order=58)
class Terzi2021(Section):
    """terzi2021: effective information, linear transferability, inversion and effective images."""

    title = "terzi2021: information, transferability and inversion"
    lacking = "no effective_information, transfer or inversion probe ran"
    probes = (INFO,)

    def applies(self, ctx: ReportContext) -> bool:
        return any(
            str(c).startswith(tuple(f"{p}/" for p in self.probes)) for c in ctx.table.columns
        )

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        return [
            SectionFigure(
                "terzi2021_information",
                fig_information(ctx),
                "Effective information in the activations under SGD's weight noise "
                "(terzi2021 Def. 0.6, eqs. 8–9; Σ* from the diagonal weight Fisher over "
                "training examples), its rank, tr F_eff and the feature noise, against the "
                "training ε.",
            )
        ]

    def html(self, ctx: ReportContext) -> str:
        return ""

    def findings(self, ctx: ReportContext) -> list[Finding]:
        return [information_finding(ctx)]
