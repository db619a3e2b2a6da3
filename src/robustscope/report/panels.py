"""Figure blocks shared by the sections: panels of scalars against the training ε and
histograms by training ε.

``vs_eps_panels`` draws one panel per present column (seed means, bars span the seeds)
and records the columns it drew in the report's ``used`` set; ``hist_figure`` draws, per
series, one step curve per training ε of a probe's fixed-bin histogram (``<key>_hist`` and
``<key>_edges`` arrays), seeds pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.report.data import StudyData
from robustscope.report.stats import series
from robustscope.report.style import Palette, grid, log_y, plot_vs_eps

__all__ = ["HistSpec", "Panel", "hist_figure", "pooled_hist", "present", "vs_eps_panels"]

Panel = tuple[str, str, str, bool]  # column, title, y label, log scale


def present(table: pd.DataFrame, col: str) -> bool:
    """Whether ``table`` has the column ``col`` with at least one value."""
    return col in table.columns and bool(table[col].notna().any())


def vs_eps_panels(
    table: pd.DataFrame,
    palette: Palette,
    panels: list[Panel],
    *,
    used: set[str],
    extra: int = 0,
    cols: int = 3,
) -> tuple[Figure, list[Any]] | None:
    """A figure with one panel per present ``panels`` column against ε, plus ``extra``
    empty axes at the end; None when no column is present or no run has a training ε."""
    live = [p for p in panels if present(table, p[0])]
    groups = series(table)
    if not live or not groups:  # nothing measured, or only models without a training ε
        return None
    fig, axes = grid(len(live) + extra, cols=cols, width=4.3, height=3.4)
    for ax, (col, title, ylabel, log) in zip(axes, live, strict=False):
        plot_vs_eps(ax, groups, col, palette)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        if log and bool((table[col].dropna() > 0).all()):
            log_y(ax)
        used.add(col)
    return fig, axes


def pooled_hist(
    data: StudyData, run_ids: list[str], probe: str, key: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(edges, counts)`` summed over the runs sharing the first run's fixed edges."""
    total: np.ndarray | None = None
    edges0: np.ndarray | None = None
    for rid in run_ids:
        hist = data.array(rid, probe, f"{key}_hist")
        edges = data.array(rid, probe, f"{key}_edges")
        if hist is None or edges is None or len(edges) != len(hist) + 1:
            continue
        if edges0 is None or total is None:
            edges0, total = np.asarray(edges, float), np.asarray(hist, float).copy()
        elif np.allclose(edges, edges0):
            total = total + np.asarray(hist, float)
    if total is None or edges0 is None or total.sum() == 0:
        return None
    return edges0, total


@dataclass(frozen=True)
class HistSpec:
    """One histogram panel: the probe's ``<key>_hist``/``<key>_edges`` arrays."""

    probe: str
    key: str
    title: str
    xlabel: str
    log: bool = False
    trim: bool = False  # limit the x axis to the occupied bins


def hist_figure(
    data: StudyData,
    table: pd.DataFrame,
    palette: Palette,
    specs: list[HistSpec],
    *,
    max_series: int = 3,
) -> Figure | None:
    """Rows = series (at most ``max_series``), columns = the ``specs`` histograms; one step
    curve per training ε (seeds pooled), normalised to a density."""
    groups = dict(list(series(table).items())[:max_series])
    curves: dict[tuple[str, int], list[tuple[float, np.ndarray, np.ndarray]]] = {}
    for name, rows in groups.items():
        for j, spec in enumerate(specs):
            for e, members in rows.groupby("eps"):
                pooled = pooled_hist(data, [str(r) for r in members.index], spec.probe, spec.key)
                if pooled is not None:
                    curves.setdefault((name, j), []).append((float(e), *pooled))
    live = [j for j in range(len(specs)) if any((n, j) in curves for n in groups)]
    names = [n for n in groups if any((n, j) in curves for j in live)]
    if not live:
        return None
    fig, axes = grid(len(live) * len(names), cols=len(live), width=4.4, height=3.3)
    for r, name in enumerate(names):
        for c, j in enumerate(live):
            ax = axes[r * len(live) + c]
            spec = specs[j]
            lo, hi = np.inf, -np.inf
            for e, edges, counts in curves.get((name, j), []):
                density = counts / counts.sum() / np.diff(edges)
                ax.stairs(density, edges, color=palette.color(e), lw=1.6)
                occupied = np.flatnonzero(counts)
                lo, hi = min(lo, edges[occupied[0]]), max(hi, edges[occupied[-1] + 1])
            if spec.trim and np.isfinite(lo) and hi > lo:
                pad = 0.03 * (hi - lo)
                ax.set_xlim(lo - pad, hi + pad)
            if spec.key.endswith("margin"):
                ax.axvline(0, color="0.4", lw=0.8, ls=":")
            if spec.log:
                log_y(ax)
            ax.set_xlabel(spec.xlabel, fontsize=8)
            ax.set_ylabel("density (log)" if spec.log else "density", fontsize=8)
            ax.set_title(f"{name}: {spec.title}" if len(names) > 1 else spec.title, fontsize=9)
    axes[0].legend(handles=palette.eps_handles(table["eps"]), fontsize=7)
    return fig
