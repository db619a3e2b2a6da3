"""The trade-off itself: clean against robust accuracy (the frontier), robust accuracy
against the attack's ε, the gradient-masking warnings, and the two claims every source
paper rests on — clean accuracy falls and robust accuracy rises with the training ε
(tsipras2019 §2–3; wen2020 Fig. 1(c), Fig. 3(b); shi2020 §3.3; Madry et al. 2018).

Models without a training ε (loaded from checkpoints the lab did not train,
:func:`robustscope.report.stats.unplaced`) are stars on the frontier and curves of their own
panel against the attack's ε, labelled; a note says that everything along the training ε
leaves them out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robustscope.report.data import AttackColumn, StudyData
from robustscope.report.findings import Finding, not_tested, trend
from robustscope.report.page import esc
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import attack_curve, fired_flags, series, unplaced
from robustscope.report.style import Palette, grid, plot_frontier
from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps

__all__ = ["Tradeoff", "fig_frontier", "fig_robust_vs_attack_eps"]


def fig_frontier(table: pd.DataFrame, robust: AttackColumn, palette: Palette) -> Figure | None:
    """Clean vs robust accuracy (the column ``robust`` of ``table``), one point per training
    ε and series (seed means; bars span the seeds, min–max), points joined in ε order and
    annotated with ε."""
    column = robust.column
    if CLEAN_ACCURACY not in table.columns or column not in table.columns:
        return None
    groups = series(table)
    fig, (ax,) = grid(1, width=7.2, height=5.2)
    drawn = plot_frontier(ax, groups, column, palette)
    points = []
    for k, (_, row) in enumerate(unplaced(table).iterrows()):
        x, y = 100 * float(row[CLEAN_ACCURACY]), 100 * float(row[column])
        if x != x or y != y:
            continue
        style = _point_style(k, str(row["label"]))
        ax.plot([x], [y], ls="none", ms=13, zorder=3, **style)
        ax.annotate(
            str(row["label"]),
            (x, y),
            textcoords="offset points",
            xytext=(8, -11),
            fontsize=8,
            color="0.2",
        )
        points.append(Line2D([], [], ls="none", ms=9, **style))
    if not drawn and not points:
        return None
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy under {robust.label} at ε = {format_eps(robust.eps)} (%)")
    ax.set_title("Robustness–accuracy trade-off: one point per training ε (★: per model)")
    ax.legend(
        handles=palette.eps_handles(table["eps"]) + palette.series_handles() + points,
        fontsize=8,
        loc="best",
    )
    ax.margins(0.12)
    return fig


def fig_robust_vs_attack_eps(
    data: StudyData, table: pd.DataFrame, palette: Palette
) -> Figure | None:
    """Robust accuracy against the attack's ε, one panel per series, one curve per training
    ε (first attack solid, others dashed/dotted); bands span the seeds. The attack ε = 0
    point is the clean accuracy when the attack grid lacks it."""
    cols = [c for c in data.robust_columns() if c.column in table.columns]
    if not cols:
        return None
    attacks = list(dict.fromkeys(c.label for c in cols))
    first = data.first_attack()
    if first in attacks:
        attacks.remove(first)
        attacks.insert(0, first)
    styles = ("-", "--", ":", "-.")

    def draw(ax: Any, members: pd.DataFrame, color: Any, marker: str = "o") -> None:
        for k, attack in enumerate(attacks):
            curve = attack_curve(members, {c.eps: c.column for c in cols if c.label == attack})
            if not curve:
                continue
            x = [p[0] for p in curve]
            ax.plot(
                x,
                [100 * p[1] for p in curve],
                ls=styles[k % len(styles)],
                marker=marker,
                ms=3.5,
                color=color,
            )
            if len(members) > 1:
                ax.fill_between(
                    x,
                    [100 * p[2] for p in curve],
                    [100 * p[3] for p in curve],
                    color=color,
                    alpha=0.15,
                    lw=0,
                )

    groups = series(table)
    alone = unplaced(table)
    fig, axes = grid(len(groups) + bool(len(alone)), cols=2, width=5.6, height=4.2)
    for ax, (name, rows) in zip(axes, groups.items(), strict=False):
        for e, members in rows.groupby("eps"):
            draw(ax, members, palette.color(float(e)))
        ax.set_title(f"{name}: robust accuracy vs attack ε", fontsize=10)
    own: list[Line2D] = []
    if len(alone):
        for k, (rid, row) in enumerate(alone.iterrows()):
            style = _point_style(k, str(row["label"]))
            draw(axes[-1], alone.loc[[rid]], style["color"], marker=style["marker"])
            own.append(Line2D([], [], **style))
        axes[-1].set_title("models without a training ε: robust accuracy vs attack ε", fontsize=10)
        axes[-1].legend(handles=own, fontsize=7, loc="upper right")
    for ax in axes:
        ax.set_xlabel("attack ε (pixel units)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-2, 102)
    handles = palette.eps_handles(table["eps"])
    if len(attacks) > 1:
        handles += [
            Line2D([], [], color="0.3", ls=styles[k % len(styles)], label=a)
            for k, a in enumerate(attacks)
        ]
    if groups or len(attacks) > 1:
        axes[0].legend(handles=handles + (own if not groups else []), fontsize=7, loc="upper right")
    return fig


#: the colours of the models without a training ε (one each, in the table's order)
_POINT_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan")


def _point_style(k: int, label: str) -> dict[str, Any]:
    """The marker, colour and legend label of the ``k``-th model without a training ε."""
    return {
        "marker": "*",
        "color": _POINT_COLORS[k % len(_POINT_COLORS)],
        "mec": "k",
        "mew": 0.6,
        "label": label,
    }


def _unplaced_note(table: pd.DataFrame) -> str:
    """The one note about the runs without a training ε (none: '')."""
    alone = unplaced(table)
    if not len(alone):
        return ""
    labels = ", ".join(str(v) for v in alone["label"])
    return (
        "<p><b>Models without a training ε</b> (loaded from checkpoints the lab did not "
        f"train: {esc(labels)}) are the stars above, one per model; the figures and claims "
        "along the training ε in this report leave them out.</p>"
    )


@register_section("tradeoff", order=20)
class Tradeoff(Section):
    """The trade-off (tsipras2019, wen2020, shi2020): frontier, robust accuracy and their claims."""

    title = "The trade-off"
    lacking = "no attack results"

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        out = []
        column = ctx.robust
        if column is not None:
            attack, eps = column.label, format_eps(column.eps)
            out.append(
                SectionFigure(
                    "frontier",
                    fig_frontier(ctx.table, column, ctx.palette),
                    f"Clean accuracy against robust accuracy under {attack} at ε = {eps}, one "
                    "point per training ε (seed mean; bars span the seeds, min–max), points of "
                    "one model × method joined in ε order.",
                )
            )
        out.append(
            SectionFigure(
                "robust_vs_attack_eps",
                fig_robust_vs_attack_eps(ctx.data, ctx.table, ctx.palette),
                "Robust accuracy against the attack's ε, one panel per model × method and one "
                "curve per training ε (first attack solid, others dashed/dotted; bands span the "
                "seeds). Robust accuracy is over all evaluated test points.",
            )
        )
        return out

    def html(self, ctx: ReportContext) -> str:
        return _unplaced_note(ctx.table) + self._warnings(ctx)

    def _warnings(self, ctx: ReportContext) -> str:
        fired = fired_flags(ctx.data, ctx.table)
        if not fired:
            return ""
        escalated = set(ctx.data.escalations()["run_id"]) & set(ctx.table.index)
        if escalated:
            what = (
                f" — {len(escalated)} of the flagged runs were attacked again with the "
                "escalation attack and the lower figure is shown (see Evaluation checks)"
            )
        else:
            what = " (robust accuracy may be overestimated: no escalation ran)"
        return f"<p><b>Gradient-masking warnings</b>{esc(what)}: " + esc("; ".join(fired)) + "</p>"

    def findings(self, ctx: ReportContext) -> list[Finding]:
        t, robust = ctx.table, ctx.robust
        paper = "wen2020 Fig. 1(c); Madry et al. 2018"
        if robust is None:
            claim = "Robust accuracy increases with the training ε"
            rising = not_tested(claim, paper, "no attack was evaluated at ε > 0")
        else:
            claim = (
                f"Robust accuracy ({robust.label} at ε = {format_eps(robust.eps)}) increases "
                "with the training ε"
            )
            rising = trend(
                t,
                (robust.column,),
                direction=+1,
                claim=claim,
                paper=paper,
                scale=100,
                unit=" %",
                points=ctx.points,
            )
        falling = trend(
            t,
            (CLEAN_ACCURACY,),
            direction=-1,
            claim="Clean accuracy decreases as the training ε grows",
            paper="tsipras2019 §2–3; wen2020 Fig. 1(c), Fig. 3(b); shi2020 §3.3",
            scale=100,
            unit=" %",
            points=ctx.points,
        )
        return [falling, rising]
