"""Figures of the probes: shi2020 (Fisher, CCKL, G1 share), wen2020 (gaps, margins,
confidence and loss histograms, singular values), terzi2021/tsipras2019 (weights), and a
generic one for any other probe.

Every function takes the finished-run table (see :meth:`StudyData.table`), the report's
:class:`~robustscope.report.style.Palette` and a ``used`` set into which it adds the
columns it drew (the report tabulates the others); it returns a ``Figure`` or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.report.data import StudyData, natural_key
from robustscope.report.stats import by_eps, series, spectra_layers
from robustscope.report.style import Palette, grid, log_y, plot_vs_eps
from robustscope.studies.store.vocab import CLEAN_ACCURACY

__all__ = [
    "DEDICATED_PROBES",
    "fig_confidence_hists",
    "fig_gaps",
    "fig_generic",
    "fig_margin_hists",
    "fig_shi2020",
    "fig_singular_values",
    "fig_spectra_std",
    "fig_weights",
]

#: probes with a section of their own; any other probe gets :func:`fig_generic`
DEDICATED_PROBES = (
    "input_fisher",
    "cckl",
    "taylor_split",
    "margins",
    "confidence",
    "generalization_gap",
    "layer_spectra",
    "weight_norms",
    "weight_information",
    "representation_fisher",
)

Panel = tuple[str, str, str, bool]  # column, title, y label, log scale


def _present(table: pd.DataFrame, col: str) -> bool:
    return col in table.columns and bool(table[col].notna().any())


def _vs_eps_panels(
    table: pd.DataFrame,
    palette: Palette,
    panels: list[Panel],
    used: set[str],
    *,
    extra: int = 0,
    cols: int = 3,
) -> tuple[Figure, list[Any]] | None:
    """A figure with one panel per present ``panels`` column against ε, plus ``extra``
    empty axes at the end; None when no column is present."""
    live = [p for p in panels if _present(table, p[0])]
    if not live:
        return None
    groups = series(table)
    fig, axes = grid(len(live) + extra, cols=cols, width=4.3, height=3.4)
    for ax, (col, title, ylabel, log) in zip(axes, live, strict=False):
        plot_vs_eps(ax, groups, col, palette)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        if log and bool((table[col].dropna() > 0).all()):
            log_y(ax)
        used.add(col)
    return fig, axes


def fig_shi2020(table: pd.DataFrame, palette: Palette, used: set[str]) -> Figure | None:
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
    scatter = _present(table, "cckl/value") and _present(table, CLEAN_ACCURACY)
    out = _vs_eps_panels(table, palette, panels, used, extra=int(scatter))
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


def fig_gaps(table: pd.DataFrame, palette: Palette, used: set[str]) -> Figure | None:
    """wen2020 Fig. 3: train and test loss and error, and their gaps, against ε (from the
    ``generalization_gap`` probe, else the ``margins`` probe's per-split means)."""
    if _present(table, "generalization_gap/loss_gap"):
        src = {
            k: f"generalization_gap/{k}"
            for k in ("train_loss", "test_loss", "train_error", "test_error")
        }
        gaps = {"loss": "generalization_gap/loss_gap", "error": "generalization_gap/error_gap"}
        t = table
    elif _present(table, "margins/test/loss_mean") and _present(table, "margins/train/loss_mean"):
        src = {
            "train_loss": "margins/train/loss_mean",
            "test_loss": "margins/test/loss_mean",
            "train_error": "margins/train/error_rate",
            "test_error": "margins/test/error_rate",
        }
        t = table.assign(
            **{
                "gap/loss": table[src["test_loss"]] - table[src["train_loss"]],
                "gap/error": table[src["test_error"]] - table[src["train_error"]],
            }
        )
        gaps = {"loss": "gap/loss", "error": "gap/error"}
    else:
        return None
    groups = series(t)
    fig, axes = grid(4, cols=4, width=3.7, height=3.3)
    for ax, kind, scale, unit in (
        (axes[0], "loss", 1.0, "cross-entropy (nats)"),
        (axes[1], "error", 100.0, "error rate (%)"),
    ):
        plot_vs_eps(ax, groups, src[f"train_{kind}"], palette, scale=scale, linestyle="--")
        plot_vs_eps(ax, groups, src[f"test_{kind}"], palette, scale=scale, linestyle="-")
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(f"{kind}: train (dashed), test (solid)", fontsize=10)
    for ax, kind, scale, unit in (
        (axes[2], "loss", 1.0, "test − train loss (nats)"),
        (axes[3], "error", 100.0, "test − train error (% points)"),
    ):
        plot_vs_eps(ax, groups, gaps[kind], palette, scale=scale)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_title(f"generalization gap ({kind})", fontsize=10)
    used.update(v for v in [*src.values(), *gaps.values()] if v in table.columns)
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    return fig


def _pooled_hist(
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


def _hist_figure(
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
                pooled = _pooled_hist(data, [str(r) for r in members.index], spec.probe, spec.key)
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


MARGIN = r"$f_y - \max_{j \neq y} f_j$"


def fig_margin_hists(data: StudyData, table: pd.DataFrame, palette: Palette) -> Figure | None:
    """wen2020 Fig. 4: distributions of the logit margin on test and training points by ε."""
    return _hist_figure(
        data,
        table,
        palette,
        [
            HistSpec("margins", "test/margin", "test margins (wen2020 Fig. 4)",
                     f"logit margin {MARGIN}", trim=True),
            HistSpec("margins", "train/margin", "training margins (wen2020 Fig. 4)",
                     f"logit margin {MARGIN}", trim=True),
        ],
    )  # fmt: skip


def fig_confidence_hists(data: StudyData, table: pd.DataFrame, palette: Palette) -> Figure | None:
    """wen2020 Fig. 5(a–b): true-class probability and loss of test points by ε, and the
    confidence (max-probability) histogram."""
    return _hist_figure(
        data,
        table,
        palette,
        [
            HistSpec("margins", "test/p_true", "true-class probability (Fig. 5a)",
                     "test true-class probability $p_y$", log=True),
            HistSpec("margins", "test/loss", "test loss (Fig. 5b)",
                     r"test loss $-\log p_y$ (nats)", log=True, trim=True),
            HistSpec("confidence", "confidence", "confidence",
                     r"test confidence $\max_k p_k$", log=True),
        ],
    )  # fmt: skip


def fig_spectra_std(table: pd.DataFrame, palette: Palette, used: set[str]) -> Figure | None:
    """wen2020 Fig. 5(c–d) and B.2: per-layer STD of the singular values by training ε, and
    the per-layer STD difference between the weakest and the strongest ε."""
    layers = spectra_layers(table)
    if not layers:
        return None
    groups = series(table)
    fig, axes = grid(2 * len(groups), cols=2, width=5.6, height=3.6)
    x = np.arange(len(layers))
    names = list(layers)
    for r, (name, rows) in enumerate(groups.items()):
        ax, bx = axes[2 * r], axes[2 * r + 1]
        stds = {layer: by_eps(rows, col)["mean"] for layer, col in layers.items()}
        eps = sorted({float(e) for s in stds.values() for e in s.index})
        if not eps:
            ax.set_visible(False)
            bx.set_visible(False)
            continue
        for e in eps:
            ys = [float(stds[n][e]) if e in stds[n].index else np.nan for n in names]
            ax.plot(x, ys, marker=palette.marker(name), color=palette.color(e), lw=1.3)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("STD of singular values", fontsize=8)
        ax.set_title(f"{name}: singular-value STD per layer", fontsize=9)
        positive = [e for e in eps if e > 0]
        weak, strong = (positive[0], positive[-1]) if len(positive) >= 2 else (eps[0], eps[-1])
        diffs = [
            float(stds[n][weak] - stds[n][strong])
            if weak in stds[n].index and strong in stds[n].index
            else np.nan
            for n in names
        ]
        bx.bar(x, diffs, color=["#0072B2" if d > 0 else "#D55E00" for d in diffs])
        bx.axhline(0, color="0.4", lw=0.8)
        bx.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        bx.set_ylabel(f"STD(ε={weak:g}) − STD(ε={strong:g})", fontsize=8)
        dec = sum(d for d in diffs if d > 0)
        inc = -sum(d for d in diffs if d < 0)
        bx.set_title(f"B.2: Σ decrease {dec:.3g} vs Σ increase {inc:.3g}", fontsize=9)
    used.update(layers.values())
    axes[0].legend(handles=palette.eps_handles(table["eps"]), fontsize=7)
    return fig


def fig_singular_values(
    data: StudyData, table: pd.DataFrame, palette: Palette, *, max_layers: int = 8
) -> Figure | None:
    """The singular values of each layer (descending, against their normalised rank) by
    training ε, for the first series and its first seed — the spread behind Fig. 5(c–d).
    Where only the top ones are exact the full circular approximation is drawn."""
    groups = series(table)
    if not groups:
        return None
    name, rows = next(iter(groups.items()))
    layers = list(spectra_layers(table))[:max_layers]
    if not layers:
        return None
    per_layer: dict[str, list[tuple[float, np.ndarray]]] = {}
    approx_layers: set[str] = set()
    for e, members in rows.groupby("eps"):
        rid = str(members.index[0])
        for layer in layers:
            sv = data.array(rid, "layer_spectra", f"{layer}/singular_values")
            approx = data.array(rid, "layer_spectra", f"{layer}/approx_singular_values")
            if approx is not None and (sv is None or len(sv) < len(approx)):
                sv = approx
                approx_layers.add(layer)
            if sv is not None and len(sv):
                per_layer.setdefault(layer, []).append((float(e), np.sort(sv)[::-1]))
    if not per_layer:
        return None
    fig, axes = grid(len(per_layer), cols=4, width=3.3, height=2.9)
    for ax, (layer, curves) in zip(axes, per_layer.items(), strict=True):
        for e, sv in curves:
            ax.plot(
                np.linspace(0, 1, len(sv)), np.maximum(sv, 1e-12), color=palette.color(e), lw=1.4
            )
        log_y(ax)
        ax.set_title(layer + (" (circular approx.)" if layer in approx_layers else ""), fontsize=9)
        ax.set_xlabel("rank / number of singular values", fontsize=7)
        ax.set_ylabel("singular value (log)", fontsize=7)
    axes[0].legend(handles=palette.eps_handles(table["eps"]), fontsize=6)
    fig.suptitle(f"{name}: singular values of every layer by training ε", fontsize=10)
    return fig


def fig_weights(table: pd.DataFrame, palette: Palette, used: set[str]) -> Figure | None:
    """terzi2021 Figs. 4–5 and tsipras2019 Table 5: weight norms, per-layer ℓ2 norms,
    information in the weights and the representation's Fisher against ε."""
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
        (c for c in table.columns if str(c).startswith("weight_norms/l2/") and _present(table, c)),
        key=lambda c: natural_key(str(c).split("/", 2)[2]),
    )
    out = _vs_eps_panels(table, palette, panels, used, extra=int(bool(layer_cols)))
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
    table: pd.DataFrame, palette: Palette, probe: str, used: set[str], *, max_panels: int = 9
) -> Figure | None:
    """Any probe's scalars that vary across the models, against ε (at most ``max_panels``)."""
    cols = [
        str(c)
        for c in table.columns
        if str(c).startswith(f"{probe}/")
        and _present(table, str(c))
        and table[c].dropna().nunique() > 1
    ][:max_panels]
    panels: list[Panel] = [(c, c.split("/", 1)[1], c.split("/", 1)[1], False) for c in cols]
    out = _vs_eps_panels(table, palette, panels, used)
    if out is None:
        return None
    fig, axes = out
    axes[0].legend(handles=palette.eps_handles(table["eps"]) + palette.series_handles(), fontsize=7)
    fig.suptitle(f"probe {probe}: scalars against the training ε", fontsize=10)
    return fig
