"""shi2020 (Shi et al., disentangling non-robust and robust components): the input-space
Fisher information F_x, the cross-class KL (CCKL, eq. 1) and the share of its second-order
term G1 (eq. 11) against the training ε, and the paper's claims on them — robust models'
‖F_x‖_F far below the standard model's (Fig. 4), ‖F_x‖_F growing with accuracy during
standard training (Fig. 3), less reliance on G1 (§3.3), CCKL tracking accuracy (Fig. 2).
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from robustscope.report.data import StudyData
from robustscope.report.findings import (
    Finding,
    first_present,
    not_tested,
    number,
    spearman,
    trend,
    verdict,
    vs_standard,
)
from robustscope.report.panels import Panel, present, vs_eps_panels
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series
from robustscope.report.style import Palette
from robustscope.studies.store.vocab import CLEAN_ACCURACY, train_metric

__all__ = ["FISHER_FACTOR", "Shi2020", "fig_shi2020"]

#: "far below": the factor by which robust models' Fisher norm must undercut the standard's
FISHER_FACTOR = 3.0


def fig_shi2020(table: pd.DataFrame, palette: Palette, *, used: set[str]) -> Figure | None:
    """Input-Fisher norms, CCKL and the G1 share against ε, and CCKL against clean accuracy."""
    panels: list[Panel] = [
        (
            "input_fisher/frobenius_mean",
            "input-Fisher norm (shi2020 Figs. 3–4)",
            r"mean $\|F_x\|_F$ over test points",
            True,
        ),
        (
            "input_fisher/spectral_mean",
            "input-Fisher top eigenvalue (shi2020 eq. 8)",
            r"mean $\lambda_{\max}(F_x)$ over test points",
            True,
        ),
        ("cckl/value", "CCKL (shi2020 eq. 1)", "mean cross-class KL (nats)", False),
        (
            "taylor_split/g1_share",
            "G1 share of the cross-class KL (eq. 11)",
            r"mean $G_1$ / KL over cross-class pairs",
            False,
        ),
    ]
    scatter = present(table, "cckl/value") and present(table, CLEAN_ACCURACY)
    out = vs_eps_panels(table, palette, panels, used=used, extra=int(scatter))
    if out is None:
        return None
    fig, axes = out
    if scatter:
        ax = axes[-1]
        for name, rows in series(table).items():
            ax.scatter(
                100 * rows[CLEAN_ACCURACY],
                rows["cckl/value"],
                c=[palette.color(e) for e in rows["eps"]],
                marker=palette.marker(name),
                s=45,
                edgecolors="k",
                linewidths=0.5,
                zorder=2,
            )
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel("CCKL (nats)", fontsize=8)
        ax.set_title("CCKL against accuracy (cf. shi2020 Fig. 2)", fontsize=10)
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    return fig


def fisher_over_training(data: StudyData, table: pd.DataFrame) -> Finding:
    """shi2020 Fig. 3: during standard training ‖F_x‖_F (tracked on test points) rises with
    the test accuracy — per standard run, Spearman ρ > 0 over the tracked epochs and a higher
    norm at the last tracked epoch than at the first."""
    claim = (
        "During standard training the input-Fisher norm grows with the test accuracy "
        "(Spearman ρ > 0 over the tracked epochs, and a higher norm at the last epoch than "
        "at the first)"
    )
    paper = "shi2020 Fig. 3, §3.3"
    h = data.history
    fisher = "track/test/input_fisher_frobenius_mean"
    if not len(h) or fisher not in h.columns:
        return not_tested(claim, paper, "input_fisher was not tracked")
    acc = first_present(h, ("track/test/clean_accuracy", "test_accuracy"))
    judged = []
    for rid in table.index[table["eps"] == 0]:
        rows = h[h["run_id"] == rid].sort_values("epoch")
        if acc is None:
            break
        rows = rows[["epoch", fisher, acc]].dropna()
        if len(rows) < 3:
            continue
        rho = spearman(rows[acc].to_numpy(), rows[fisher].to_numpy())
        first, last = rows.iloc[0], rows.iloc[-1]
        ok = bool(rho > 0 and last[fisher] > first[fisher])
        judged.append(
            (
                ok,
                f"{table.loc[rid, 'label']}: epoch {int(first['epoch'])}→{int(last['epoch'])}, "
                f"accuracy {number(first[acc], 100)}→{number(last[acc], 100)} %, "
                f"‖F_x‖_F {number(first[fisher])}→{number(last[fisher])} (ρ = {rho:.2f})",
            )
        )
    return verdict(claim, paper, judged, "no standard run with ≥ 3 tracked epochs")


def cckl_tracks_accuracy(table: pd.DataFrame) -> Finding:
    """shi2020 Fig. 2: CCKL and clean accuracy rank the models alike (Spearman ρ > 0.5)."""
    claim = "CCKL and clean accuracy rank the models alike (Spearman ρ > 0.5 over the models)"
    paper = "shi2020 Fig. 2 (CCKL indicates test accuracy)"
    cols = ["cckl/value", CLEAN_ACCURACY]
    if not set(cols) <= set(table.columns):
        return not_tested(claim, paper, "needs cckl and the clean accuracy")
    rows = table[cols].dropna()
    if len(rows) < 3:
        return not_tested(claim, paper, "fewer than three models measured")
    rho = spearman(rows[CLEAN_ACCURACY].to_numpy(), rows["cckl/value"].to_numpy())
    if math.isnan(rho):
        return not_tested(claim, paper, "no spread in CCKL or in accuracy")
    return Finding(claim, paper, rho > 0.5, f"ρ = {rho:.2f} over {len(rows)} models")


@register_section("shi2020", order=40)
class Shi2020(Section):
    """shi2020: input Fisher, CCKL and the G1 share against the training ε, and its claims."""

    title = "Fisher information, CCKL and the G1 share (shi2020)"
    probes = ("input_fisher", "cckl", "taylor_split")

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        return [
            SectionFigure(
                "shi2020",
                fig_shi2020(ctx.table, ctx.palette, used=ctx.used),
                "shi2020 against the training ε: mean input-Fisher Frobenius norm and largest "
                "eigenvalue over the test points (log), CCKL (mean KL between the predictions "
                "of cross-class pairs, eq. 1) and the share of the second-order Fisher term G1 "
                "in that KL (eq. 11); last panel: CCKL against clean accuracy, one point per "
                "model. Bars span the seeds.",
            )
        ]

    def findings(self, ctx: ReportContext) -> list[Finding]:
        t = ctx.table
        return [
            vs_standard(
                t,
                (
                    "input_fisher/frobenius_mean",
                    train_metric("track/test/input_fisher_frobenius_mean"),
                ),
                factor=FISHER_FACTOR,
                claim="The input-Fisher norm ‖F_x‖_F (mean over test points) of every "
                "adversarially trained model is far below the standard model's (at least "
                f"{FISHER_FACTOR:g}× lower)",
                paper="shi2020 Fig. 4, §3.3",
            ),
            fisher_over_training(ctx.data, t),
            vs_standard(
                t,
                ("taylor_split/g1_share",),
                factor=1.0,
                claim="Adversarially trained models rely less on the non-robust second-order "
                "term: the G1 share of the cross-class KL is below the standard model's",
                paper="shi2020 §3.3, eq. 11",
            ),
            trend(
                t,
                ("cckl/value",),
                direction=-1,
                claim="CCKL decreases as the training ε grows (it tracks accuracy, and robust "
                "models cannot use its G1 part)",
                paper="shi2020 §3.1–3.3 (implied; the paper plots CCKL over training, Fig. 2)",
            ),
            cckl_tracks_accuracy(t),
        ]
