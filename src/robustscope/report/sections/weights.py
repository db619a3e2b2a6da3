"""Weights and every other probe: weight norms (terzi2021 Fig. 5, tsipras2019 Table 5), the
information in the weights (terzi2021 Fig. 4) and the representation's Fisher w.r.t. the
input (terzi2021 eq. 5) against the training ε with the claims on them; a generic figure
for each probe no section draws (:attr:`~robustscope.report.section.Section.probes`); and
a table of every probe scalar no figure drew.

Its claims keep the order of the Findings table (terzi2021's ℓ2 norm, tsipras2019's ℓ1
norm, then terzi2021's information and Fisher); the terzi2021 and tsipras2019 sections of
their own measurements (representations, the theory lab) come with those issues.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import ValidationError

from robustscope.report.data import natural_key
from robustscope.report.findings import Finding, not_tested, trend, vs_standard
from robustscope.report.page import table_html
from robustscope.report.panels import Panel, present, vs_eps_panels
from robustscope.report.section import (
    ReportContext,
    Section,
    SectionFigure,
    dedicated_probes,
    register_section,
)
from robustscope.report.stats import by_eps, series, unplaced
from robustscope.report.style import Palette, grid
from robustscope.studies.spec import ModelSpecEntry
from robustscope.studies.store.vocab import format_eps

__all__ = ["Weights", "fig_generic", "fig_weights"]


def fig_weights(table: pd.DataFrame, palette: Palette, *, used: set[str]) -> Figure | None:
    """terzi2021 Figs. 4–5 and tsipras2019 Table 5: weight norms, per-layer ℓ2 norms,
    information in the weights and the representation's Fisher against ε."""
    if not series(table):  # no model with a training ε
        return None
    panels: list[Panel] = [
        ("weight_norms/l2_total", "‖w‖₂ of all weights (terzi2021 Fig. 5)", "ℓ2 norm", False),
        ("weight_norms/l1_total", "‖w‖₁ of all weights (tsipras2019 T. 5)", "ℓ1 norm", False),
        (
            "weight_information/log_variance_mean",
            "log-variance of the weights (terzi2021 Fig. 4)",
            "mean log Σ* (higher = less information)",
            False,
        ),
        (
            "weight_information/information_total",
            "information in the weights",
            "total (nats, up to constants)",
            False,
        ),
        (
            "representation_fisher/lambda_max_mean",
            "representation Fisher (terzi2021 eq. 5)",
            r"mean $\lambda_{\max}(F_{z|x})$",
            True,
        ),
        (
            "representation_fisher/trace_mean",
            "representation Fisher trace",
            r"mean tr $F_{z|x}$",
            True,
        ),
    ]
    layer_cols = sorted(
        (c for c in table.columns if str(c).startswith("weight_norms/l2/") and present(table, c)),
        key=lambda c: natural_key(str(c).split("/", 2)[2]),
    )
    out = vs_eps_panels(table, palette, panels, used=used, extra=int(bool(layer_cols)))
    if out is None and not layer_cols:
        return None
    if out is None:
        fig, axes = grid(1, width=5.0, height=3.6)
    else:
        fig, axes = out
    if layer_cols:
        ax = axes[-1]
        x = np.arange(len(layer_cols))
        for name, rows in series(table).items():
            means = {c: by_eps(rows, c)["mean"] for c in layer_cols}
            for e in sorted({float(e) for s in means.values() for e in s.index}):
                ys = [float(means[c][e]) if e in means[c].index else np.nan for c in layer_cols]
                ax.plot(
                    x,
                    ys,
                    marker=palette.marker(name),
                    ls=palette.linestyle(name),
                    color=palette.color(e),
                )
        labels = [str(c).split("/", 2)[2].removesuffix(".weight") for c in layer_cols]
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("entrywise ℓ2 norm of the weight", fontsize=8)
        ax.set_title("per-layer ‖W‖₂ by training ε", fontsize=10)
        used.update(layer_cols)
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    return fig


def fig_generic(
    table: pd.DataFrame, palette: Palette, probe: str, *, used: set[str], max_panels: int = 9
) -> Figure | None:
    """Any probe's scalars that vary across the models, against ε (at most ``max_panels``)."""
    cols = [
        str(c)
        for c in table.columns
        if str(c).startswith(f"{probe}/")
        and present(table, str(c))
        and table[c].dropna().nunique() > 1
    ][:max_panels]
    panels: list[Panel] = [(c, c.split("/", 1)[1], c.split("/", 1)[1], False) for c in cols]
    out = vs_eps_panels(table, palette, panels, used=used)
    if out is None:
        return None
    fig, axes = out
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    fig.suptitle(f"probe {probe}: scalars against the training ε", fontsize=10)
    return fig


def by_eps_table(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Seed means of ``columns`` (rows) by series and training ε (columns), then one column
    per model without a training ε (its label)."""
    out: dict[str, dict[str, float]] = {}
    for name, rows in series(table).items():
        for col in columns:
            for e, mean in by_eps(rows, col)["mean"].items():
                out.setdefault(f"{name} ε={format_eps(e)}", {})[col] = float(mean)
    for _, row in unplaced(table).iterrows():
        out[str(row["label"])] = {col: float(row[col]) for col in columns}
    return pd.DataFrame(out).reindex(columns)


@register_section("weights", order=60)
class Weights(Section):
    """terzi2021 and tsipras2019 on the weights, and every probe no other section draws."""

    title = "Weights and the other probes"
    probes = ("weight_norms", "weight_information", "representation_fisher")
    lacking = "no probe ran"

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        t, p = ctx.table, ctx.palette
        out = [
            SectionFigure(
                "weights",
                fig_weights(t, p, used=ctx.used),
                "Weights against the training ε: total ℓ2 and ℓ1 norms (terzi2021 Fig. 5, "
                "tsipras2019 Table 5), information in the weights (terzi2021 Fig. 4), the "
                "representation's Fisher w.r.t. the input, and the ℓ2 norm of each layer.",
            )
        ]
        drawn = dedicated_probes()
        names = {str(c).split("/", 1)[0] for c in ctx.data.probes.columns if "/" in str(c)}
        for probe in sorted(names - drawn):
            out.append(
                SectionFigure(
                    f"probe_{probe}",
                    fig_generic(t, p, probe, used=ctx.used),
                    f"Probe {probe}: its scalars that vary across the models, against the "
                    "training ε.",
                )
            )
        return out

    def html(self, ctx: ReportContext) -> str:
        rest = [
            str(c)
            for c in ctx.data.probes.columns
            if str(c) not in ctx.used and str(c) in ctx.table.columns
        ]
        if not rest:
            return ""
        return (
            "<details><summary>Every other probe scalar by model × method and training ε "
            f"(seed means; {len(rest)} quantities"
            + ("; models without a training ε by label" if len(unplaced(ctx.table)) else "")
            + ")</summary>"
            + table_html(by_eps_table(ctx.table, rest), index_label="quantity")
            + "</details>"
        )

    def findings(self, ctx: ReportContext) -> list[Finding]:
        t = ctx.table
        return [
            l2_norm_regime(t),
            linear_l1_norm(t, ctx.data.spec),
            trend(
                t,
                ("weight_information/log_variance_mean",),
                direction=+1,
                claim="The weights hold less information as ε grows (the mean log-variance of "
                "the optimal Gaussian posterior rises)",
                paper="terzi2021 Fig. 4",
            ),
            trend(
                t,
                ("representation_fisher/lambda_max_mean",),
                direction=-1,
                claim="Adversarial training flattens the representation's Fisher w.r.t. the "
                "input (its largest eigenvalue falls as ε grows)",
                paper="terzi2021 eq. 5",
                points=ctx.points,
            ),
        ]


#: terzi2021 Fig. 5: under ℓ2 adversarial training the weight norm falls only above this ε
L2_REGIME_EPS = 1.0


def l2_norm_regime(table: pd.DataFrame) -> Finding:
    """terzi2021 Fig. 5 in the regime the paper states it: ℓ2 adversarial training, ε > 1 —
    read on the ℓ2-trained members with ε ≥ 1 (the regime's edge and above)."""
    claim = (
        f"Under ℓ2 adversarial training with ε > {L2_REGIME_EPS:g}, the ℓ2 norm of the weights "
        "decreases as ε grows"
    )
    paper = "terzi2021 Fig. 5 (two regimes: the norm falls only for ε > 1)"
    rows = table[(table["norm"] == "l2") & (table["eps"] >= L2_REGIME_EPS)] if len(table) else table
    if not len(rows) or rows["eps"].nunique() < 2:
        return not_tested(
            claim, paper, f"needs ℓ2-trained models at two or more ε ≥ {L2_REGIME_EPS:g}"
        )
    return trend(rows, ("weight_norms/l2_total",), direction=-1, claim=claim, paper=paper)


def linear_l1_norm(table: pd.DataFrame, spec: dict[str, Any]) -> Finding:
    """tsipras2019 Table 5 where the paper states it: linear classifiers — the ℓ1 norm of
    an adversarially trained linear model's weights below its standard counterpart's."""
    claim = (
        "The ℓ1 norm of the weights of adversarially trained linear classifiers is below the "
        "standard one's"
    )
    paper = "tsipras2019 Table 5 (linear classifier on binary MNIST: 41.08 vs 13.69)"
    linear = set()
    for m in spec.get("models") or []:
        try:
            entry = ModelSpecEntry.model_validate(m)
        except ValidationError:
            continue
        if entry.model == "linear":
            linear.add(entry.display())
    rows = table[table["model"].isin(linear)] if len(table) else table
    if not len(rows):
        return not_tested(claim, paper, "no linear model in the study (the claim is about them)")
    return vs_standard(
        rows, ("weight_norms/l1_total",), factor=1.0, claim=claim, paper=paper, exact=True
    )
