"""The report's look: one colour per training ε (the same in every figure), one marker and
line style per series, one colour per study on a comparison page (:func:`study_color`), figure
creation and PNG encoding on the Agg canvas.

Figures are ``matplotlib.figure.Figure`` objects drawn on an Agg canvas — no pyplot, no
global state, no display needed. Colours come from viridis (perceptually uniform and
colour-blind safe), ordered by ε so that "darker = weaker adversary" holds everywhere.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from robustscope.report.stats import by_eps

__all__ = [
    "DPI",
    "STUDY_COLORS",
    "Palette",
    "grid",
    "log_y",
    "plot_vs_eps",
    "png_bytes",
    "study_color",
]

DPI = 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
#: the studies' colours on a comparison page, in order: Okabe & Ito's colour-blind-safe set
#: (its yellow, faint on white, last)
STUDY_COLORS = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)


def study_color(i: int) -> str:
    """The colour of the ``i``-th study of a comparison (the set repeats after eight)."""
    return STUDY_COLORS[i % len(STUDY_COLORS)]


class Palette:
    """Colours by training ε and markers/line styles by series, fixed for one report."""

    def __init__(self, eps_values: Iterable[float], series_names: Iterable[str]) -> None:
        from matplotlib import colormaps

        self.eps = sorted({float(e) for e in eps_values if e == e})
        cmap = colormaps["viridis"]
        n = max(len(self.eps) - 1, 1)
        self._colors = {e: cmap(0.88 * i / n) for i, e in enumerate(self.eps)}
        self.series = list(dict.fromkeys(series_names))

    def color(self, eps: float) -> Any:
        eps = float(eps)
        if eps in self._colors:
            return self._colors[eps]
        for e, c in self._colors.items():
            if math.isclose(e, eps, rel_tol=1e-9):
                return c
        return "0.4"

    def marker(self, name: str) -> str:
        i = self.series.index(name) if name in self.series else 0
        return MARKERS[i % len(MARKERS)]

    def linestyle(self, name: str) -> str:
        i = self.series.index(name) if name in self.series else 0
        return LINESTYLES[i % len(LINESTYLES)]

    def eps_handles(self, eps: Iterable[float] | None = None) -> list[Line2D]:
        """Legend entries "train ε = …" (one per ε)."""
        chosen = self.eps if eps is None else sorted({float(e) for e in eps if e == e})
        return [
            Line2D([], [], color=self.color(e), marker="o", lw=2, label=f"train ε = {e:g}")
            for e in chosen
        ]

    def series_handles(self) -> list[Line2D]:
        """Legend entries, one per series (marker and line style), when there are several."""
        if len(self.series) < 2:
            return []
        return [
            Line2D(
                [], [], color="0.3", marker=self.marker(s), ls=self.linestyle(s), label=s, mfc="w"
            )
            for s in self.series
        ]


def grid(
    n: int, *, cols: int = 3, width: float = 4.2, height: float = 3.3
) -> tuple[Figure, list[Any]]:
    """A constrained-layout figure with ``n`` axes in rows of ``cols`` (spare axes hidden)."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)
    axes = list(np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[:n]:
        ax.grid(alpha=0.3)
    return fig, axes[:n]


def log_y(ax: Any) -> None:
    """Log-scale y axis labelled with plain numbers (0.2, 1, 5) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(v: float, _: Any) -> str:
        lead = f"{v:e}"[0]
        return f"{v:g}" if lead in "25" else ""

    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 50:
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def plot_vs_eps(
    ax: Any,
    groups: dict[str, pd.DataFrame],
    column: str,
    palette: Palette,
    *,
    scale: float = 1.0,
    label_suffix: str = "",
    linestyle: str | None = None,
    line_color: Any = "0.35",
    point_color: Any = None,
) -> bool:
    """One line per series of ``column``'s seed mean against training ε; points coloured by
    ε (or all ``point_color``); error bars span the seeds (min–max). Returns whether anything
    was drawn."""
    drawn = False
    for name, rows in groups.items():
        s = by_eps(rows, column)
        if not len(s):
            continue
        x = s.index.to_numpy(dtype=float)
        y = scale * s["mean"].to_numpy(dtype=float)
        ax.plot(
            x,
            y,
            ls=linestyle or palette.linestyle(name),
            color=line_color,
            lw=1.2,
            zorder=1,
            label=f"{name}{label_suffix}",
        )
        for e, mean, lo, hi, n in zip(x, s["mean"], s["lo"], s["hi"], s["n"], strict=True):
            m = scale * mean
            yerr = [[m - scale * lo], [scale * hi - m]] if n > 1 else None
            ax.errorbar(
                [e],
                [m],
                yerr=yerr,
                fmt=palette.marker(name),
                color=palette.color(e) if point_color is None else point_color,
                ms=7,
                capsize=3,
                mec="k",
                mew=0.5,
                zorder=2,
            )
        drawn = True
    ax.set_xlabel("training ε (pixel units)")
    return drawn


def plot_frontier(
    ax: Any,
    groups: dict[str, pd.DataFrame],
    column: str,
    palette: Palette,
    *,
    line_color: Any = "0.55",
    point_color: Any = None,
    label_color: Any = "0.2",
) -> bool:
    """One line per series through its (clean accuracy, ``column``) seed means, one point per
    training ε coloured by ε (or all ``point_color``) and labelled with it; bars span the
    seeds (min–max) on both axes. Returns whether anything was drawn."""
    from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps

    drawn = False
    for name, rows in groups.items():
        cx, ry = by_eps(rows, CLEAN_ACCURACY), by_eps(rows, column)
        eps = [e for e in cx.index if e in ry.index]
        if not eps:
            continue
        xs = [100 * cx.loc[e, "mean"] for e in eps]
        ys = [100 * ry.loc[e, "mean"] for e in eps]
        ax.plot(xs, ys, ls=palette.linestyle(name), color=line_color, lw=1.2, zorder=1)
        for e, x, y in zip(eps, xs, ys, strict=True):
            xerr = yerr = None
            if cx.loc[e, "n"] > 1:
                xerr = [[x - 100 * cx.loc[e, "lo"]], [100 * cx.loc[e, "hi"] - x]]
            if ry.loc[e, "n"] > 1:
                yerr = [[y - 100 * ry.loc[e, "lo"]], [100 * ry.loc[e, "hi"] - y]]
            color = palette.color(float(e)) if point_color is None else point_color
            ax.errorbar(
                [x], [y], xerr=xerr, yerr=yerr, fmt=palette.marker(name), color=color, ms=9,
                mec="k", mew=0.6, capsize=3, zorder=2,
            )  # fmt: skip
            ax.annotate(
                f"ε={format_eps(e)}", (x, y), textcoords="offset points", xytext=(7, 6),
                fontsize=8, color=label_color,
            )  # fmt: skip
        drawn = True
    return drawn
