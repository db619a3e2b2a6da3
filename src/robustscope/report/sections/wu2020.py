"""wu2020: post-hoc robustification (M1/M2/M3) of the standard model, evaluated on the
original's adversarial examples (Fig. 1) and by adaptive attacks (Table 1), and — beyond the
paper — placed on one accuracy–robustness frontier with the adversarially trained family.

The section applies to studies with a ``posthoc`` section. It reads each swept run's
``posthoc`` probe arrays (:class:`robustscope.posthoc.sweep.SweepResult`, named by
:func:`~robustscope.posthoc.sweep.array_key`). Accuracies are on the sweep's ``n`` test
points, so with binomial standard errors; a challenge-score change is the mean of the paired
per-point differences d_i(Θ_p) − d_i(Θ) with its standard error.

Claims:

* Fig. 1 — shrinking the weights raises the accuracy on adversarial examples made on the
  original model: for every method some p > 0 beats p = 0 at some ε > 0 by more than the
  Bonferroni z of all those (p, ε) comparisons (family-wise 5 %), on the C&W examples when
  the sweep has them (the paper: the methods "behave better against C&W attacks"), else on
  the first transferred attack;
* Table 1 — M3 raises the challenge score of the adaptive attack (the paper: "In the
  Fashion-MNIST case, only M3 improves the performance") at a small cost in accuracy: at
  most of the p ∈ (0, 5] the paired change is above :data:`Z` standard errors, with clean
  accuracy down by at most :data:`SMALL_COST`;
* §4 (this lab's question) — adversarial training is above post-hoc robustification at
  equal clean accuracy: every member that traded accuracy (clean accuracy below the original
  by more than :data:`Z` se, within the adversarial family's range) has a robust accuracy
  below the family's frontier (linear interpolation in clean accuracy) by more than
  :data:`Z` se; and the same on wu2020's corruption axes (the robustness coordinate
  RmCE(ref) − RmCE(Θ) at equal accuracy coordinate (α − α_ref)/α_ref);
* Fig. 2 — no model (adversarially trained run or post-hoc member) is both more robust
  (RmCE) and more accurate than the reference, the standard model: none has both
  coordinates above :data:`Z` standard errors (:func:`robustscope.corruptions.compare`);
* Fig. 2 / Appendix — M1 improves corruption robustness at almost no cost in accuracy (the
  paper's AlexNet(M1P30): −0.002 accuracy, +0.013 robustness): some M1 member has a
  robustness coordinate above :data:`Z` se with an accuracy coordinate ≥ −:data:`SMALL_COST`.

The corruption coordinates' standard errors come from a paired bootstrap over the points
(both models were measured on the same corrupted points; :func:`robustscope.corruptions.compare`
with :data:`BOOTSTRAP` resamples) when the per-point results were stored, else from the
delta method. RmCE is taken over the corruption types the reference is measurably hurt by (δ_t(ref) above
:data:`Z` standard errors; ``compare(..., min_delta_z=Z)``): at 28×28 several types barely
move a Fashion-MNIST model, and their ratios would be noise. Corruption results come from
the ``corruptions`` probe of each run (the adversarially
trained family, relative to the standard run of the same model and seed) and from the
sweep's ``corruption_accuracy`` (the members, relative to p = 0 on the sweep's points).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.corruptions import CorruptionComparison, CorruptionResult, compare
from robustscope.posthoc.sweep import array_key
from robustscope.probes.corruption import corruption_table
from robustscope.report.data import num_classes
from robustscope.report.evidence import Verdict, z_verdict
from robustscope.report.findings import Finding, not_tested, number, verdict
from robustscope.report.page import table_html
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import series
from robustscope.report.style import grid
from robustscope.studies.health import chance_line
from robustscope.studies.store.vocab import CLEAN_ACCURACY, POSTHOC_PROBE, format_eps

__all__ = ["Sweep", "Wu2020", "sweeps"]

PAPER = "wu2020"
#: standard errors a difference must exceed to count
Z = 2.0
#: "a small cost in accuracy": clean accuracy down by at most this much (absolute)
SMALL_COST = 0.02
#: resamples of the paired bootstrap of the corruption coordinates' standard errors
BOOTSTRAP = 500
#: Table 1's range of p
TABLE1_MAX_P = 5.0
METHOD_COLORS = {"m1": "tab:blue", "m2": "tab:orange", "m3": "tab:green"}
#: the probe whose stored table holds a run's accuracy under the common corruptions
CORRUPTION_PROBE = "corruptions"
#: the probe of wu2020 eq. (4)
NOISE_PROBE = "noise_robustness"


@dataclass(frozen=True)
class Sweep:
    """One run's stored post-hoc sweep (arrays ``[method, p, …]``)."""

    run_id: str
    label: str
    model: str
    seed: int
    methods: tuple[str, ...]
    percents: np.ndarray
    n: int
    arrays: dict[str, np.ndarray]

    def get(self, quantity: str, label: str = "") -> np.ndarray | None:
        return self.arrays.get(array_key(quantity, label))


def _spec_labels(spec: dict[str, Any], field: str) -> list[str]:
    from robustscope.studies.spec import PosthocSpec

    ph = PosthocSpec.model_validate(spec.get("posthoc") or {})
    return [a.key() for a in getattr(ph, field)]


def sweeps(ctx: ReportContext) -> list[Sweep]:
    """Every finished run with a stored sweep, in the table's order."""
    spec = ctx.data.spec
    if not spec.get("posthoc"):
        return []
    from robustscope.studies.spec import PosthocSpec

    ph = PosthocSpec.model_validate(spec["posthoc"])
    robust_label = []
    attacks = (spec.get("evaluation") or {}).get("attacks") or []
    if ph.robust and attacks:
        from robustscope.report.data import attack_key

        robust_label = [attack_key(attacks[0])]
    wanted = [
        "percents", "clean_accuracy", "dropped", "noise", "corruption_accuracy",
        "corruption_types", "corruption_severities", "corruption_correct",
    ]  # fmt: skip
    for label in _spec_labels(spec, "transferred"):
        wanted += [array_key("transferred", label), array_key("transferred_eps", label)]
    for label in robust_label:
        wanted += [array_key("robust", label), array_key("robust_eps", label)]
    for label in _spec_labels(spec, "adaptive"):
        wanted += [array_key("challenge", label), array_key("challenge_points", label)]
    out = []
    for rid, row in ctx.table.iterrows():
        arrays = {}
        for key in dict.fromkeys(wanted):
            value = ctx.data.array(str(rid), POSTHOC_PROBE, key)
            if value is not None:
                arrays[key] = np.asarray(value)
        if "clean_accuracy" not in arrays or "percents" not in arrays:
            continue
        n_col = f"{POSTHOC_PROBE}/n"
        n = int(row[n_col]) if n_col in row and row[n_col] == row[n_col] else ph.n
        out.append(
            Sweep(
                str(rid),
                str(row.get("label", rid)),
                str(row["model"]),
                int(row["seed"]),
                tuple(ph.methods),
                arrays["percents"],
                n,
                arrays,
            )
        )
    return out


def working(ctx: ReportContext, sw: Sweep) -> np.ndarray:
    """``[M, P]`` bool: the members whose clean accuracy is above chance by more than
    the study's standard errors (:func:`robustscope.studies.health.chance_line`, the rule
    of :func:`~robustscope.report.stats.trained`): a member the transform broke is no
    evidence."""
    clean = sw.arrays["clean_accuracy"]
    k = num_classes(ctx.data.spec)
    if k is None:
        return np.ones_like(clean, dtype=bool)
    return clean > chance_line(k, sw.n)[1]


def _se(a: np.ndarray | float, n: int) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return np.sqrt(np.clip(a * (1 - a), 0, None) / max(n, 1))


# --- corruptions -------------------------------------------------------------------------------


def run_corruptions(ctx: ReportContext) -> dict[str, CorruptionResult]:
    """Each finished run's ``corruptions`` probe result, by run id."""
    out = {}
    for rid, row in ctx.table.iterrows():
        arrays = {
            k: ctx.data.array(str(rid), CORRUPTION_PROBE, k)
            for k in ("accuracy", "types", "severities", "correct")
        }
        clean = row.get(f"{CORRUPTION_PROBE}/clean_accuracy")
        n = row.get(f"{CORRUPTION_PROBE}/n")
        needed = [arrays[k] for k in ("accuracy", "types", "severities")]
        if any(a is None for a in needed) or clean is None or clean != clean:
            continue
        out[str(rid)] = corruption_table(
            float(clean), arrays["accuracy"], arrays["types"], arrays["severities"], int(n),
            correct=arrays["correct"],
        )  # fmt: skip
    return out


def member_corruptions(sw: Sweep) -> list[list[CorruptionResult]] | None:
    """``[method][p]`` the members' corruption results (None: not measured)."""
    acc = sw.get("corruption_accuracy")
    types, sev = sw.get("corruption_types"), sw.get("corruption_severities")
    if acc is None or types is None or sev is None:
        return None
    clean = sw.arrays["clean_accuracy"]
    hits = sw.get("corruption_correct")
    return [
        [
            corruption_table(
                float(clean[i, j]),
                acc[i, j],
                types,
                sev,
                sw.n,
                correct=None if hits is None else hits[i, j],
            )
            for j in range(len(sw.percents))
        ]
        for i in range(len(sw.methods))
    ]


@dataclass(frozen=True)
class CorruptionPoint:
    """One model on wu2020's Fig. 2 axes against its reference."""

    name: str
    kind: str  # "adversarial" (a trained run) or the post-hoc method
    eps: float
    percent: float
    comparison: CorruptionComparison
    works: bool = True


def corruption_points(ctx: ReportContext, sw: Sweep) -> list[CorruptionPoint]:
    """The adversarially trained family of ``sw``'s model and seed (against the standard
    run's probe result) and the post-hoc members (against p = 0), on wu2020's axes."""
    out = []
    runs = run_corruptions(ctx)
    t = ctx.table
    ref = runs.get(sw.run_id)
    if ref is not None:
        same = t[(t["model"] == sw.model) & (t["seed"] == sw.seed) & (t["eps"] > 0)]
        for rid, row in same.iterrows():
            if str(rid) in runs:
                out.append(
                    CorruptionPoint(
                        str(row.get("label", rid)), "adversarial", float(row["eps"]), 0.0,
                        compare(runs[str(rid)], ref, min_delta_z=Z, bootstrap=BOOTSTRAP),
                    )
                )  # fmt: skip
    members = member_corruptions(sw)
    ok = working(ctx, sw)
    if members is not None:
        for i, m in enumerate(sw.methods):
            for j, p in enumerate(sw.percents):
                if p > 0:
                    out.append(
                        CorruptionPoint(
                            f"{m.upper()} p = {p:g}", m, 0.0, float(p),
                            compare(members[i][j], members[i][0], min_delta_z=Z, bootstrap=BOOTSTRAP),
                            bool(ok[i, j]),
                        )
                    )  # fmt: skip
    return out


def fig_corruptions(ctx: ReportContext, found: list[Sweep]) -> Figure | None:
    """Heat maps of accuracy per corruption × severity: the standard run and its
    adversarially trained family (the ``corruptions`` probe), at most four panels."""
    runs = run_corruptions(ctx)
    if not runs:
        return None
    t = ctx.table
    order = [str(r) for r in t.sort_values(["model", "seed", "eps"]).index if str(r) in runs][:4]
    fig, axes = grid(len(order), cols=len(order), width=3.6, height=4.6)
    for ax, rid in zip(axes, order, strict=True):
        res = runs[rid]
        table = np.array([res.accuracy[n] for n in res.names]) * 100
        im = ax.imshow(table, vmin=0, vmax=100, cmap="magma", aspect="auto")
        ax.set_xticks(range(len(res.severities)), [str(s) for s in res.severities])
        ax.set_yticks(range(len(res.names)), [n.replace("_", " ") for n in res.names], fontsize=7)
        ax.set(
            xlabel="severity",
            title=f"ε = {format_eps(float(t.loc[rid, 'eps']))}: clean {100 * res.clean_accuracy:.1f} %",
        )
        ax.grid(False)
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=0.8)
    return fig


# --- figures -----------------------------------------------------------------------------------


def fig_transferred(sw: Sweep, labels: list[str]) -> Figure | None:
    """wu2020 Fig. 1: accuracy on the original's adversarial examples vs ε, one line per p."""
    from matplotlib import colormaps

    present = [lab for lab in labels if sw.get("transferred", lab) is not None]
    if not present:
        return None
    fig, axes = grid(len(present) * len(sw.methods), cols=len(sw.methods), width=3.8, height=3.0)
    cmap = colormaps["viridis"]
    k = 0
    for lab in present:
        acc = sw.get("transferred", lab)
        eps = sw.get("transferred_eps", lab)
        assert acc is not None and eps is not None
        for i, m in enumerate(sw.methods):
            ax = axes[k]
            k += 1
            for j, p in enumerate(sw.percents):
                ax.plot(
                    eps,
                    100 * acc[i, j],
                    "-o",
                    ms=3,
                    lw=1.2,
                    color=cmap(0.9 * j / max(len(sw.percents) - 1, 1)),
                    label=f"p = {p:g}",
                )
            ax.set(
                title=f"{m.upper()} · {lab}",
                xlabel="largest perturbation ε (ℓ∞)",
                ylabel="accuracy (%)",
                ylim=(-2, 102),
            )
    axes[len(sw.methods) - 1].legend(fontsize=7, loc="upper right")
    return fig


def _family_points(ctx: ReportContext, model: str, seed: int) -> pd.DataFrame:
    """The adversarially trained family of ``model`` (seed ``seed``): clean and robust
    accuracy (the report's main robust column) per run, by ascending clean accuracy."""
    col = ctx.robust
    t = ctx.table
    if col is None or col.column not in t or CLEAN_ACCURACY not in t:
        return pd.DataFrame(columns=["eps", "clean", "robust", "series"])
    rows = []
    for name, part in series(t).items():
        part = part[(part["model"] == model) & (part["seed"] == seed)]
        for _, r in part.iterrows():
            rows.append(
                {
                    "eps": float(r["eps"]),
                    "clean": float(r[CLEAN_ACCURACY]),
                    "robust": float(r[col.column]),
                    "series": name,
                }
            )
    return (
        pd.DataFrame(rows).dropna()
        if rows
        else pd.DataFrame(columns=["eps", "clean", "robust", "series"])
    )


def _member_robust(ctx: ReportContext, sw: Sweep) -> np.ndarray | None:
    """``[M, P]`` members' robust accuracy at the report's main attack ε (None: not swept)."""
    col = ctx.robust
    if col is None:
        return None
    acc, eps = sw.get("robust", col.label), sw.get("robust_eps", col.label)
    if acc is None or eps is None:
        return None
    hit = [i for i, e in enumerate(eps) if math.isclose(float(e), col.eps, rel_tol=1e-5)]
    return acc[:, :, hit[0]] if hit else None


def fig_frontier(ctx: ReportContext, sw: Sweep) -> Figure | None:
    """§4: the adversarially trained family and the post-hoc members on one frontier —
    clean vs robust accuracy, and wu2020's Fig. 2 axes when corruptions were measured."""
    rob = _member_robust(ctx, sw)
    fam = _family_points(ctx, sw.model, sw.seed)
    col = ctx.robust
    points = corruption_points(ctx, sw)
    first = rob is not None and col is not None and len(fam) > 0
    if not first and not points:
        return None
    fig, axes = grid(int(first) + int(bool(points)), cols=2, width=5.6, height=4.4)
    if first:
        assert rob is not None and col is not None
        ax = axes[0]
        for name, part in fam.groupby("series", sort=False):
            part = part.sort_values("eps")
            ax.plot(100 * part["clean"], 100 * part["robust"], "k-", lw=1, alpha=0.6)
            for _, r in part.iterrows():
                ax.plot(
                    100 * r["clean"], 100 * r["robust"], "o", ms=7,
                    color=ctx.palette.color(r["eps"]),
                )  # fmt: skip
            ax.plot([], [], "k-o", lw=1, label=f"adversarial training ({name})")
        clean = sw.arrays["clean_accuracy"]
        for i, m in enumerate(sw.methods):
            ax.plot(
                100 * clean[i], 100 * rob[i], "--s", ms=4, lw=1,
                color=METHOD_COLORS.get(m, "0.4"), label=f"post-hoc {m.upper()}",
            )  # fmt: skip
        ax.set(
            xlabel="clean accuracy (%)",
            ylabel=f"robust accuracy, {col.label} ε = {format_eps(col.eps)} (%)",
            title=f"{sw.model} (seed {sw.seed}): post-hoc vs adversarial training",
        )
        ax.legend(fontsize=7)
    if points:
        bx = axes[-1]
        bx.axhline(0, color="0.6", lw=0.8)
        bx.axvline(0, color="0.6", lw=0.8)
        bx.plot(0, 0, "k*", ms=10, label="reference (standard model)")
        adv = sorted((p for p in points if p.kind == "adversarial"), key=lambda p: p.eps)
        if adv:
            xs = [0.0] + [p.comparison.accuracy for p in adv]
            ys = [0.0] + [p.comparison.robustness for p in adv]
            bx.plot(xs, ys, "k-", lw=1, alpha=0.6)
            for p in adv:
                bx.plot(
                    p.comparison.accuracy, p.comparison.robustness, "o", ms=7,
                    color=ctx.palette.color(p.eps),
                )  # fmt: skip
            bx.plot([], [], "k-o", lw=1, label="adversarial training")
        for m in sw.methods:
            mine = sorted((p for p in points if p.kind == m), key=lambda p: p.percent)
            if mine:
                bx.plot(
                    [0.0] + [p.comparison.accuracy for p in mine],
                    [0.0] + [p.comparison.robustness for p in mine],
                    "--s", ms=4, lw=1, color=METHOD_COLORS.get(m, "0.4"),
                    label=f"post-hoc {m.upper()}",
                )  # fmt: skip
        bx.set(
            xlabel="accuracy: (α − α_ref) / α_ref",
            ylabel="robustness: RmCE(ref) − RmCE",
            title="wu2020 Fig. 2 axes (common corruptions)",
        )
        bx.legend(fontsize=7)
    return fig


# --- tables ------------------------------------------------------------------------------------


def challenge_change(sw: Sweep, label: str) -> pd.DataFrame:
    """Table 1: per method and p > 0, the paired change of the challenge score from p = 0
    (``delta``, ``se``) and the clean accuracy change."""
    points = sw.get("challenge_points", label)
    if points is None:
        return pd.DataFrame()
    clean = sw.arrays["clean_accuracy"]
    rows = []
    for i, m in enumerate(sw.methods):
        for j, p in enumerate(sw.percents):
            if p == 0:
                continue
            diff = points[i, j] - points[i, 0]
            se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
            rows.append(
                {
                    "method": m,
                    "p": float(p),
                    "score_p0": float(points[i, 0].mean()),
                    "delta": float(diff.mean()),
                    "se": se,
                    "clean_change": float(clean[i, j] - clean[i, 0]),
                }
            )
    return pd.DataFrame(rows)


def table1_html(sw: Sweep, label: str) -> str:
    t = challenge_change(sw, label)
    if not len(t):
        return ""
    wide = t.pivot(index="method", columns="p", values="delta")
    wide.columns = [f"Δ p = {p:g}" for p in wide.columns]
    wide.insert(0, "score p = 0", t.groupby("method")["score_p0"].first())
    caption = html.escape(
        f"{sw.label} · {label}: challenge score (mean ‖x_adv − x‖₂² of successful attacks on "
        "correct points) at p = 0 and its change at each p (wu2020 Table 1); bold in the "
        "paper = an improvement"
    )
    return f"<p>{caption}</p>" + table_html(wide.round(4), index_label="method")


def rmce_html(ctx: ReportContext, sw: Sweep) -> str:
    """wu2020's appendix table: accuracy and robustness coordinates and per-category mean
    accuracy of every model against the reference."""
    points = corruption_points(ctx, sw)
    if not points:
        return ""
    rows = []
    for p in points:
        c = p.comparison
        rows.append(
            {
                "model": p.name,
                "accuracy": round(c.accuracy, 4),
                "robustness": round(c.robustness, 4),
                "± se": round(c.robustness_se, 4),
                **{cat: round(v, 4) for cat, v in c.category_accuracy.items()},
            }
        )
    caption = html.escape(
        f"{sw.model} (seed {sw.seed}): wu2020's coordinates against the standard model "
        "(accuracy (α − α_ref)/α_ref; robustness RmCE(ref) − RmCE, positive = more robust "
        "to the common corruptions) and the mean accuracy per corruption category"
    )
    return f"<p>{caption}</p>" + table_html(pd.DataFrame(rows), index=False)


def noise_html(ctx: ReportContext, sw: Sweep) -> str:
    """wu2020 eq. (4) — accuracy under uniform noise minus clean accuracy — of the members
    (method × p) and of the runs that measured it (the ``noise_robustness`` probe)."""
    parts = []
    noise = sw.get("noise")
    if noise is not None and np.isfinite(noise).any():
        df = pd.DataFrame(
            noise, index=[m.upper() for m in sw.methods],
            columns=[f"p = {p:g}" for p in sw.percents],
        ).round(4)  # fmt: skip
        parts.append(
            f"<p>{html.escape(f'{sw.model} (seed {sw.seed}): wu2020 eq. (4) of each member')}</p>"
            + table_html(df, index_label="method")
        )
    col = f"{NOISE_PROBE}/score"
    if col in ctx.table:
        t = ctx.table[ctx.table["model"] == sw.model].dropna(subset=[col])
        if len(t):
            df = pd.DataFrame(
                {
                    "run": t["label"],
                    "eq. 4": t[col].round(4),
                    "± se": t[f"{NOISE_PROBE}/std_error"].round(4),
                }
            )
            parts.append(
                "<p>wu2020 eq. (4) of each trained run (higher, closer to 0, is more robust)</p>"
                + table_html(df, index=False)
            )
    return "".join(parts)


# --- findings ----------------------------------------------------------------------------------


def bonferroni_z(k: int, alpha: float = 0.05) -> float:
    """The one-sided z threshold of ``k`` comparisons at family-wise level ``alpha``."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / max(k, 1))


def fig1_attack(labels: list[str]) -> str | None:
    """The transferred attack Fig. 1's claim is read on: C&W when the sweep has it (wu2020:
    "our methods, in general, behave better against C&W attacks"), else the first."""
    cw = [lab for lab in labels if lab.startswith("cw")]
    if cw:
        return cw[0]
    return labels[0] if labels else None


def fig1_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = (
        "shrinking the weights (M1–M3) raises accuracy on the original model's adversarial examples"
    )
    source = f"{PAPER} Fig. 1"
    label = fig1_attack(_spec_labels(ctx.data.spec, "transferred"))
    judged: list[tuple[Verdict | bool, str]] = []
    for sw in found:
        acc = sw.get("transferred", label) if label else None
        eps = sw.get("transferred_eps", label) if label else None
        if acc is None or eps is None:
            continue
        cols = [k for k, e in enumerate(eps) if e > 0]
        z = bonferroni_z(len(cols) * (len(sw.percents) - 1))
        for i, m in enumerate(sw.methods):
            base = acc[i, 0][cols]
            member = acc[i, 1:][:, cols]
            se = np.sqrt(_se(member, sw.n) ** 2 + _se(base, sw.n) ** 2)
            score = (member - base) / np.maximum(se, 1e-12)
            score[~working(ctx, sw)[i, 1:]] = -np.inf
            j, k = np.unravel_index(int(np.argmax(score)), score.shape)
            judged.append(
                (
                    z_verdict(float(score[j, k]), z),
                    f"{sw.label} {m.upper()}: {number(base[k], 100)} → {number(member[j, k], 100)} % "
                    f"at p = {sw.percents[j + 1]:g}, ε = {format_eps(eps[cols[k]])}",
                )
            )
    note = (
        f" ({label}; the largest gain over p > 0 and ε > 0 must exceed the Bonferroni z of "
        "all those comparisons)"
    )
    return verdict(claim, source, judged, "no transferred attack in the sweep", note)


def table1_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = (
        f"M3 raises the adaptive challenge score at p ≤ {TABLE1_MAX_P:g} at a small cost in "
        f"accuracy (≤ {100 * SMALL_COST:g} points)"
    )
    source = f"{PAPER} Table 1"
    labels = _spec_labels(ctx.data.spec, "adaptive")
    judged: list[tuple[Verdict | bool, str]] = []
    for sw in found:
        if "m3" not in sw.methods or not labels:
            continue
        t = challenge_change(sw, labels[0])
        if not len(t):
            continue
        t = t[(t["method"] == "m3") & (t["p"] <= TABLE1_MAX_P)]
        if not len(t):
            continue
        better = (t["delta"] > Z * t["se"]) & (t["clean_change"] >= -SMALL_COST)
        worse = t["delta"] < -Z * t["se"]
        ok = (
            Verdict.HOLDS
            if int(better.sum()) * 2 > len(t)
            else Verdict.FAILS
            if int(worse.sum()) * 2 > len(t)
            else Verdict.INCONCLUSIVE
        )
        parts = ", ".join(
            f"p = {r.p:g}: {r.delta:+.3g} ± {r.se:.2g} (clean {100 * r.clean_change:+.1f})"
            for r in t.itertuples()
        )
        judged.append((ok, f"{sw.label} ({labels[0]}; score {t['score_p0'].iloc[0]:.3g}): {parts}"))
    return verdict(claim, source, judged, "no M3 sweep with an adaptive attack at p ≤ 5")


def frontier_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = "adversarial training is above post-hoc robustification at equal clean accuracy"
    source = f"{PAPER} (beyond the paper: one frontier)"
    judged: list[tuple[Verdict | bool, str]] = []
    col = ctx.robust
    for sw in found:
        rob = _member_robust(ctx, sw)
        fam = _family_points(ctx, sw.model, sw.seed)
        fam = fam[fam["eps"] > 0] if len(fam) else fam
        if rob is None or col is None or not len(fam):
            continue
        clean = sw.arrays["clean_accuracy"]
        c0 = float(clean[0, 0])
        front = pd.concat(
            [pd.DataFrame({"clean": [c0], "robust": [float(rob[0, 0])]}), fam[["clean", "robust"]]]
        ).sort_values("clean")
        lo = float(front["clean"].min())
        ok = working(ctx, sw)
        for i, m in enumerate(sw.methods):
            for j, p in enumerate(sw.percents):
                c, r = float(clean[i, j]), float(rob[i, j])
                if p == 0 or not (c0 - c > Z * float(_se(c0, sw.n))) or c < lo or not ok[i, j]:
                    continue
                at = float(np.interp(c, front["clean"], front["robust"]))
                se = float(np.sqrt(_se(r, sw.n) ** 2 + _se(at, sw.n) ** 2))
                judged.append(
                    (
                        z_verdict((at - r) / max(se, 1e-12), Z),
                        f"{sw.label} {m.upper()} p = {p:g}: {number(r, 100)} % robust at "
                        f"{number(c, 100)} % clean vs {number(at, 100)} % for adversarial "
                        "training",
                    )
                )
    note = f" ({col.label}, ε = {format_eps(col.eps)})" if col is not None else ""
    return verdict(
        claim,
        source,
        judged,
        "no post-hoc member traded accuracy within the adversarial family's range of clean "
        "accuracy (or no robust attack re-run on the members)",
        note,
    )


def fig2_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = "no model is both more robust (RmCE) and more accurate than the reference"
    source = f"{PAPER} Fig. 2"
    judged: list[tuple[Verdict | bool, str]] = []
    for sw in found:
        for p in corruption_points(ctx, sw):
            if not p.works:
                continue
            c = p.comparison
            both = c.accuracy > Z * c.accuracy_se and c.robustness > Z * c.robustness_se
            if both or p.kind == "adversarial":
                judged.append(
                    (
                        not both,
                        f"{p.name}: accuracy {c.accuracy:+.3f} ± {c.accuracy_se:.3f}, "
                        f"robustness {c.robustness:+.3f} ± {c.robustness_se:.3f}",
                    )
                )
        members = [p for p in corruption_points(ctx, sw) if p.kind != "adversarial"]
        if members and all(ok for ok, _ in judged):
            judged.append((True, f"{len(members)} post-hoc members: none both"))
    return verdict(claim, source, judged, "no corruption results (the corruptions probe)")


def m1_corruption_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = (
        "M1 improves corruption robustness (RmCE) at almost no cost in accuracy "
        f"(accuracy coordinate ≥ −{SMALL_COST:g})"
    )
    source = f"{PAPER} Fig. 2 (AlexNet(M1P30))"
    judged: list[tuple[Verdict | bool, str]] = []
    for sw in found:
        mine = [p for p in corruption_points(ctx, sw) if p.kind == "m1" and p.works]
        if not mine:
            continue
        good = [
            p
            for p in mine
            if p.comparison.robustness > Z * p.comparison.robustness_se
            and p.comparison.accuracy >= -SMALL_COST
        ]
        best = max(
            mine, key=lambda p: p.comparison.robustness / max(p.comparison.robustness_se, 1e-12)
        )
        shown = good[0] if good else best
        c = shown.comparison
        worse = c.robustness < -Z * c.robustness_se
        judged.append(
            (
                Verdict.HOLDS if good else Verdict.FAILS if worse else Verdict.INCONCLUSIVE,
                f"{sw.model} (seed {sw.seed}) {shown.name}: robustness {c.robustness:+.3f} ± "
                f"{c.robustness_se:.3f}, accuracy {c.accuracy:+.3f}",
            )
        )
    return verdict(claim, source, judged, "no M1 sweep with corruptions")


def corruption_frontier_finding(ctx: ReportContext, found: list[Sweep]) -> Finding:
    claim = (
        "adversarial training is above post-hoc robustification at equal accuracy on wu2020's "
        "corruption axes"
    )
    source = f"{PAPER} Fig. 2 axes (beyond the paper)"
    judged: list[tuple[Verdict | bool, str]] = []
    for sw in found:
        points = corruption_points(ctx, sw)
        adv = [p for p in points if p.kind == "adversarial"]
        if not adv:
            continue
        front = sorted(
            [(0.0, 0.0)] + [(p.comparison.accuracy, p.comparison.robustness) for p in adv]
        )
        xs, ys = [a for a, _ in front], [r for _, r in front]
        for p in points:
            c = p.comparison
            if (
                p.kind == "adversarial"
                or not (c.accuracy < -Z * c.accuracy_se)
                or c.accuracy < xs[0]
            ):
                continue
            at = float(np.interp(c.accuracy, xs, ys))
            judged.append(
                (
                    z_verdict((at - c.robustness) / max(c.robustness_se, 1e-12), Z),
                    f"{p.name}: robustness {c.robustness:+.3f} at accuracy {c.accuracy:+.3f} vs "
                    f"{at:+.3f} for adversarial training",
                )
            )
    return verdict(
        claim,
        source,
        judged,
        "no post-hoc member lost accuracy within the adversarial family's range, or no "
        "corruption results",
    )


@register_section("wu2020", order=55)
class Wu2020(Section):
    """wu2020: post-hoc robustification M1/M2/M3, transferred and adaptive attacks, one frontier."""

    title = "wu2020: post-hoc robustification"
    lacking = "no post-hoc sweep was stored (the spec's posthoc section)"
    probes = (POSTHOC_PROBE, CORRUPTION_PROBE, NOISE_PROBE)

    def applies(self, ctx: ReportContext) -> bool:
        return bool(ctx.data.spec.get("posthoc"))

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        found = sweeps(ctx)
        if not found:
            return []
        first = found[0]
        labels = _spec_labels(ctx.data.spec, "transferred")
        return [
            SectionFigure(
                "wu2020_transferred",
                fig_transferred(first, labels),
                f"{first.label}: accuracy of each Θ_p on adversarial examples made once on the "
                "original model, against the largest ℓ∞ perturbation (wu2020 Fig. 1); one line "
                "per p (dark: p = 0). Minimal attacks' perturbations are clipped into each ball.",
            ),
            SectionFigure(
                "wu2020_frontier",
                fig_frontier(ctx, first),
                "The adversarially trained family (circles, coloured by training ε) and the "
                "post-hoc members of the standard model (squares, one line per method over p), "
                "each at its clean and robust accuracy under the study's attack re-run on it; "
                "right: the same models on wu2020's Fig. 2 axes against the standard model.",
            ),
            SectionFigure(
                "wu2020_corruptions",
                fig_corruptions(ctx, found),
                "Accuracy under the 15 common corruptions (Hendrycks & Dietterich 2019) at "
                "each severity, for the standard run and its adversarially trained family.",
            ),
        ]

    def html(self, ctx: ReportContext) -> str:
        found = sweeps(ctx)
        labels = _spec_labels(ctx.data.spec, "adaptive")
        out = "".join(table1_html(sw, lab) for sw in found[:2] for lab in labels)
        out += "".join(rmce_html(ctx, sw) for sw in found[:2])
        return out + "".join(noise_html(ctx, sw) for sw in found[:2])

    def findings(self, ctx: ReportContext) -> list[Finding]:
        found = sweeps(ctx)
        if not found:
            why = "no post-hoc sweep in this study (the spec's posthoc section)"
            return [
                not_tested(c, f"{PAPER} {s}", why)
                for c, s in (
                    ("shrinking the weights (M1–M3) raises accuracy on the original model's "
                     "adversarial examples", "Fig. 1"),
                    (f"M3 raises the adaptive challenge score at p ≤ {TABLE1_MAX_P:g} at a "
                     f"small cost in accuracy (≤ {100 * SMALL_COST:g} points)", "Table 1"),
                    ("adversarial training is above post-hoc robustification at equal clean "
                     "accuracy", "(beyond the paper: one frontier)"),
                    ("no model is both more robust (RmCE) and more accurate than the "
                     "reference", "Fig. 2"),
                    ("M1 improves corruption robustness (RmCE) at almost no cost in accuracy "
                     f"(accuracy coordinate ≥ −{SMALL_COST:g})", "Fig. 2 (AlexNet(M1P30))"),
                    ("adversarial training is above post-hoc robustification at equal "
                     "accuracy on wu2020's corruption axes", "Fig. 2 axes (beyond the paper)"),
                )
            ]  # fmt: skip
        return [
            fig1_finding(ctx, found),
            table1_finding(ctx, found),
            frontier_finding(ctx, found),
            fig2_finding(ctx, found),
            m1_corruption_finding(ctx, found),
            corruption_frontier_finding(ctx, found),
        ]
