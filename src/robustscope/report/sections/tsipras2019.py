"""tsipras2019 theory lab: the exact linear trade-off frontier on the study's distribution
with its trained models placed against it, Theorem 2.1's bound, Theorem 2.2's SVMs, and
App. E on binary MNIST (Table 5, Fig. 5).

The section applies to studies on the ``tsipras`` dataset (the distribution of eq. 3; its
``d``, ``p``, ``η`` are the spec's ``dataset_params``, the dataset's defaults otherwise). It
reads each finished run's clean accuracy and its ℓ∞ robust accuracy at the smallest attack
ε ≥ 2η of the study (the lowest over the study's ℓ∞ attacks at that ε) (both on the evaluation's test examples, so with binomial errors), and
computes the rest from :mod:`robustscope.theory`: the frontier at that ε, the closed-form
and fitted-linear family of Theorem 2.1, the distributional SVMs, and
:func:`robustscope.theory.binary_mnist.run` (mnist if present, else mnist-5k).

Claims:

* Theorem 2.1 — no run violates ``robust ≤ p/(1 − p)·δ`` beyond 4 standard errors (a run
  that did not train — :func:`robustscope.report.stats.trained` — is not evidence);
* Theorem 2.2 — the distributional SVMs' four statements (not tested when the study's
  parameters miss its hypotheses);
* Table 5 — the adversarially trained linear model's ‖w‖₁ is far below the standard one's:
  at most half (the paper: 13.69 vs 41.08, a third);
* App. E.1 — a standard model on the few (k ≤ 20) most correlated pixels is more robust
  than the standard model on all pixels.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustscope.data.synthetic import DEFAULT_D, DEFAULT_P, default_eta
from robustscope.report.findings import Finding, decided, not_tested, number, verdict
from robustscope.report.page import table_html
from robustscope.report.section import ReportContext, Section, SectionFigure, register_section
from robustscope.report.stats import eval_n, trained
from robustscope.report.style import grid
from robustscope.studies.store.vocab import CLEAN_ACCURACY
from robustscope.theory import binary_mnist, family, frontier, theorems
from robustscope.theory.tsipras import Distribution

__all__ = ["Tsipras2019", "distribution", "run_points", "theorem21_finding"]

PAPER = "tsipras2019"
Z = theorems.Z_LIMIT
#: "far below": the adversarial ‖w‖₁ at most this fraction of the standard one
FAR_BELOW = 0.5
TOPK_MAX = 20


def distribution(spec: dict[str, Any]) -> Distribution | None:
    """The distribution of a study on ``tsipras`` (None for any other dataset)."""
    if spec.get("dataset") != "tsipras":
        return None
    params = spec.get("dataset_params") or {}
    d = int(params.get("d", DEFAULT_D))
    eta = params.get("eta")
    return Distribution.create(
        d, params.get("p", DEFAULT_P), default_eta(d) if eta is None else eta
    )


def run_points(ctx: ReportContext, dist: Distribution) -> tuple[float, pd.DataFrame] | None:
    """``(ε, rows)``: the smallest ℓ∞ attack ε ≥ 2η of the study and, per finished run,
    ``label, eps (training), standard, robust, standard_se, robust_se``; None without such
    an attack."""
    cols = [
        c
        for c in ctx.data.robust_columns()
        if c.norm == "linf" and c.eps >= 2 * dist.eta - 1e-12 and c.column in ctx.table
    ]
    if not cols or CLEAN_ACCURACY not in ctx.table:
        return None
    eps = min(c.eps for c in cols)
    # Every ℓ∞ attack at that ε: a run's robust accuracy is the lowest any of them reads.
    at = [c.column for c in cols if c.eps == eps]
    t = ctx.table.dropna(subset=[CLEAN_ACCURACY, *at])
    n = eval_n(ctx.data.spec)
    s, r = t[CLEAN_ACCURACY].astype(float), t[at].astype(float).min(axis=1)
    rows = pd.DataFrame(
        {
            "label": t["label"] if "label" in t else t.index.astype(str),
            "eps": t["eps"].astype(float),
            "standard": s,
            "robust": r,
            "standard_se": np.sqrt(s * (1 - s) / n),
            "robust_se": np.sqrt(r * (1 - r) / n),
            "trained": t.index.isin(trained(t, ctx.data.spec).index),
        }
    )
    return eps, rows


def theorem21_finding(dist: Distribution, eps: float | None, rows: pd.DataFrame | None) -> Finding:
    """Theorem 2.1 on the trained runs (module doc)."""
    claim = "robust accuracy ≤ p/(1 − p)·δ against ℓ∞ ε ≥ 2η (Theorem 2.1)"
    if eps is None or rows is None or not len(rows):
        return not_tested(claim, f"{PAPER} Thm. 2.1", "no ℓ∞ attack at ε ≥ 2η on a finished run")
    ok = rows[rows["trained"]]
    if not len(ok):
        return not_tested(claim, f"{PAPER} Thm. 2.1", "no run trained (clean accuracy ≈ ½)")
    check = theorems.check_bound(
        dist,
        eps,
        [str(x) for x in ok["label"]],
        ok["standard"].to_numpy(),
        ok["robust"].to_numpy(),
        ok["standard_se"].to_numpy(),
        ok["robust_se"].to_numpy(),
    )
    bad = set(check.violations)
    judged = [
        (
            name not in bad,
            f"{name}: {number(s, 100)} % clean, {number(r, 100)} % robust (bound {number(b, 100)} %)",
        )
        for name, s, r, b in zip(
            check.names, check.standard, check.robust, check.bound, strict=True
        )
    ]
    note = f" (ε = {eps:g}, p = {dist.p:g}; violation = beyond {Z:g} standard errors)"
    if bad:
        note += (
            "; the theorem is a proof, so a run above the bound means the attack's robust "
            "accuracy (an upper estimate) missed adversarial examples — the proof's fixed "
            "adversary xᵢ − 2ηy finds them: use a stronger attack"
        )
    return verdict(claim, f"{PAPER} Thm. 2.1", judged, "", note)


@lru_cache(maxsize=4)
def _lab(dist: Distribution, eps: float) -> tuple[Any, Any, Any]:
    front = frontier.frontier(dist, eps)
    sym = frontier.frontier(dist, eps, family="symmetric")
    members = family.linear_grid(dist, eps, n=600)
    members.extend(family.fitted_members(dist, eps, n_train=1000, l2=1e-2))
    return front, sym, members


@lru_cache(maxsize=1)
def _mnist() -> binary_mnist.BinaryMnistResult:
    return binary_mnist.run()


def fig_frontier(dist: Distribution, eps: float, rows: pd.DataFrame, ctx: ReportContext) -> Figure:
    """(a) the frontier at ε with the trained runs; (b) Theorem 2.1: robust vs 1 − standard."""
    front, sym, members = _lab(dist, eps)
    fig, (ax, bx) = grid(2, cols=2, width=5.4, height=4.2)
    ax.plot(100 * front.standard, 100 * front.robust, "k-", lw=1.6, label="frontier (all linear)")
    ax.plot(100 * sym.standard, 100 * sym.robust, "k:", lw=1.2, label="w = (a, b·1) only")
    t = np.linspace(dist.p, 1.0, 200)
    ax.plot(100 * t, 100 * theorems.bound(dist.p, t), color="tab:red", lw=1, label="Thm 2.1 bound")
    for e, part in rows.groupby("eps"):
        ax.errorbar(
            100 * part["standard"],
            100 * part["robust"],
            xerr=100 * part["standard_se"],
            yerr=100 * part["robust_se"],
            fmt="o",
            ms=4,
            color=ctx.palette.color(float(e)),
            label=f"trained, ε_train = {e:g}",
        )
    ok = rows[rows["trained"]]
    low = min(dist.p, float(ok["standard"].min()) if len(ok) else 1.0)
    ax.set_xlim(100 * low - 1, 100.3)
    ax.set(
        xlabel="standard accuracy (%)",
        ylabel=f"robust accuracy at ε = {eps:g} (%)",
        title=f"linear trade-off frontier (d = {dist.d}, p = {dist.p:g}, η = {dist.eta:g})",
    )
    ax.legend(fontsize=7)
    delta = np.geomspace(1e-5, 0.5, 200)
    bx.plot(delta, np.minimum(1, dist.p / (1 - dist.p) * delta), color="tab:red", label="p/(1−p)·δ")
    s, r = np.array(members.standard), np.array(members.robust)
    kinds = np.array(members.kinds)
    for kind, marker in (("closed form", "."), ("fitted linear", "s")):
        m = kinds == kind
        bx.scatter(np.clip(1 - s[m], 1e-5, None), r[m], s=8, marker=marker, alpha=0.6, label=kind)
    bx.scatter(
        np.clip(1 - rows["standard"], 1e-5, None), rows["robust"], s=18, c="k", label="trained runs"
    )
    bx.set(
        xscale="log",
        xlabel="δ = 1 − standard accuracy",
        ylabel="robust accuracy",
        title="Theorem 2.1",
    )
    bx.legend(fontsize=7)
    return fig


def fig_mnist(result: binary_mnist.BinaryMnistResult) -> Figure:
    """Fig. 5: the two weight images, correlation vs weight, the top-k curve."""
    f5 = result.figure5
    fig, axes = grid(4, cols=4, width=3.4, height=3.2)
    for ax, w, name in (
        (axes[0], f5.weights_standard, "standard"),
        (axes[1], f5.weights_adversarial, f"adversarial (ε = {f5.eps:g})"),
    ):
        lim = float(np.abs(w.numpy()).max()) or 1.0
        ax.imshow(w.numpy(), cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.set(title=f"weights, {name}", xticks=[], yticks=[])
    corr = f5.correlation.numpy().ravel()
    axes[2].scatter(corr, np.abs(f5.weights_standard.numpy().ravel()), s=4, label="standard")
    axes[2].scatter(corr, np.abs(f5.weights_adversarial.numpy().ravel()), s=4, label="adversarial")
    axes[2].axvline(f5.eps, color="k", ls=":", lw=1)
    axes[2].set(xlabel="|E[y·xᵢ]|", ylabel="|wᵢ|", title="correlation vs weight")
    axes[2].legend(fontsize=7)
    axes[3].plot(f5.ks, f5.topk_standard, "o-", label="standard")
    axes[3].plot(f5.ks, f5.topk_adversarial, "s-", label=f"adversarial (ε = {f5.eps:g})")
    axes[3].set(
        xscale="log",
        xlabel="k most correlated pixels",
        ylabel="test accuracy (%)",
        title="Fig. 5(c)",
    )
    axes[3].legend(fontsize=7)
    return fig


def mnist_findings(result: binary_mnist.BinaryMnistResult) -> list[Finding]:
    """Table 5's ‖w‖₁ claim and App. E.1's top-k claim (module doc)."""
    t5 = result.table5
    std, adv = t5.ours["standard"], t5.ours["adversarial"]
    ratio = adv.w_l1 / std.w_l1
    l1 = Finding(
        f"adversarial training's ‖w‖₁ is far below standard training's (≤ {FAR_BELOW:g}×)",
        f"{PAPER} Table 5 (41.08 vs 13.69)",
        decided(ratio <= FAR_BELOW),
        f"binary MNIST 5 vs 7 ({t5.dataset}), ε = {t5.eps:g}: {number(std.w_l1)} vs "
        f"{number(adv.w_l1)} ({ratio:.2f}×)",
    )
    f5 = result.figure5
    few = [a for k, a in zip(f5.ks, f5.topk_adversarial, strict=True) if k <= TOPK_MAX]
    full = std.adversarial_test
    topk = Finding(
        f"standard training on the ≤ {TOPK_MAX} most correlated pixels is more robust than on all",
        f"{PAPER} App. E.1, Fig. 5(c)",
        decided(bool(few) and max(few) > full),
        f"best adversarial test accuracy with k ≤ {TOPK_MAX}: {max(few):.1f} % vs "
        f"{full:.1f} % for the full standard model",
    )
    return [l1, topk]


def svm_finding(dist: Distribution, eps: float) -> Finding:
    """Theorem 2.2 on the study's distribution."""
    r = theorems.svm(dist, eps=eps)
    claim = "the standard SVM is accurate and not robust, the adversarial SVM has p and p (Thm 2.2)"
    if not r.hypotheses:
        why = f"d = {dist.d}, p = {dist.p:g}, η = {dist.eta:g}, ε = {eps:g} miss its hypotheses"
        return not_tested(claim, f"{PAPER} Thm. 2.2", why)
    evidence = "; ".join(f"{k}: {'yes' if v else 'no'}" for k, v in r.verdicts.items())
    return Finding(claim, f"{PAPER} Thm. 2.2", decided(all(r.verdicts.values())), evidence)


@register_section("tsipras2019", order=25)
class Tsipras2019(Section):
    """tsipras2019 §2 and App. E: the theory lab on the study's distribution and binary MNIST."""

    title = "tsipras2019: the trade-off in theory"
    lacking = "no ℓ∞ attack at ε ≥ 2η"

    def applies(self, ctx: ReportContext) -> bool:
        return distribution(ctx.data.spec) is not None

    def figures(self, ctx: ReportContext) -> list[SectionFigure]:
        dist = distribution(ctx.data.spec)
        if dist is None:
            return []
        found = run_points(ctx, dist)
        out = []
        if found is not None:
            eps, rows = found
            out.append(
                SectionFigure(
                    "tsipras_frontier",
                    fig_frontier(dist, eps, rows, ctx),
                    f"Left: the exact frontier of linear classifiers at ε = {eps:g} (solid; "
                    "dotted: the symmetric w = (a, b·1) only), Theorem 2.1's bound (red) and the "
                    "trained runs (test estimates ± 1 se). Right: Theorem 2.1 on a family of "
                    "closed-form and fitted linear classifiers and the runs.",
                )
            )
        out.append(
            SectionFigure(
                "tsipras_mnist",
                fig_mnist(_mnist()),
                "App. E, Fig. 5 on binary MNIST 5 vs 7: the weights of standard and adversarial "
                "logistic regression, |correlation| vs |weight| per pixel (dotted: ε), and a "
                "standard model on the k most correlated pixels.",
            )
        )
        return out

    def html(self, ctx: ReportContext) -> str:
        t5 = _mnist().table5.to_dict()
        keys = ("standard_train", "standard_test", "adversarial_train", "adversarial_test", "w_l1")
        heads = ("std train %", "std test %", "adv train %", "adv test %", "‖w‖₁")
        df = pd.DataFrame(
            [
                {
                    "training": name,
                    "source": source,
                    **dict(zip(heads, (round(pair[source][k], 2) for k in keys), strict=True)),
                }
                for name, pair in t5["rows"].items()
                for source in ("ours", "paper")
            ]
        )
        caption = html.escape(
            f"Table 5 analogue ({t5['dataset']}, ε = {t5['eps']:g}; the paper: full MNIST)"
        )
        return f"<p>{caption}</p>" + table_html(df, index=False)

    def findings(self, ctx: ReportContext) -> list[Finding]:
        dist = distribution(ctx.data.spec)
        if dist is None:
            why = "the study is not on the tsipras distribution"
            return [
                not_tested("robust accuracy ≤ p/(1 − p)·δ (Theorem 2.1)", f"{PAPER} Thm. 2.1", why)
            ]
        found = run_points(ctx, dist)
        eps, rows = found if found is not None else (None, None)
        out = [theorem21_finding(dist, eps, rows)]
        out.append(svm_finding(dist, 2 * dist.eta if eps is None else eps))
        out.extend(mnist_findings(_mnist()))
        return out
