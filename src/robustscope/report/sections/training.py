"""Training curves: the history over epochs — test accuracy, the input-Fisher norm tracked
during training (shi2020 Figs. 3–4), tracked PGD accuracy and the losses. The claim read
on these curves is shi2020's and lives in :mod:`robustscope.report.sections.shi2020`.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robustscope.report.data import StudyData
from robustscope.report.page import skip_html
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series_name, sized
from robustscope.report.style import Palette, grid, log_y
from robustscope.studies.store.vocab import TRAIN_SIZE

__all__ = ["Training", "fig_training"]


#: (candidate history columns, title, y label, scale, log y)
_TRAINING_PANELS: tuple[tuple[tuple[str, ...], str, str, float, bool], ...] = (
    (
        ("test_accuracy", "track/test/clean_accuracy"),
        "test accuracy (shi2020 Figs. 3–4, left)",
        "accuracy (%)",
        100.0,
        False,
    ),
    (
        ("track/test/input_fisher_frobenius_mean",),
        "input-Fisher norm (shi2020 Figs. 3–4, right)",
        r"mean $\|F_x\|_F$ on tracked test points",
        1.0,
        True,
    ),
    (
        ("track/test/pgd_accuracy",),
        "tracked PGD accuracy (test subset)",
        "robust accuracy (%)",
        100.0,
        False,
    ),
    (("test_loss", "track/test/clean_loss"), "test loss", "cross-entropy (nats)", 1.0, False),
    (
        ("train_loss",),
        "training loss (on the objective's inputs)",
        "cross-entropy (nats)",
        1.0,
        False,
    ),
)


def fig_training(data: StudyData, table: pd.DataFrame, palette: Palette) -> Figure | None:
    """History over epochs, seed-averaged per (series, training ε): accuracy, the tracked
    input-Fisher norm (log scale, shi2020 Figs. 3–4), tracked PGD accuracy and the losses."""
    h = data.history
    if not len(h) or "epoch" not in h.columns:
        return None
    h = h[h["run_id"].isin(table.index)]
    panels = []
    for candidates, title, label, scale, log in _TRAINING_PANELS:
        col = next((c for c in candidates if c in h.columns and h[c].notna().any()), None)
        if col is not None:
            panels.append((col, title, label, scale, log))
    if not panels or not len(h):
        return None
    sizes = table[TRAIN_SIZE] if sized(table) else [None] * len(table)
    names = zip(table["model"], table["family"], sizes, strict=True)
    meta = table[["eps"]].assign(
        series=[series_name(m, f, None if n is None or n != n else n) for m, f, n in names]
    )
    h = h.join(meta, on="run_id")
    fig, axes = grid(len(panels), cols=2 if len(panels) == 4 else 3, width=4.6, height=3.4)
    for ax, (col, title, label, scale, log) in zip(axes, panels, strict=True):
        for (name, e), rows in h.groupby(["series", "eps"], sort=True):
            curve = rows.groupby("epoch")[col].mean().dropna()
            if not len(curve):
                continue
            ax.plot(
                curve.index,
                scale * curve.to_numpy(),
                ls=palette.linestyle(str(name)),
                marker=palette.marker(str(name)),
                ms=3.5,
                color=palette.color(float(e)),
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label, fontsize=8)
        if log:
            log_y(ax)
        ax.set_title(title, fontsize=10)
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    return fig


@register_section("training", order=30)
class Training(Section):
    """Training curves (shi2020 Figs. 3–4; the lab's training loop) of every model and ε.

    One figure: per model × method and training ε, the seed mean over epochs of the test
    accuracy, the tracked input-Fisher norm, the tracked PGD accuracy and the losses. Runs
    loaded from checkpoints without their history: one note says so (the whole section's
    when no run has one).
    """

    title = "Training curves"
    lacking = "no training history stored"

    def html(self, ctx: ReportContext) -> str:
        none = ctx.data.no_history(ctx.table.index)
        if none is not None:
            return skip_html(none[0].upper() + none[1:] + ".")
        loaded = [r for r in ctx.data.historyless_ids() if r in ctx.table.index]
        if not loaded:
            return ""
        labels = ", ".join(str(ctx.table.loc[r, "label"]) for r in loaded)
        return skip_html(f"Loaded from checkpoints, without a training history: {labels}.")

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        return [
            SectionFigure(
                "training",
                fig_training(ctx.data, ctx.table, ctx.palette),
                "Training history, averaged over seeds per model × method and training ε: test "
                "accuracy, the input-Fisher norm ‖F_x‖_F tracked on a test subset (log scale; "
                "shi2020 Figs. 3–4), tracked PGD accuracy, and the losses.",
            )
        ]
