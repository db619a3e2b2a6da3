"""wen2020 (Wen et al., regularization of adversarial robustness): generalization gaps
(Fig. 3), margin distributions (Fig. 4), true-class probability, loss and confidence
histograms (Fig. 5(a–b)) and the singular values of every layer (Fig. 5(c–d), B.2) by
training ε, and the paper's claims on them: margins concentrate near zero, predictions lose
confidence, wrong predictions cost less, the training loss rises while the test loss and
the loss gap fall, and the singular values spread less as ε grows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.report.data import StudyData
from robustscope.report.evidence import Samples, Verdict, combine
from robustscope.report.findings import Finding, PointSource, not_tested, trend, verdict
from robustscope.report.panels import HistSpec, hist_figure, present
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import by_eps, series, spectra_layers
from robustscope.report.style import Palette, grid, log_y, plot_vs_eps
from robustscope.studies.store.vocab import CLEAN_ACCURACY, format_eps

__all__ = [
    "P_MIDDLE",
    "Wen2020",
    "derived_columns",
    "fig_confidence_hists",
    "fig_gaps",
    "fig_margin_hists",
    "fig_singular_values",
    "fig_spectra_std",
]

#: the middle band of true-class probabilities counted by the wen2020 Fig. 5(a) finding
P_MIDDLE = (0.1, 0.9)
MARGIN = r"$f_y - \max_{j \neq y} f_j$"


def fig_gaps(table: pd.DataFrame, palette: Palette, *, used: set[str]) -> Figure | None:
    """wen2020 Fig. 3: train and test loss and error, and their gaps, against ε (from the
    ``generalization_gap`` probe, else the ``margins`` probe's per-split means)."""
    if present(table, "generalization_gap/loss_gap"):
        src = {
            k: f"generalization_gap/{k}"
            for k in ("train_loss", "test_loss", "train_error", "test_error")
        }
        gaps = {"loss": "generalization_gap/loss_gap", "error": "generalization_gap/error_gap"}
        t = table
    elif present(table, "margins/test/loss_mean") and present(table, "margins/train/loss_mean"):
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
    if not groups:  # only models without a training ε
        return None
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


def fig_margin_hists(data: StudyData, table: pd.DataFrame, palette: Palette) -> Figure | None:
    """wen2020 Fig. 4: distributions of the logit margin on test and training points by ε."""
    return hist_figure(
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
    return hist_figure(
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


def _layer_stds(
    rows: pd.DataFrame, layers: dict[str, str]
) -> tuple[dict[str, pd.Series], list[float]]:
    """Per layer the seed-mean STD of its singular values by training ε, and those ε."""
    stds = {layer: by_eps(rows, col)["mean"] for layer, col in layers.items()}
    return stds, sorted({float(e) for s in stds.values() for e in s.index})


def _std_drops(stds: dict[str, pd.Series], eps: list[float]) -> tuple[float, float, list[float]]:
    """The weakest and strongest training ε compared (the extreme ε > 0 when there are two,
    else the extreme ε) and per layer STD(weak) − STD(strong) (NaN where one is missing)."""
    positive = [e for e in eps if e > 0]
    weak, strong = (positive[0], positive[-1]) if len(positive) >= 2 else (eps[0], eps[-1])
    diffs = [
        float(s[weak] - s[strong]) if weak in s.index and strong in s.index else np.nan
        for s in stds.values()
    ]
    return weak, strong, diffs


def fig_spectra_std(table: pd.DataFrame, palette: Palette, *, used: set[str]) -> Figure | None:
    """wen2020 Fig. 5(c–d) and B.2: per-layer STD of the singular values by training ε, and
    the per-layer STD difference between the weakest and the strongest ε."""
    layers = spectra_layers(table)
    if not layers:
        return None
    groups = series(table)
    if not groups:  # only models without a training ε
        return None
    fig, axes = grid(2 * len(groups), cols=2, width=5.6, height=3.6)
    x = np.arange(len(layers))
    names = list(layers)
    for r, (name, rows) in enumerate(groups.items()):
        ax, bx = axes[2 * r], axes[2 * r + 1]
        stds, eps = _layer_stds(rows, layers)
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
        weak, strong, diffs = _std_drops(stds, eps)
        bx.bar(x, diffs, color=["#0072B2" if d > 0 else "#D55E00" for d in diffs])
        bx.axhline(0, color="0.4", lw=0.8)
        bx.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        bx.set_ylabel(f"STD(ε={format_eps(weak)}) − STD(ε={format_eps(strong)})", fontsize=8)
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


def derived_columns(data: StudyData, table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus the quantities some wen2020 claims need that no probe stores as a
    scalar:

    * ``derived/margin_rms`` = √(mean² + std²) of the test margins (their root-mean-square
      distance from zero, exact from the ``margins`` scalars, population std);
    * ``derived/p_true_middle`` — fraction of test examples with ``0.1 ≤ p_y < 0.9``, from
      the ``margins`` probe's fixed-bin histogram ``test/p_true_hist`` (bins counted by
      their centre; exact when 0.1 and 0.9 are bin edges, as with the default 20 bins);
    * ``derived/wrong_loss_mean`` — mean test cross-entropy of the misclassified examples,
      from the ``margins`` arrays ``test/loss`` and ``test/correct``;
    * ``derived/loss_gap`` — test − train mean loss of the ``margins`` probe, when the
      ``generalization_gap`` probe did not run.
    """
    out = table.copy()
    if {"margins/test/margin_mean", "margins/test/margin_std"} <= set(out.columns):
        out["derived/margin_rms"] = np.sqrt(
            out["margins/test/margin_mean"] ** 2 + out["margins/test/margin_std"] ** 2
        )
    middle, wrong = {}, {}
    for rid in out.index:
        hist = data.array(str(rid), "margins", "test/p_true_hist")
        edges = data.array(str(rid), "margins", "test/p_true_edges")
        if hist is not None and edges is not None and hist.sum() > 0:
            centers = 0.5 * (edges[1:] + edges[:-1])
            inside = (centers >= P_MIDDLE[0]) & (centers < P_MIDDLE[1])
            middle[rid] = float(hist[inside].sum() / hist.sum())
        loss = data.array(str(rid), "margins", "test/loss")
        correct = data.array(str(rid), "margins", "test/correct")
        if loss is not None and correct is not None and len(loss) == len(correct):
            bad = ~np.asarray(correct, dtype=bool)
            if bad.any():
                wrong[rid] = float(np.asarray(loss, dtype=float)[bad].mean())
    if middle:
        out["derived/p_true_middle"] = pd.Series(middle, dtype=float)
    if wrong:
        out["derived/wrong_loss_mean"] = pd.Series(wrong, dtype=float)
    if "generalization_gap/loss_gap" not in out.columns and {
        "margins/test/loss_mean",
        "margins/train/loss_mean",
    } <= set(out.columns):
        out["derived/loss_gap"] = out["margins/test/loss_mean"] - out["margins/train/loss_mean"]
    return out


def spectra_spread(table: pd.DataFrame) -> Finding:
    """wen2020 Fig. 5(c–d), B.2: from the weakest to the strongest training ε the per-layer
    STD of the singular values falls in most layers, by more in sum than it rises."""
    claim = (
        "Singular values spread less under stronger adversarial training: from the weakest to "
        "the strongest training ε the per-layer STD of the singular values falls in most "
        "layers, and the summed decreases exceed the summed increases"
    )
    paper = "wen2020 Fig. 5(c–d), §4.2.2, B.2"
    layers = spectra_layers(table)
    if not layers:
        return not_tested(claim, paper, "layer_spectra did not run")
    judged = []
    for name, rows in series(table).items():
        stds, eps = _layer_stds(rows, layers)
        if len(eps) < 2:
            continue
        weak, strong, drops = _std_drops(stds, eps)
        diffs = [d for d in drops if not math.isnan(d)]
        if not diffs:
            continue
        dec = [d for d in diffs if d > 0]
        inc = [-d for d in diffs if d < 0]
        ok = len(dec) > len(inc) and sum(dec) > sum(inc)
        judged.append(
            (
                ok,
                f"{name}, ε = {format_eps(weak)} vs {format_eps(strong)}: STD lower in {len(dec)} of {len(diffs)} "
                f"layers; summed decrease {sum(dec):.3g} vs summed increase {sum(inc):.3g}",
            )
        )
    return verdict(claim, paper, judged, "fewer than two training ε measured")


@register_section("wen2020", order=50)
class Wen2020(Section):
    """wen2020: gaps, margins, confidence and singular values against ε, and its claims."""

    title = "Generalization, margins, confidence and singular values (wen2020)"
    probes = ("margins", "confidence", "generalization_gap", "layer_spectra")

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        d, t, p = ctx.data, ctx.table, ctx.palette
        return [
            SectionFigure(
                "wen2020_gaps",
                fig_gaps(t, p, used=ctx.used),
                "wen2020 Fig. 3: training (dashed) and test (solid) loss and error, and the "
                "generalization gaps (test − train), against the training ε.",
            ),
            SectionFigure(
                "wen2020_margins",
                fig_margin_hists(d, t, p),
                "wen2020 Fig. 4: distribution of the logit margin f_y − max_{j≠y} f_j on test "
                "and training points by training ε (fixed bins; values outside the range are "
                "counted in the end bins; seeds pooled).",
            ),
            SectionFigure(
                "wen2020_confidence",
                fig_confidence_hists(d, t, p),
                "wen2020 Fig. 5(a–b): histograms of the true-class probability p_y and of the "
                "loss −log p_y of test points, and of the confidence max_k p_k, by training ε "
                "(log density).",
            ),
            SectionFigure(
                "wen2020_spectra_std",
                fig_spectra_std(t, p, used=ctx.used),
                "wen2020 Fig. 5(c–d) and B.2: standard deviation of the singular values of each "
                "layer's operator by training ε (circular approximation where only the top "
                "singular values are exact), and per layer the STD at the weakest minus the "
                "strongest training ε (blue: the spread fell).",
            ),
            SectionFigure(
                "singular_values",
                fig_singular_values(d, t, p),
                "Singular values of every layer (descending, against their normalised rank) by "
                "training ε, first seed.",
            ),
        ]

    def findings(self, ctx: ReportContext) -> list[Finding]:
        t = derived_columns(ctx.data, ctx.table)
        pts = derived_points(ctx.data)
        return [
            trend(
                t,
                ("derived/margin_rms",),
                direction=-1,
                claim="Test margins concentrate around zero as ε grows (their root-mean-square "
                "√(mean² + std²) decreases)",
                paper="wen2020 Fig. 1(b), Fig. 4, §4.2.1",
                points=pts,
            ),
            trend(
                t,
                ("derived/p_true_middle",),
                direction=+1,
                claim="More test examples get a middle true-class probability "
                f"({P_MIDDLE[0]:g} ≤ p_y < {P_MIDDLE[1]:g}) as ε grows",
                paper="wen2020 Fig. 5(a), §4.2.1",
                scale=100,
                unit=" %",
                points=pts,
            ),
            trend(
                t,
                ("confidence/mean_max_prob",),
                direction=-1,
                claim="Predictions become less confident as ε grows (mean max-probability falls)",
                paper="wen2020 §1.1, §4.2.1",
                points=pts,
            ),
            trend(
                t,
                ("derived/wrong_loss_mean",),
                direction=-1,
                claim="Wrong test predictions cost less as ε grows (mean test loss of the "
                "misclassified examples falls)",
                paper="wen2020 Fig. 5(b), §4.2.1",
                points=pts,
            ),
            trend(
                t,
                ("generalization_gap/train_loss", "margins/train/loss_mean"),
                direction=+1,
                claim="The training loss rises with ε (adversarial training reduces the "
                "capacity to fit the training set)",
                paper="wen2020 Fig. 3(a), §4.1",
                points=pts,
            ),
            trend(
                t,
                ("generalization_gap/loss_gap", "derived/loss_gap"),
                direction=-1,
                claim="The generalization gap (test − train loss) shrinks as ε grows",
                paper="wen2020 Fig. 3(a), §4.1 (the error-rate gap need not: it grew on "
                "CIFAR-10, B.3)",
                points=pts,
            ),
            loss_falls_error_rises(t, str(ctx.data.spec.get("dataset") or ""), pts),
            trend(
                t,
                ("loss_variation/mean",),
                direction=-1,
                claim="The loss change an attack within a fixed ε can cause falls as the "
                "training ε grows (mean over test examples)",
                paper="wen2020 B.5",
                points=pts,
            ),
            trend(
                t,
                ("loss_variation/std",),
                direction=-1,
                claim="Its standard deviation over test examples falls too",
                paper="wen2020 B.5",
                points=pts,
            ),
            spectra_spread(t),
        ]


#: the datasets on which wen2020 Fig. 3(b) states that the test loss falls as the error rises
LOSS_FALLS_ON = ("cifar10", "cifar100")


def loss_falls_error_rises(table: pd.DataFrame, dataset: str, points: PointSource) -> Finding:
    """wen2020 Fig. 3(b), §4.1, both halves and only where the paper states them: on
    CIFAR-10/100 the test loss falls as ε grows while the test error rises (on
    Tiny-ImageNet the paper saw the loss rise). Holds when both trends hold."""
    claim = "The test loss falls as ε grows while the test error rises"
    paper = "wen2020 Fig. 3(b), §4.1 (CIFAR-10/100; not on Tiny-ImageNet)"
    if dataset not in LOSS_FALLS_ON:
        return not_tested(
            claim,
            paper,
            f"wen2020 states it on CIFAR-10/100 only (on Tiny-ImageNet the test loss did not "
            f"fall); this study is on {dataset or 'an unnamed dataset'}",
        )
    loss = trend(
        table,
        ("margins/test/loss_mean", "generalization_gap/test_loss"),
        direction=-1,
        claim=claim,
        paper=paper,
        points=points,
    )
    error = trend(
        table,
        (CLEAN_ACCURACY,),
        direction=-1,
        claim=claim,
        paper=paper,
        scale=100,
        unit=" %",
        points=points,
    )
    if Verdict.UNTESTED in (loss.verdict, error.verdict):
        return loss if loss.verdict is Verdict.UNTESTED else error
    return Finding(
        claim,
        paper,
        combine([loss.verdict, error.verdict]),
        f"test loss: {loss.evidence}; clean accuracy (1 − test error): {error.evidence}",
    )


def derived_points(data: StudyData) -> PointSource:
    """:meth:`StudyData.points` extended to the ``derived/`` columns of
    :func:`derived_columns`, from the ``margins`` probe's per-example arrays."""

    def points(run_id: str, column: str) -> Samples | None:
        if column == "derived/margin_rms":
            margin = data.array(run_id, "margins", "test/margin")
            return None if margin is None else Samples(margin.astype(float), stat="rms")
        if column == "derived/p_true_middle":
            p = data.array(run_id, "margins", "test/p_true")
            if p is None:
                return None
            return Samples(((p >= P_MIDDLE[0]) & (p < P_MIDDLE[1])).astype(float))
        if column in ("loss_variation/mean", "loss_variation/std"):
            delta = data.array(run_id, "loss_variation", "variation")
            stat = column.rsplit("/", 1)[1]
            return None if delta is None else Samples(delta.astype(float), stat=stat)
        if column == "derived/wrong_loss_mean":
            loss = data.array(run_id, "margins", "test/loss")
            correct = data.array(run_id, "margins", "test/correct")
            if loss is None or correct is None:
                return None
            return Samples(loss.astype(float), weights=(~correct.astype(bool)).astype(float))
        return data.points(run_id, column)

    return points
