"""Figures of the trade-off itself: the frontier, robust accuracy against the attack's ε,
and the training curves (shi2020 Figs. 3–4).

Each function returns a ``Figure`` or None when the study lacks the data.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from robustscope.report.data import AttackColumn, StudyData
from robustscope.report.stats import by_eps, series
from robustscope.report.style import Palette, grid, log_y
from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps

__all__ = ["fig_frontier", "fig_robust_vs_attack_eps", "fig_training"]


def fig_frontier(table: pd.DataFrame, robust: AttackColumn, palette: Palette) -> Figure | None:
    """Clean vs robust accuracy (the column ``robust`` of ``table``), one point per training
    ε and series (seed means; bars span the seeds, min–max), points joined in ε order and
    annotated with ε."""
    column = robust.column
    if CLEAN_ACCURACY not in table.columns or column not in table.columns:
        return None
    groups = series(table)
    fig, (ax,) = grid(1, width=7.2, height=5.2)
    drawn = False
    for name, rows in groups.items():
        cx, ry = by_eps(rows, CLEAN_ACCURACY), by_eps(rows, column)
        eps = [e for e in cx.index if e in ry.index]
        if not eps:
            continue
        xs = [100 * cx.loc[e, "mean"] for e in eps]
        ys = [100 * ry.loc[e, "mean"] for e in eps]
        ax.plot(xs, ys, ls=palette.linestyle(name), color="0.55", lw=1.2, zorder=1)
        for e, x, y in zip(eps, xs, ys, strict=True):
            xerr = yerr = None
            if cx.loc[e, "n"] > 1:
                xerr = [[x - 100 * cx.loc[e, "lo"]], [100 * cx.loc[e, "hi"] - x]]
            if ry.loc[e, "n"] > 1:
                yerr = [[y - 100 * ry.loc[e, "lo"]], [100 * ry.loc[e, "hi"] - y]]
            ax.errorbar(
                [x],
                [y],
                xerr=xerr,
                yerr=yerr,
                fmt=palette.marker(name),
                color=palette.color(float(e)),
                ms=9,
                mec="k",
                mew=0.6,
                capsize=3,
                zorder=2,
            )
            ax.annotate(
                f"ε={float(e):g}",
                (x, y),
                textcoords="offset points",
                xytext=(7, 6),
                fontsize=8,
                color="0.2",
            )
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy under {robust.label} at ε = {format_eps(robust.eps)} (%)")
    ax.set_title("Robustness–accuracy trade-off: one point per training ε")
    ax.legend(
        handles=palette.eps_handles(table["eps"]) + palette.series_handles(),
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
    groups = series(table)
    fig, axes = grid(len(groups), cols=2, width=5.6, height=4.2)
    for ax, (name, rows) in zip(axes, groups.items(), strict=True):
        for e, members in rows.groupby("eps"):
            color = palette.color(float(e))
            for k, attack in enumerate(attacks):
                points = {c.eps: c.column for c in cols if c.label == attack}
                curve = []
                for a_eps, col in sorted(points.items()):
                    vals = members[col].dropna()
                    if len(vals):
                        curve.append((a_eps, vals.mean(), vals.min(), vals.max()))
                if 0.0 not in points and CLEAN_ACCURACY in members and curve:
                    vals = members[CLEAN_ACCURACY].dropna()
                    if len(vals):
                        curve.insert(0, (0.0, vals.mean(), vals.min(), vals.max()))
                if not curve:
                    continue
                x = [p[0] for p in curve]
                ax.plot(
                    x,
                    [100 * p[1] for p in curve],
                    ls=styles[k % len(styles)],
                    marker="o",
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
        ax.set_xlabel("attack ε (pixel units)")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_title(f"{name}: robust accuracy vs attack ε", fontsize=10)
        ax.set_ylim(-2, 102)
    handles = palette.eps_handles(table["eps"])
    if len(attacks) > 1:
        handles += [
            Line2D([], [], color="0.3", ls=styles[k % len(styles)], label=a)
            for k, a in enumerate(attacks)
        ]
    axes[0].legend(handles=handles, fontsize=7, loc="upper right")
    return fig


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
    meta = table[["eps"]].assign(
        series=[f"{m} · {f}" for m, f in zip(table["model"], table["family"], strict=True)]
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
