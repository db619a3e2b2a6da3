"""terzi2021: effective information in the activations (Def. 0.6, eq. 8), linear
transferability and task distance (Tables 1–3), inversion and effective images (Figs. 1–2).

Each part reads the probe of the same name (``effective_information``, ``transfer``,
``inversion``); a study that did not run it leaves the part out and its claim "not tested";
a study that ran none of them has no terzi2021 section.
(The weights' ℓ2 norm, log-variance and the representation Fisher of Figs. 4–5 and eq. 5 are
drawn and checked by the ``weights`` section.)

Claims:

* eq. 8 — adversarial training lowers the effective information: in every series each
  member with ε > 0 is below the standard one by more than :data:`Z` standard errors (the
  per-example spread over the probe's points);
* Table 1 — robust backbones transfer better: in every series, for every target, some
  member with ε > 0 has a linear-head accuracy above the standard member's by more than the
  Bonferroni z over the members (two-proportion standard error on the ``n_test`` points);
* Fig. 1 — robust representations are invertible: in every series each member with ε > 0
  reconstructs the probe's images (eq. 3) with a higher PSNR than the standard member, by
  more than :data:`Z` standard errors of the per-image values;
* Fig. 2 — adding effective noise once improves inversion: in every run the noise-once
  reconstructions have a lower L_inv (scored with the original weights) than the plain ones,
  by more than :data:`Z` standard errors of the paired per-image differences;
* Figs. 3, 7 — the task distance (Cui et al., in the standard member's feature space)
  correlates with the robust-minus-standard transfer gap: Spearman's ρ > 0 for every member
  with a one-sided permutation p < 0.05 — which needs at least 5 targets (else not tested).
"""

from __future__ import annotations

import html
import inspect
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.report.evidence import Verdict, combine, permutation_trend, z_verdict
from robustscope.report.findings import Finding, eps_list, not_tested, number, verdict
from robustscope.report.page import table_html
from robustscope.report.panels import Panel, vs_eps_panels
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series, trained
from robustscope.report.style import grid

__all__ = ["Terzi2021", "information_finding"]

PAPER = "terzi2021"
#: standard errors a difference must exceed to count
Z = 2.0
INFO = "effective_information"


def _info_points(ctx: ReportContext, rid: str) -> np.ndarray | None:
    arr = ctx.data.array(rid, INFO, "information")
    if arr is None:
        return None
    values = np.asarray(arr, dtype=np.float64)
    values = values[np.isfinite(values)]
    return values if len(values) else None


def information_finding(ctx: ReportContext) -> Finding:
    claim = "adversarial training lowers the effective information in the activations"
    source = f"{PAPER} eq. 8"
    col = f"{INFO}/information_mean"
    if col not in ctx.table or not ctx.table[col].notna().any():
        return not_tested(claim, source, f"{INFO} was not measured")
    judged: list[tuple[Verdict | bool, str]] = []
    for name, rows in series(trained(ctx.table, ctx.data.spec)).items():
        rows = rows.dropna(subset=[col])
        std = rows[rows["eps"] == 0]
        robust = rows[rows["eps"] > 0]
        if not len(std) or not len(robust):
            continue
        base = _info_points(ctx, str(std.index[0]))
        if base is None:
            continue
        verdicts, parts = [], []
        for rid, row in robust.iterrows():
            pts = _info_points(ctx, str(rid))
            if pts is None:
                continue
            se = math.sqrt(base.var(ddof=1) / len(base) + pts.var(ddof=1) / len(pts))
            verdicts.append(z_verdict(float(base.mean() - pts.mean()) / max(se, 1e-300), Z))
            parts.append(f"{number(pts.mean())} (ε = {row['eps']:g})")
        judged.append(
            (
                combine(verdicts),
                f"{name}: standard {number(base.mean())} nats vs {', '.join(parts)} "
                f"at ε = {eps_list(robust.set_index('eps').index)}",
            )
        )
    return verdict(
        claim,
        source,
        judged,
        "no series with a standard and an adversarially trained member measured",
        f" (½ log|F_eff|₊ − (r/2) log 2πe per example, H(x) dropped; below by > {Z:g} se)",
    )


TRANSFER = "transfer"
#: the fewest targets a rank correlation can be significant with (one-sided p = 1/5! < 0.05)
MIN_TARGETS = 5


def transfer_targets(spec: dict[str, Any]) -> list[str]:
    """The ``transfer`` probe's targets in the study (its option, else its default)."""
    from robustscope.transfer.probe import transfer_probe

    targets = inspect.signature(transfer_probe).parameters["targets"].default
    for entry in (spec.get("probes") or {}).get("run") or []:
        if entry.get("name") == TRANSFER:
            targets = (entry.get("options") or {}).get("targets", targets)
    if isinstance(targets, list | tuple):
        return [str(t) for t in targets]
    return [t.strip() for t in str(targets).split(",") if t.strip()]


def transfer_rows(ctx: ReportContext) -> pd.DataFrame:
    """Per finished run with a transfer result and per target: series, ε, accuracy, distance,
    n_test."""
    targets = transfer_targets(ctx.data.spec)
    rows = []
    for name, part in series(trained(ctx.table, ctx.data.spec)).items():
        for rid, row in part.iterrows():
            acc = ctx.data.array(str(rid), TRANSFER, "accuracy")
            dist = ctx.data.array(str(rid), TRANSFER, "distance")
            if acc is None or dist is None or len(acc) != len(targets):
                continue
            n_col = f"{TRANSFER}/n_test"
            n_test = int(row[n_col]) if n_col in row and row[n_col] == row[n_col] else 0
            for i, t in enumerate(targets):
                rows.append(
                    {
                        "series": name, "run": str(rid), "eps": float(row["eps"]), "target": t,
                        "accuracy": float(acc[i]), "distance": float(dist[i]), "n_test": n_test,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def transfer_finding(ctx: ReportContext) -> Finding:
    claim = "adversarially trained backbones transfer better (linear head on frozen features)"
    source = f"{PAPER} Table 1"
    rows = transfer_rows(ctx)
    if not len(rows):
        return not_tested(claim, source, "the transfer probe did not run")
    judged: list[tuple[Verdict | bool, str]] = []
    for name, part in rows.groupby("series", sort=False):
        std = part[part["eps"] == 0]
        rob = part[part["eps"] > 0]
        if not len(std) or not len(rob):
            continue
        members = rob["run"].nunique()
        z = NormalDist().inv_cdf(1 - 0.05 / max(members, 1))
        verdicts, parts = [], []
        for t, s_t in std.groupby("target", sort=False):
            a0, n = float(s_t["accuracy"].iloc[0]), max(int(s_t["n_test"].iloc[0]), 1)
            r_t = rob[rob["target"] == t]
            se = np.sqrt((a0 * (1 - a0) + r_t["accuracy"] * (1 - r_t["accuracy"])) / n)
            score = (r_t["accuracy"] - a0) / np.maximum(se, 1e-12)
            best = r_t.loc[score.idxmax()]
            verdicts.append(z_verdict(float(score.max()), z))
            parts.append(
                f"{t}: {number(a0, 100)} → {number(best['accuracy'], 100)} % (ε = {best['eps']:g})"
            )
        judged.append((combine(verdicts), f"{name}: " + "; ".join(parts)))
    return verdict(
        claim,
        source,
        judged,
        "no series with a standard and an adversarially trained member transferred",
        " (standard → best adversarially trained member; above by more than the Bonferroni z)",
    )


def distance_finding(ctx: ReportContext) -> Finding:
    claim = "the task distance correlates with the robust-minus-standard transfer gap"
    source = f"{PAPER} Figs. 3, 7"
    rows = transfer_rows(ctx)
    targets = transfer_targets(ctx.data.spec)
    if not len(rows):
        return not_tested(claim, source, "the transfer probe did not run")
    if len(targets) < MIN_TARGETS:
        return not_tested(
            claim, source, f"{len(targets)} targets; a rank correlation needs ≥ {MIN_TARGETS}"
        )
    judged: list[tuple[Verdict | bool, str]] = []
    for name, part in rows.groupby("series", sort=False):
        std = part[part["eps"] == 0].set_index("target")
        if not len(std):
            continue
        dist = std.loc[targets, "distance"].to_numpy()
        for eps, member in part[part["eps"] > 0].groupby("eps"):
            gap = (
                member.set_index("target").loc[targets, "accuracy"].to_numpy()
                - std.loc[targets, "accuracy"].to_numpy()
            )
            iv = permutation_trend(dist, gap, direction=+1)
            judged.append((iv.decide(0.0, +1), f"{name} ε = {eps:g}: {iv.text()}"))
    return verdict(claim, source, judged, "no series with a standard member transferred")


def transfer_html(ctx: ReportContext) -> str:
    rows = transfer_rows(ctx)
    if not len(rows):
        return ""
    wide = rows.pivot_table(index=["series", "eps"], columns="target", values="accuracy")
    wide = (100 * wide).round(1)
    std = rows[rows["eps"] == 0].groupby("target")["distance"].first()
    caption = (
        "Linear transfer (terzi2021 Table 1): accuracy (%) of a logistic-regression head on "
        "each target's frozen features, per training ε; task distance from the source (Cui "
        "et al.'s EMD in the standard model's feature space): "
        + ", ".join(f"{t} {d:.3g}" for t, d in std.items())
    )
    return f"<p>{html.escape(caption)}</p>" + table_html(wide.reset_index(), index=False)


INVERSION = "inversion"


def _inversion_runs(ctx: ReportContext) -> list[tuple[str, str, float]]:
    """``(run id, series, ε)`` of every finished run with an inversion result, by series and ε."""
    out = []
    for name, part in series(trained(ctx.table, ctx.data.spec)).items():
        for rid, row in part.iterrows():
            if ctx.data.array(str(rid), INVERSION, "loss_curve") is not None:
                out.append((str(rid), name, float(row["eps"])))
    return out


def inversion_finding(ctx: ReportContext) -> Finding:
    claim = "adversarially trained representations are more invertible (higher PSNR of eq. 3)"
    source = f"{PAPER} Fig. 1"
    runs = _inversion_runs(ctx)
    if not runs:
        return not_tested(claim, source, "the inversion probe did not run")
    judged: list[tuple[Verdict | bool, str]] = []
    by_series: dict[str, list[tuple[str, float]]] = {}
    for rid, name, eps in runs:
        by_series.setdefault(name, []).append((rid, eps))
    for name, members in by_series.items():
        std = [rid for rid, eps in members if eps == 0]
        if not std:
            continue
        base = np.asarray(ctx.data.array(std[0], INVERSION, "psnr"), dtype=np.float64)
        base = base[np.isfinite(base)]
        verdicts, parts = [], []
        for rid, eps in members:
            if eps == 0:
                continue
            pts = np.asarray(ctx.data.array(rid, INVERSION, "psnr"), dtype=np.float64)
            pts = pts[np.isfinite(pts)]
            if len(pts) < 2 or len(base) < 2:
                continue
            se = math.sqrt(base.var(ddof=1) / len(base) + pts.var(ddof=1) / len(pts))
            verdicts.append(z_verdict(float(pts.mean() - base.mean()) / max(se, 1e-300), Z))
            parts.append(f"{pts.mean():.1f} dB (ε = {eps:g})")
        if parts:
            judged.append(
                (combine(verdicts), f"{name}: standard {base.mean():.1f} dB vs {', '.join(parts)}")
            )
    return verdict(claim, source, judged, "no series with a standard member inverted")


def noise_once_finding(ctx: ReportContext) -> Finding:
    claim = "adding effective noise once improves inversion (lower L_inv)"
    source = f"{PAPER} Fig. 2"
    runs = _inversion_runs(ctx)
    judged: list[tuple[Verdict | bool, str]] = []
    for rid, name, eps in runs:
        plain = ctx.data.array(rid, INVERSION, "final_loss")
        once = ctx.data.array(rid, INVERSION, "noise_once_loss")
        if plain is None or once is None or len(plain) < 2:
            continue
        diff = np.asarray(plain, dtype=np.float64) - np.asarray(once, dtype=np.float64)
        se = float(diff.std(ddof=1) / math.sqrt(len(diff)))
        judged.append(
            (
                z_verdict(float(diff.mean()) / max(se, 1e-300), Z),
                f"{name} ε = {eps:g}: {np.mean(plain):.3g} plain vs {np.mean(once):.3g} with "
                "noise once",
            )
        )
    return verdict(claim, source, judged, "the inversion probe did not run (or without noise once)")


def fig_inversion(ctx: ReportContext) -> Figure | None:
    """Fig. 2: mean L_inv per iteration, inversion (solid) and effective images (dashed)."""
    runs = _inversion_runs(ctx)
    if not runs:
        return None
    fig, (ax, bx) = grid(2, cols=2, width=5.0, height=3.6)
    for rid, _name, eps in runs:
        color = ctx.palette.color(eps)
        curve = np.asarray(ctx.data.array(rid, INVERSION, "loss_curve"))
        eff = np.asarray(ctx.data.array(rid, INVERSION, "effective_curve"))
        ax.plot(curve, color=color, lw=1.3, label=f"ε = {eps:g}")
        once = ctx.data.array(rid, INVERSION, "noise_once_curve")
        if once is not None:
            ax.plot(np.asarray(once), color=color, lw=1.0, ls=":")
        bx.plot(eff, color=color, lw=1.3, ls="--", label=f"ε = {eps:g}")
    for a, title in (
        (ax, "inversion (eq. 3; dotted: noise added once)"),
        (bx, "effective images (eq. 10)"),
    ):
        a.set(xlabel="iteration", ylabel="mean L_inv = ‖z̄ − f(x′)‖₂", title=title)
        a.set_yscale("log")
        a.legend(fontsize=7)
    return fig


def fig_images(ctx: ReportContext) -> Figure | None:
    """Fig. 1: originals, reconstructions (plain and with the weights perturbed once) and
    effective images for each training ε."""
    runs = _inversion_runs(ctx)
    if not runs:
        return None
    first = np.asarray(ctx.data.array(runs[0][0], INVERSION, "originals"))
    k = min(len(first), 6)
    rows = [("original", first[:k])]
    for rid, _name, eps in runs:
        rows.append(
            (f"ε={eps:g} inv.", np.asarray(ctx.data.array(rid, INVERSION, "reconstructions"))[:k])
        )
        once = ctx.data.array(rid, INVERSION, "noise_once")
        if once is not None:
            rows.append((f"ε={eps:g} once", np.asarray(once)[:k]))
        rows.append(
            (f"ε={eps:g} eff.", np.asarray(ctx.data.array(rid, INVERSION, "effective"))[:k])
        )
    fig, axes = grid(len(rows) * k, cols=k, width=1.2, height=1.25)
    for r, (label, images) in enumerate(rows):
        for c in range(k):
            ax = axes[r * k + c]
            img = np.clip(np.moveaxis(images[c], 0, -1), 0, 1)
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    return fig


VISUAL = "visual_evidence"


def _visual_runs(ctx: ReportContext) -> list[tuple[str, float]]:
    out = []
    for _name, part in series(ctx.table).items():
        for rid, row in part.iterrows():
            if ctx.data.array(str(rid), VISUAL, "saliency") is not None:
                out.append((str(rid), float(row["eps"])))
    return out


def fig_evidence(ctx: ReportContext) -> Figure | None:
    """tsipras2019 Figs. 2–3: per training ε, the images, their loss-gradient saliency and
    their large-ε targeted adversarial examples."""
    runs = _visual_runs(ctx)
    if not runs:
        return None
    k = min(len(np.asarray(ctx.data.array(runs[0][0], VISUAL, "images"))), 5)
    rows = [("image", np.asarray(ctx.data.array(runs[0][0], VISUAL, "images"))[:k], "gray")]
    for rid, eps in runs:
        rows.append(
            (f"ε={eps:g} grad", np.asarray(ctx.data.array(rid, VISUAL, "saliency"))[:k], "RdBu_r")
        )
        rows.append(
            (f"ε={eps:g} large-ε", np.asarray(ctx.data.array(rid, VISUAL, "large_eps"))[:k], "gray")
        )
    fig, axes = grid(len(rows) * k, cols=k, width=1.2, height=1.25)
    for r, (label, images, cmap) in enumerate(rows):
        for c in range(k):
            ax = axes[r * k + c]
            img = np.clip(np.moveaxis(images[c], 0, -1), 0, 1)
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    return fig


def fig_tsne(ctx: ReportContext) -> Figure | None:
    """terzi2021 Fig. 6: t-SNE of each run's features, coloured by class."""
    runs = _visual_runs(ctx)
    if not runs:
        return None
    fig, axes = grid(len(runs), cols=min(len(runs), 5), width=3.0, height=3.0)
    for ax, (rid, eps) in zip(axes, runs, strict=True):
        xy = np.asarray(ctx.data.array(rid, VISUAL, "tsne"))
        labels = np.asarray(ctx.data.array(rid, VISUAL, "tsne_labels"))
        ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=5)
        ax.set(title=f"ε = {eps:g}", xticks=[], yticks=[])
    return fig


def fig_information(ctx: ReportContext) -> Figure | None:
    """Effective information, the rank of F_eff and the weight-noise variance against ε."""
    panels: list[Panel] = [
        (f"{INFO}/information_mean", "effective information (eq. 8, − H(x))", "nats", False),
        (f"{INFO}/rank_mean", "rank of F_eff (active features)", "rank", False),
        (f"{INFO}/trace_mean", "tr F_eff (eq. 9)", "trace", True),
        (f"{INFO}/noise_trace_mean", "tr J_w Σ* J_wᵀ (feature noise)", "variance", True),
    ]
    made = vs_eps_panels(ctx.table, ctx.palette, panels, used=ctx.used, cols=4)
    return None if made is None else made[0]


@register_section("terzi2021", order=58)
class Terzi2021(Section):
    """terzi2021: effective information, linear transferability, inversion and effective images."""

    title = "terzi2021: information, transferability and inversion"
    lacking = "no effective_information, transfer or inversion probe ran"
    probes = (INFO, TRANSFER, INVERSION, VISUAL)

    def applies(self, ctx: ReportContext) -> bool:
        return any(
            str(c).startswith(tuple(f"{p}/" for p in self.probes)) for c in ctx.table.columns
        )

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        return [
            SectionFigure(
                "terzi2021_information",
                fig_information(ctx),
                "Effective information in the activations under SGD's weight noise "
                "(terzi2021 Def. 0.6, eqs. 8–9; Σ* from the diagonal weight Fisher over "
                "training examples), its rank, tr F_eff and the feature noise, against the "
                "training ε.",
            ),
            SectionFigure(
                "terzi2021_inversion",
                fig_inversion(ctx),
                "Inverting the representation (terzi2021 eq. 3, Fig. 2): mean L_inv per "
                "iteration for each training ε (left), and for the effective images of eq. 10, "
                "whose targets come from the once-perturbed weights (right).",
            ),
            SectionFigure(
                "terzi2021_images",
                fig_images(ctx),
                "terzi2021 Fig. 1: originals, their inversions (plain, and with the weights "
                "perturbed once) and their effective images for each training ε.",
            ),
            SectionFigure(
                "terzi2021_evidence",
                fig_evidence(ctx),
                "tsipras2019 Figs. 2–3: the loss gradient with respect to the input (±3σ; red "
                "positive, blue negative) and targeted large-ε adversarial examples (Table 3's "
                "ε scaled to the input) for each training ε.",
            ),
            SectionFigure(
                "terzi2021_tsne",
                fig_tsne(ctx),
                "terzi2021 Fig. 6: t-SNE of the features of test images, coloured by class, for "
                "each training ε.",
            ),
        ]

    def html(self, ctx: ReportContext) -> str:
        return transfer_html(ctx)

    def findings(self, ctx: ReportContext) -> list[Finding]:
        return [
            information_finding(ctx),
            transfer_finding(ctx),
            distance_finding(ctx),
            inversion_finding(ctx),
            noise_once_finding(ctx),
        ]
