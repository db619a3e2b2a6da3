"""tsipras2019 Figs. 1, 6 and 7 by training-set size: clean (standard) accuracy against the
number of training examples for standard and adversarial training, clean and robust accuracy
against the training ε at each size, and the claims that adversarial training costs more
clean accuracy the more data there is and, with enough data, always costs some.

tsipras2019 §4 ("Adversarial training as a form of data augmentation"): with few training
examples adversarial training can act as data augmentation and *help* standard accuracy
(particularly on MNIST), but "as we include more samples in the training set, this positive
effect becomes less significant. In fact, after some point adversarial training actually
decreases the standard accuracy" (Fig. 1: ℓ2 adversaries; Fig. 6: ℓ∞; Fig. 7: accuracy vs
the training ε). A study reproduces it with the ``train_sizes`` axis of its spec
(:mod:`robustscope.studies.spec`): every run is trained once per size ``n`` on the first
``n`` training examples; each run's size is the ``train_size`` column of the run table
(:data:`robustscope.studies.store.vocab.TRAIN_SIZE`).

The claims read the **gap** — the standard model's clean accuracy minus the adversarially
trained model's, seed means, both at the same size — per *line* (model · family at one
training ε > 0), from finished runs only (:meth:`~robustscope.report.data.StudyData.table`):

* it grows with the training-set size: strictly increasing over every size at which both
  were measured, in every line (the convention of :func:`~robustscope.report.findings.trend`,
  with the size in place of ε; gaps within :data:`TIE` are equal, not increasing);
* with enough data adversarial training costs clean accuracy: the gap at the largest size
  is positive in every line.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"model": "m", "family": "pgd", "method": ["standard", "pgd"] * 2,
    ...     "eps": [0.0, 0.1] * 2, "train_size": [100, 100, 1000, 1000], "seed": 0,
    ...     "clean_accuracy": [0.70, 0.72, 0.90, 0.85]})
    >>> {name: [round(g, 3) for g in s] for name, s in gaps(t, "clean_accuracy").items()}
    {'m · pgd ε=0.1': [-0.02, 0.05]}
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from robustscope.report.data import AttackColumn
from robustscope.report.evidence import Draws, Interval, Samples, Verdict, slope
from robustscope.report.findings import (
    Finding,
    PointSource,
    first_present,
    not_tested,
    number,
    verdict,
)
from robustscope.report.page import table_html
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series, trained
from robustscope.report.style import LINESTYLES, Palette, grid, plot_vs_eps
from robustscope.studies.store.vocab import CLEAN_ACCURACY, TRAIN_SIZE, format_eps, train_metric

__all__ = [
    "DataSize",
    "by_size",
    "fig_accuracy_vs_eps_by_size",
    "fig_accuracy_vs_size",
    "gap_grows",
    "gaps",
    "hurts_with_enough_data",
    "lines",
]

#: the clean-accuracy columns the section reads, the first with data
CLEAN_COLUMNS = (CLEAN_ACCURACY, train_metric("test_accuracy"))
#: gaps (differences of accuracies) closer than this are equal: float rounding of two
#: differences of equal accuracies never decides a verdict
TIE = 1e-9
PAPER = "tsipras2019 §4, Figs. 1 and 6"


def by_size(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per training-set size: ``mean``, ``lo`` (min), ``hi`` (max) and ``n`` of ``column``
    over the seeds, NaN values (and runs without a size) dropped; index size ascending."""
    cols = ["mean", "lo", "hi", "n"]
    if column not in rows.columns or TRAIN_SIZE not in rows.columns:
        return pd.DataFrame(columns=cols, dtype=float)
    values = rows[[TRAIN_SIZE, column]].dropna()
    if not len(values):
        return pd.DataFrame(columns=cols, dtype=float)
    g = values.groupby(TRAIN_SIZE)[column]
    out = pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max(), "n": g.count()})
    return out.sort_index()


def _model_standard(table: pd.DataFrame, model: str) -> pd.DataFrame:
    return table[(table["model"] == model) & (table["method"] == "standard") & (table["eps"] == 0)]


def lines(table: pd.DataFrame) -> dict[str, tuple[str, str, float, pd.DataFrame]]:
    """The curves of the size figure: ``"<model> · standard"`` (the standard runs of a model,
    shared by its families) and ``"<model> · <family> ε=<ε>"`` for each training ε > 0 →
    ``(model, family, ε, rows)``, in the table's order."""
    out: dict[str, tuple[str, str, float, pd.DataFrame]] = {}
    if not len(table):
        return out
    for model in dict.fromkeys(table["model"]):
        std = _model_standard(table, str(model))
        if len(std):
            out[f"{model} · standard"] = (str(model), "standard", 0.0, std)
        mine = table[(table["model"] == model) & (table["eps"] > 0)]
        for (family, eps), rows in mine.groupby(["family", "eps"], sort=False):
            name = f"{model} · {family} ε={format_eps(float(eps))}"
            out[name] = (str(model), str(family), float(eps), rows)
    return out


def gaps(table: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Per line with ε > 0 (:func:`lines`): the standard model's ``column`` minus the line's,
    seed means at each training-set size where both were measured (index: size, ascending).
    Positive: adversarial training costs clean accuracy at that size."""
    out: dict[str, pd.Series] = {}
    for name, (model, _family, eps, rows) in lines(table).items():
        if eps == 0:
            continue
        std = by_size(_model_standard(table, model), column)["mean"]
        adv = by_size(rows, column)["mean"]
        both = std.index.intersection(adv.index)
        if len(both):
            out[name] = (std.loc[both] - adv.loc[both]).sort_index()
    return out


def _sizes(index: pd.Index) -> str:
    return ", ".join(str(int(n)) for n in index)


def _points(s: pd.Series) -> str:
    return " → ".join(number(v, 100) for v in s)


def gap_draws(
    table: pd.DataFrame, column: str, points: PointSource | None
) -> dict[str, tuple[list[float], Draws]]:
    """Per line with ε > 0 (:func:`lines`): the training-set sizes where it and its model's
    standard run were both measured, and the bootstrap :class:`Draws` of
    ``[standard, adversarial]`` at each of them, in that order (for :func:`_gap`)."""
    out: dict[str, tuple[list[float], Draws]] = {}
    for name, (model, _family, eps, rows) in lines(table).items():
        if eps == 0:
            continue
        std = _model_standard(table, model)
        sizes = sorted(set(std[TRAIN_SIZE].dropna()) & set(rows[TRAIN_SIZE].dropna()), key=float)
        members: list[list[tuple[float, Samples | None]]] = []
        for n in sizes:
            for part in (std, rows):
                at = part[(part[TRAIN_SIZE] == n) & part[column].notna()]
                members.append(
                    [
                        (float(v), points(str(rid), column) if points else None)
                        for rid, v in at[column].items()
                    ]
                )
        if sizes and all(members):
            out[name] = ([float(n) for n in sizes], Draws.of(members, list(range(len(members)))))
    return out


def _gap(values: np.ndarray) -> np.ndarray:
    """``[..., 2S]`` (standard, adversarial per size) → ``[..., S]`` the gaps."""
    return np.asarray(values[..., 0::2] - values[..., 1::2])


def _gap_slope(logn: np.ndarray, _: np.ndarray, values: np.ndarray) -> np.ndarray:
    return slope(logn, _gap(values))


def _gap_at(k: int, _: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.asarray(_gap(values)[..., k])


def _decide(iv: Interval) -> Verdict:
    """Above 0 by the interval; inconclusive when nothing could be resampled (accuracies
    are averages over test points: without them, or seeds, there is no interval)."""
    return Verdict.INCONCLUSIVE if iv.exact else iv.decide(0.0, +1)


def gap_grows(table: pd.DataFrame, points: PointSource | None = None) -> Finding:
    """tsipras2019 Figs. 1, 6: the clean-accuracy gap (standard − adversarial) grows with
    the training-set size in every line — the bootstrap interval of the gap's least-squares
    slope along log₁₀(size) lies above 0; the evidence names the sizes where adversarial
    training helped (gap < 0)."""
    claim = (
        "Adversarial training costs more clean accuracy the more training data there is: the "
        "gap (standard − adversarially trained clean accuracy) grows with the training-set size"
    )
    col = first_present(table, CLEAN_COLUMNS)
    if col is None:
        return not_tested(claim, PAPER, f"{CLEAN_COLUMNS[0]} was not measured")
    judged: list[tuple[Verdict | bool, str]] = []
    for name, (sizes, draws) in gap_draws(table, col, points).items():
        if len(sizes) < 2:
            continue
        iv = draws.interval(partial(_gap_slope, np.log10(np.asarray(sizes))))
        g = pd.Series(_gap(draws.point), index=pd.Index(sizes))
        text = (
            f"{name}: gap {_points(g)} pts at n = {_sizes(g.index)}; slope per decade "
            f"{iv.text(lambda v: number(v, 100))} pts"
        )
        helped = [n for n, v in g.items() if v < -TIE]
        if helped:
            text += f"; adversarial training helped at n = {_sizes(pd.Index(helped))}"
        judged.append((_decide(iv), text))
    note = "" if col == CLEAN_COLUMNS[0] else f" [from {col}]"
    untested = (
        "no adversarially trained model and standard model both finished at two or more "
        "training-set sizes (set the spec's train_sizes)"
    )
    return verdict(claim, PAPER, judged, untested, note)


def hurts_with_enough_data(table: pd.DataFrame, points: PointSource | None = None) -> Finding:
    """tsipras2019 Figs. 1, 6 ("in the limit of sufficient training data"): at the largest
    training-set size of the study every adversarially trained model's clean accuracy is
    below the standard model's — the gap's bootstrap interval lies above 0 — read where the
    study spans two or more sizes."""
    claim = (
        "With enough training data adversarial training lowers clean accuracy: at the largest "
        "training-set size every adversarially trained model is below the standard one"
    )
    col = first_present(table, CLEAN_COLUMNS)
    if col is None:
        return not_tested(claim, PAPER, f"{CLEAN_COLUMNS[0]} was not measured")
    sizes = sorted({float(n) for n in table[TRAIN_SIZE].dropna()}) if TRAIN_SIZE in table else []
    judged: list[tuple[Verdict | bool, str]] = []
    if len(sizes) >= 2:
        largest = sizes[-1]
        for name, (have, draws) in gap_draws(table, col, points).items():
            if largest not in have:
                continue
            k = have.index(largest)
            iv = draws.interval(partial(_gap_at, k))
            judged.append(
                (
                    _decide(iv),
                    f"{name}: gap {iv.text(lambda v: number(v, 100))} pts at n = {int(largest)}",
                )
            )
    note = "" if col == CLEAN_COLUMNS[0] else f" [from {col}]"
    untested = (
        "no adversarially trained model and standard model both finished at the largest of "
        "two or more training-set sizes (set the spec's train_sizes)"
    )
    return verdict(claim, PAPER, judged, untested, note)


def fig_accuracy_vs_size(
    table: pd.DataFrame, palette: Palette, columns: list[tuple[str, str]]
) -> Figure | None:
    """tsipras2019 Figs. 1 and 6: each of ``columns`` (``(column, y label)``; clean accuracy
    first) against the training-set size (log x), one panel per model × column, one line per
    training ε (standard solid; each family its own dash), coloured by ε; bars span the
    seeds (min–max)."""
    live = [(c, label) for c, label in columns if c in table.columns and table[c].notna().any()]
    curves = lines(table)
    if not live or not curves or TRAIN_SIZE not in table.columns:
        return None
    models = list(dict.fromkeys(m for m, *_ in curves.values()))
    families = list(dict.fromkeys(f for _, f, *_ in curves.values() if f != "standard"))
    dash = {f: LINESTYLES[(i + 1) % len(LINESTYLES)] for i, f in enumerate(families)}
    dash["standard"] = "-"
    fig, axes = grid(len(models) * len(live), cols=len(live), width=5.2, height=3.8)
    drawn = False
    for i, model in enumerate(models):
        for j, (col, ylabel) in enumerate(live):
            ax = axes[i * len(live) + j]
            for _name, (m, family, eps, rows) in curves.items():
                if m != model:
                    continue
                s = by_size(rows, col)
                if not len(s):
                    continue
                x = s.index.to_numpy(dtype=float)
                y = 100 * s["mean"].to_numpy(dtype=float)
                color = palette.color(eps)
                ax.plot(x, y, ls=dash[family], color=color, lw=1.6, marker="o", ms=5)
                spread = s["n"].to_numpy() > 1
                if spread.any():
                    lo = y - 100 * s["lo"].to_numpy(dtype=float)
                    hi = 100 * s["hi"].to_numpy(dtype=float) - y
                    ax.errorbar(
                        x[spread],
                        y[spread],
                        yerr=[lo[spread], hi[spread]],
                        fmt="none",
                        ecolor=color,
                        capsize=3,
                    )
                drawn = True
            ax.set_xscale("log")
            # the sizes themselves as ticks: log-scale minor labels overlap on a short range
            sizes = sorted({int(n) for n in table[TRAIN_SIZE].dropna()})
            ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("training-set size (examples, log scale)")
            ax.set_ylabel(ylabel, fontsize=8)
            title = ylabel.removesuffix(" (%)")
            ax.set_title(f"{model}: {title} vs training-set size", fontsize=10)
    if not drawn:
        return None
    handles = palette.eps_handles(table["eps"])
    if families:
        handles += [
            Line2D([], [], color="0.3", ls=dash[f], label=f) for f in ["standard", *families]
        ]
    axes[0].legend(handles=handles, fontsize=7, loc="best")
    return fig


def fig_accuracy_vs_eps_by_size(
    table: pd.DataFrame, palette: Palette, robust: AttackColumn | None
) -> Figure | None:
    """tsipras2019 Fig. 7 at each training-set size: clean accuracy and (when an attack was
    evaluated) robust accuracy against the training ε, one line per model × family × size
    (:func:`~robustscope.report.stats.series` splits a sized study by size)."""
    col = first_present(table, CLEAN_COLUMNS)
    panels = [(col, "clean accuracy (%)")] if col else []
    if robust is not None and robust.column in table.columns:
        panels.append(
            (robust.column, f"robust accuracy, {robust.label} at ε = {format_eps(robust.eps)} (%)")
        )
    if not panels:
        return None
    groups = series(table)
    fig, axes = grid(len(panels), cols=2, width=5.4, height=4.0)
    for ax, (column, ylabel) in zip(axes, panels, strict=True):
        plot_vs_eps(ax, groups, column, palette, scale=100)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(ylabel.removesuffix(" (%)") + " vs training ε, by size", fontsize=10)
    axes[0].legend(fontsize=7, loc="best")
    return fig


@register_section("datasize", order=27)
class DataSize(Section):
    """tsipras2019 Figs. 1, 6, 7: accuracy against the training-set size, standard vs adversarial."""

    title = "Training-set size"
    lacking = "no clean accuracy measured"

    def applies(self, ctx: ReportContext) -> bool:
        """On the page when the study's runs span two or more training-set sizes."""
        return len(ctx.data.train_sizes()) >= 2

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        t, robust = ctx.table, ctx.robust
        clean = first_present(t, CLEAN_COLUMNS)
        columns = [(clean, "clean accuracy (%)")] if clean else []
        if robust is not None:
            label = f"robust accuracy, {robust.label} at ε = {format_eps(robust.eps)} (%)"
            columns.append((robust.column, label))
        return [
            SectionFigure(
                "accuracy_vs_train_size",
                fig_accuracy_vs_size(t, ctx.palette, columns),
                "tsipras2019 Figs. 1 and 6: clean (standard) test accuracy against the number "
                "of training examples (log scale), standard training (ε = 0, solid) and "
                "adversarial training at each ε (dashed), seed means (bars span the seeds); "
                "robust accuracy beside it when an attack was evaluated. tsipras2019: "
                "adversarial training helps in the small-data regime and hurts with enough "
                "data.",
            ),
            SectionFigure(
                "accuracy_vs_train_eps_by_size",
                fig_accuracy_vs_eps_by_size(t, ctx.palette, robust),
                "tsipras2019 Fig. 7 at each training-set size: clean and robust accuracy "
                "against the training ε, one line per model × method × size (n = number of "
                "training examples).",
            ),
        ]

    def html(self, ctx: ReportContext) -> str:
        col = first_present(ctx.table, CLEAN_COLUMNS)
        found = gaps(ctx.table, col) if col else {}
        if not found:
            return ""
        frame = pd.DataFrame({name: 100 * g for name, g in found.items()}).T
        frame.columns = [f"n = {int(n)}" for n in frame.columns]
        frame.index.name = "clean-accuracy gap (points)"
        return (
            "<p>Clean-accuracy gap, standard minus adversarially trained (percentage points, "
            "seed means; positive: adversarial training costs accuracy at that size).</p>"
            + table_html(frame)
        )

    def findings(self, ctx: ReportContext) -> list[Finding]:
        table = trained(ctx.table, ctx.data.spec)
        return [gap_grows(table, ctx.points), hurts_with_enough_data(table, ctx.points)]
