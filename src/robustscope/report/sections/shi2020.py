"""shi2020 (Shi et al., disentangling non-robust and robust components): the input-space
Fisher information F_x, the cross-class KL (CCKL, eq. 1) and its two parts G1 (the
second-order Fisher term) and G2 (eq. 11) against the training ε, and the paper's claims —
robust models' ‖F_x‖_F far below the standard model's (Fig. 4), ‖F_x‖_F growing with
accuracy during standard training (Fig. 3), adversarial training suppressing G1 (§3.3),
CCKL tracking test accuracy over the epochs of training (Fig. 2), and more capacity giving
adversarially trained models standard and robust accuracy together (Table 1, §4).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from pydantic import ValidationError

from robustscope.report.data import AttackColumn, StudyData
from robustscope.report.evidence import (
    Draws,
    Samples,
    Verdict,
    combine,
    permutation_trend,
    slope,
)
from robustscope.report.findings import (
    Finding,
    PointSource,
    not_tested,
    number,
    verdict,
    vs_standard,
)
from robustscope.report.panels import Panel, present, vs_eps_panels
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series
from robustscope.report.style import Palette
from robustscope.studies.spec import ModelSpecEntry
from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps

#: the history columns of the tracked test-set values shi2020 Figs. 2–3 read
TRACKED_ACCURACY = "track/test/clean_accuracy"
TRACKED_FISHER = "track/test/input_fisher_frobenius_mean"
TRACKED_CCKL = "track/test/cckl_value"

__all__ = [
    "FISHER_FACTOR",
    "Shi2020",
    "capacity",
    "cckl_over_training",
    "fig_shi2020",
    "fisher_over_training",
    "model_order",
]

#: "far below": the factor by which robust models' Fisher norm must undercut the standard's
FISHER_FACTOR = 3.0


def fig_shi2020(table: pd.DataFrame, palette: Palette, *, used: set[str]) -> Figure | None:
    """Input-Fisher norms, CCKL, G1 and G2 against ε, and CCKL against clean accuracy."""
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
            "taylor_split/g1_mean",
            "G1: second-order Fisher term (eq. 11)",
            r"mean $G_1 = \frac{1}{2}\delta^\top F_x \delta$ over pairs",
            False,
        ),
        (
            "taylor_split/g2_mean",
            "G2: higher orders (eq. 11)",
            r"mean $G_2$ = KL $-$ $G_1$ over pairs",
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


def _tracked_rho(
    data: StudyData, table: pd.DataFrame, x: str, y: str, runs: pd.Index
) -> list[tuple[Verdict, str]]:
    """Per run of ``runs`` with ≥ 3 tracked epochs of both history columns: the permutation
    test of Spearman's ρ between ``x`` and ``y`` over the epochs (one-sided, ρ > 0)."""
    h = data.history
    judged: list[tuple[Verdict, str]] = []
    for rid in runs:
        rows = h[h["run_id"] == rid].sort_values("epoch")[["epoch", x, y]].dropna()
        if len(rows) < 3:
            continue
        iv = permutation_trend(rows[x].to_numpy(), rows[y].to_numpy(), direction=+1)
        first, last = rows.iloc[0], rows.iloc[-1]
        judged.append(
            (
                iv.decide(0.0, +1),
                f"{table.loc[rid, 'label']}: epoch {int(first['epoch'])}→{int(last['epoch'])}, "
                f"{_short(x)} {number(first[x])}→{number(last[x])}, "
                f"{_short(y)} {number(first[y])}→{number(last[y])}; {iv.text()}",
            )
        )
    return judged


def _short(column: str) -> str:
    return {TRACKED_ACCURACY: "accuracy", TRACKED_FISHER: "‖F_x‖_F", TRACKED_CCKL: "CCKL"}.get(
        column, column
    )


def fisher_over_training(data: StudyData, table: pd.DataFrame) -> Finding:
    """shi2020 Fig. 3: during standard training ‖F_x‖_F (tracked on test points) rises with
    the test accuracy — per standard run, the permutation test of Spearman's ρ between
    accuracy and norm over the tracked epochs."""
    claim = "During standard training the input-Fisher norm grows with the test accuracy"
    paper = "shi2020 Fig. 3, §3.3"
    h = data.history
    if (none := data.no_history(table.index)) is not None:
        return not_tested(claim, paper, none)
    if not len(h) or TRACKED_FISHER not in h.columns or TRACKED_ACCURACY not in h.columns:
        return not_tested(claim, paper, "input_fisher and the clean accuracy were not tracked")
    runs = table.index[table["eps"] == 0]
    judged = _tracked_rho(data, table, TRACKED_ACCURACY, TRACKED_FISHER, runs)
    return verdict(claim, paper, judged, "no standard run with ≥ 3 tracked epochs")


def cckl_over_training(data: StudyData, table: pd.DataFrame) -> Finding:
    """shi2020 Fig. 2: over the epochs of training, CCKL on test points tracks the test
    accuracy — per run, the permutation test of Spearman's ρ between them over the tracked
    epochs."""
    claim = "Over the epochs of training, CCKL on test points rises and falls with test accuracy"
    paper = "shi2020 Fig. 2 (CCKL indicates test accuracy)"
    h = data.history
    if (none := data.no_history(table.index)) is not None:
        return not_tested(claim, paper, none)
    if not len(h) or TRACKED_CCKL not in h.columns or TRACKED_ACCURACY not in h.columns:
        return not_tested(claim, paper, "cckl and the clean accuracy were not tracked")
    judged = _tracked_rho(data, table, TRACKED_ACCURACY, TRACKED_CCKL, table.index)
    return verdict(claim, paper, judged, "no run with ≥ 3 tracked epochs")


def capacity(
    table: pd.DataFrame, order: list[str], robust: AttackColumn | None, points: PointSource
) -> Finding:
    """shi2020 Table 1 (§4): with more capacity, an adversarially trained model gains
    standard and robust accuracy together. Per adversarial family and training ε with two or
    more models, the models in ``order`` (the study's, ascending capacity): the bootstrap
    interval of the slope of clean and of robust accuracy along the capacity rank; the claim
    holds when both slopes are above 0."""
    claim = (
        "With more model capacity, adversarial training gains standard and robust accuracy "
        "together (models in the study's order of capacity)"
    )
    paper = "shi2020 Table 1, §4"
    if robust is None or CLEAN_ACCURACY not in table.columns:
        return not_tested(claim, paper, "needs clean and robust accuracy")
    cols = [CLEAN_ACCURACY, robust.column]
    adv = table[(table["eps"] > 0) & table["model"].isin(order)]
    judged: list[tuple[Verdict, str]] = []
    for (family, eps), rows in adv.groupby(["family", "eps"], sort=True):
        models = [m for m in order if (rows["model"] == m).any()]
        if len(models) < 2:
            continue
        verdicts, parts = [], []
        for col in cols:
            seeds = [
                [
                    (float(r[col]), points(str(rid), col))
                    for rid, r in rows[rows["model"] == m].iterrows()
                    if r[col] == r[col]
                ]
                for m in models
            ]
            if any(not s for s in seeds):
                break
            draws = Draws.of(seeds, list(range(len(models))))
            iv = draws.interval(slope)
            verdicts.append(iv.decide(0.0, +1))
            what = (
                "clean"
                if col == CLEAN_ACCURACY
                else f"{robust.label} at ε = {format_eps(robust.eps)}"
            )
            parts.append(
                f"{what} {' → '.join(number(v, 100) for v in draws.point)} % "
                f"(slope {iv.text(lambda v: number(v, 100))} points per step)"
            )
        if len(verdicts) == len(cols):
            judged.append(
                (
                    combine(verdicts),
                    f"{family} at ε = {format_eps(float(eps))}, {' → '.join(models)}: "
                    + "; ".join(parts),
                )
            )
    return verdict(claim, paper, judged, "no adversarial family trained on two or more models")


def pair_points(data: StudyData) -> PointSource:
    """:meth:`StudyData.points` plus G1 and G2 per cross-class pair: ``taylor_split`` draws
    its pairs from the labels and its seed alone, so every model of a study is measured on
    the same pairs and they are resampled together, as test points are."""

    def points(run_id: str, column: str) -> Samples | None:
        if column in ("taylor_split/g1_mean", "taylor_split/g2_mean"):
            values = data.array(run_id, "taylor_split", column.split("/")[1][:2])
            return None if values is None else Samples(values.astype(float))
        return data.points(run_id, column)

    return points


def model_order(spec: dict[str, Any]) -> list[str]:
    """The study's models in its spec's order, named as its runs name them."""
    out = []
    for m in spec.get("models") or []:
        try:
            out.append(ModelSpecEntry.model_validate(m).display())
        except ValidationError:  # an entry the spec no longer validates: not ordered
            continue
    return out


@register_section("shi2020", order=40)
class Shi2020(Section):
    """shi2020: input Fisher, CCKL and its G1/G2 split against the training ε, and its claims."""

    title = "Fisher information, CCKL and its G1/G2 split (shi2020)"
    probes = ("input_fisher", "cckl", "taylor_split")

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        return [
            SectionFigure(
                "shi2020",
                fig_shi2020(ctx.table, ctx.palette, used=ctx.used),
                "shi2020 against the training ε: mean input-Fisher Frobenius norm and largest "
                "eigenvalue over the test points (log), CCKL (mean KL between the predictions "
                "of cross-class pairs, eq. 1), and the two parts of that KL (eq. 11): G1, the "
                "second-order Fisher term ½δᵀF_xδ, and G2, all higher orders (G2 = KL − G1 "
                "can be negative, so G1/KL is no share); last panel: CCKL against clean "
                "accuracy, one point per model. Bars span the seeds.",
            )
        ]

    def findings(self, ctx: ReportContext) -> list[Finding]:
        t = ctx.table
        return [
            vs_standard(
                t,
                ("input_fisher/frobenius_mean",),
                factor=FISHER_FACTOR,
                claim="The input-Fisher norm ‖F_x‖_F (mean over test points) of every "
                "adversarially trained model is far below the standard model's (at least "
                f"{FISHER_FACTOR:g}× lower)",
                paper="shi2020 Fig. 4, §3.3",
                points=ctx.points,
            ),
            fisher_over_training(ctx.data, t),
            vs_standard(
                t,
                ("taylor_split/g1_mean",),
                factor=1.0,
                claim="Adversarial training keeps the model from using the non-robust "
                "component: G1 = ½δᵀF_xδ (mean over cross-class pairs) is below the standard "
                "model's",
                paper="shi2020 §3.3, eqs. 10–11",
                points=pair_points(ctx.data),
            ),
            cckl_over_training(ctx.data, t),
            capacity(t, model_order(ctx.data.spec), ctx.robust, ctx.points),
        ]
