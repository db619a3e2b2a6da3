"""The study report: one self-contained ``report.html`` (figures embedded) and the PNGs.

Reads only the results store (the report never trains). Every figure is drawn with
matplotlib's object API on the Agg canvas (no global pyplot state), written to
``<study>/figures/<name>.png`` and embedded in the HTML as a ``data:`` URI, so the HTML
file can be mailed or archived alone. Colours encode the training ε consistently in every
figure (a colour-blind-safe sequential map).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robustscope.report.findings import Finding, compute_findings

__all__ = ["StudyData", "load_study", "write_report"]


@dataclass
class StudyData:
    """Everything the report draws, read from a study's store.

    Attributes:
        spec: the study spec (dict).
        table: one row per finished run: run_id, label, model, family, method, eps, seed,
            and every metric and probe scalar (probe columns ``<probe>/<key>``).
        history: one row per (run_id, epoch) with the training history keys.
        arrays: ``(run_id, probe, key) → array`` loader for stored probe arrays.
        provenance: versions, host and device of the first run.
    """

    spec: dict[str, Any]
    table: pd.DataFrame
    history: pd.DataFrame
    arrays: Any = None
    provenance: dict[str, str] = field(default_factory=dict)


def load_study(study_dir: str | Path) -> StudyData:
    """Read a study's store into a :class:`StudyData` (finished runs only)."""
    from robustscope.studies import store as store_mod

    with store_mod.open(Path(study_dir)) as store:
        study = store.study() or {"spec": {}}
        runs = store.runs_table()
        metrics = store.metrics_table()
        probes = store.probes_table()
        history = store.history_table()
        done = runs[runs["status"] == "done"] if len(runs) else runs
        provenance = store.provenance(done["run_id"].iloc[0]) if len(done) else {}
        root = store.root
        cache: dict[tuple[str, str, str], Any] = {}
        for rid in done["run_id"] if len(done) else []:
            for row in store.conn.execute(
                "SELECT probe, key, path FROM artifacts WHERE run_id = ?", (rid,)
            ):
                cache[(rid, row[0], row[1])] = root / row[2]
    table = done.drop(columns=["train_time_s", "error"], errors="ignore").set_index("run_id")
    if len(metrics):
        table = table.join(metrics, how="left")
    if len(probes):
        table = table.join(probes, how="left")

    def arrays(run_id: str, probe: str, key: str) -> np.ndarray | None:
        path = cache.get((run_id, probe, key))
        if path is None:
            return None
        with np.load(path, allow_pickle=False) as f:
            return np.asarray(f["value"])

    table = table.reset_index()
    _add_spectra_summary(table)
    return StudyData(study["spec"], table, history, arrays, provenance)


def _layer_stds(table: pd.DataFrame) -> dict[str, str]:
    """layer → column of its singular-value std (exact ``std``, else the circular ``approx_std``)."""
    out: dict[str, str] = {}
    for col in table.columns:
        parts = str(col).split("/")
        if len(parts) != 3 or parts[0] != "layer_spectra":
            continue
        if parts[2] == "std" or (parts[2] == "approx_std" and parts[1] not in out):
            out[parts[1]] = str(col)
    return out


def _add_spectra_summary(table: pd.DataFrame) -> None:
    """``layer_spectra/mean_std``: the mean over layers of each layer's singular-value std."""
    cols = list(_layer_stds(table).values())
    if cols:
        table["layer_spectra/mean_std"] = table[cols].mean(axis=1)


# --- figures ---------------------------------------------------------------------------------


def _colors(eps_values: list[float]) -> dict[float, Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    eps_sorted = sorted(set(eps_values))
    n = max(len(eps_sorted) - 1, 1)
    return {e: cmap(0.9 * i / n) for i, e in enumerate(eps_sorted)}


def _save(fig: Figure, out: Path) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _attack_columns(table: pd.DataFrame) -> dict[str, dict[float, str]]:
    """attack key → {attack ε: column of robust accuracy over all points}."""
    out: dict[str, dict[float, str]] = {}
    for col in table.columns:
        parts = str(col).split("/")
        if len(parts) == 3 and parts[2] == "robust_accuracy":
            try:
                out.setdefault(parts[0], {})[float(parts[1])] = col
            except ValueError:
                continue
    return out


def _first_attack(spec: dict[str, Any]) -> str | None:
    attacks = spec.get("evaluation", {}).get("attacks", [])
    if not attacks:
        return None
    a = attacks[0]
    return str(a.get("label") or f"{a.get('attack', 'pgd')}-{a.get('norm', 'linf')}")


def _main_robust_column(table: pd.DataFrame, spec: dict[str, Any]) -> str | None:
    """The spec's first attack's robust accuracy at the middle training ε > 0 it evaluates."""
    attacks = _attack_columns(table)
    if not attacks:
        return None
    key = _first_attack(spec)
    first = attacks[key] if key in attacks else next(iter(attacks.values()))
    train_eps = sorted(e for e in table["eps"].unique() if e > 0)
    candidates = [e for e in train_eps if e in first] or [e for e in sorted(first) if e > 0]
    if not candidates:
        return None
    return first[candidates[len(candidates) // 2]]


def _fig_frontier(data: StudyData, col: str, out: Path) -> str:
    t = data.table
    colors = _colors(list(t["eps"]))
    fig = Figure(layout="constrained", figsize=(6.2, 4.6))
    ax = fig.add_subplot()
    for (model, family), g in t.groupby(["model", "family"]):
        agg = g.groupby("eps").agg(
            cx=("clean_accuracy", "mean"),
            cs=("clean_accuracy", "std"),
            rx=(col, "mean"),
            rs=(col, "std"),
        )
        ax.plot(
            100 * agg["cx"], 100 * agg[col if False else "rx"], "-", color="0.6", lw=1, zorder=1
        )
        for eps, row in agg.iterrows():
            ax.errorbar(
                100 * row["cx"],
                100 * row["rx"],
                xerr=0 if math.isnan(row["cs"]) else 100 * row["cs"],
                yerr=0 if math.isnan(row["rs"]) else 100 * row["rs"],
                fmt="o",
                color=colors[eps],
                ms=8,
                capsize=3,
                zorder=2,
            )
            ax.annotate(
                f"ε={eps:g}",
                (100 * row["cx"], 100 * row["rx"]),
                textcoords="offset points",
                xytext=(6, 5),
                fontsize=8,
            )
        ax.text(
            100 * agg["cx"].iloc[-1],
            100 * agg["rx"].iloc[-1],
            f"  {model} {family}",
            fontsize=8,
            va="top",
            color="0.35",
        )
    attack, eps = col.split("/")[:2]
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy, {attack} at ε = {eps} (%)")
    ax.set_title(
        "Robustness–accuracy trade-off (one point per training ε; bars: ±1 std over seeds)"
    )
    ax.grid(alpha=0.3)
    return _save(fig, out)


def _fig_robust_curves(data: StudyData, out: Path) -> str:
    t = data.table
    attacks = _attack_columns(t)
    colors = _colors(list(t["eps"]))
    fams = list(t.groupby(["model", "family"]).groups)
    fig = Figure(layout="constrained", figsize=(5.2 * len(fams), 4.2))
    axes = fig.subplots(1, len(fams), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for ax, (model, family) in zip(axes, fams, strict=True):
        g = t[(t["model"] == model) & (t["family"] == family)]
        for eps, ge in g.groupby("eps"):
            for k, (name, cols) in enumerate(attacks.items()):
                xs = sorted(cols)
                ys = [100 * ge[cols[e]].mean() for e in xs]
                ax.plot(
                    xs,
                    ys,
                    styles[k % 4],
                    marker="o",
                    ms=3,
                    color=colors[eps],
                    label=f"train ε={eps:g}, {name}",
                )
        ax.set_xlabel("attack ε")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_title(f"{model} {family}: robust accuracy vs attack ε")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out)


def _fig_training(data: StudyData, out: Path) -> str | None:
    h = data.history
    if h is None or not len(h):
        return None
    panels = [
        (c, lbl)
        for c, lbl in (
            ("test_accuracy", "test accuracy"),
            ("track/test/pgd_accuracy", "tracked PGD accuracy (test subset)"),
            ("track/test/input_fisher_frobenius_mean", "input-Fisher ‖F_x‖_F (test subset)"),
        )
        if c in h.columns
    ]
    if not panels:
        return None
    t = data.table.set_index("run_id")
    colors = _colors(list(t["eps"]))
    fig = Figure(layout="constrained", figsize=(5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (col, label) in zip(axes, panels, strict=True):
        for rid, g in h.groupby("run_id"):
            if rid not in t.index:
                continue
            eps = t.loc[rid, "eps"]
            ax.plot(
                g["epoch"],
                g[col],
                marker="o",
                ms=3,
                color=colors[eps],
                label=str(t.loc[rid, "label"]),
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if "fisher" in col:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.set_title(label + " over training")
    axes[0].legend(fontsize=7)
    return _save(fig, out)


_PROBE_PANELS = [
    ("input_fisher/frobenius_mean", "input-Fisher ‖F_x‖_F (shi2020)", True),
    ("input_fisher/spectral_mean", "input-Fisher λ_max (shi2020)", True),
    ("cckl/value", "CCKL (shi2020 eq. 1)", False),
    ("taylor_split/g1_share", "G1 share of cross-class KL (shi2020 §3.3)", False),
    ("margins/test/margin_std", "test logit-margin std (wen2020)", False),
    ("confidence/mean_max_prob", "mean confidence (wen2020)", False),
    ("confidence/ece", "expected calibration error", False),
    ("generalization_gap/loss_gap", "generalization loss gap (wen2020 Fig. 3)", False),
    ("weight_norms/l2_total", "‖w‖₂ of all weights (terzi2021 Fig. 5)", False),
    ("representation_fisher/trace_mean", "tr JᵀJ of the features (terzi2021)", True),
    ("weight_information/log_variance_mean", "mean log Σ* (terzi2021 Fig. 4)", False),
]


def _fig_probes(data: StudyData, out: Path) -> str | None:
    t = data.table
    panels = [p for p in _PROBE_PANELS if p[0] in t.columns and t[p[0]].notna().any()]
    if not panels:
        return None
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig = Figure(layout="constrained", figsize=(4.6 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (col, label, log) in zip(axes, panels, strict=False):
        for (model, family), g in t.groupby(["model", "family"]):
            agg = g.groupby("eps")[col].agg(["mean", "std"])
            ax.errorbar(
                agg.index,
                agg["mean"],
                yerr=agg["std"].fillna(0),
                marker="o",
                capsize=3,
                label=f"{model} {family}",
            )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("training ε")
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    return _save(fig, out)


def _fig_spectra(data: StudyData, out: Path) -> str | None:
    t = data.table
    layers = _layer_stds(t)
    if not layers:
        return None
    colors = _colors(list(t["eps"]))
    names = list(layers)
    fig = Figure(layout="constrained", figsize=(7, 4))
    ax = fig.add_subplot()
    for _, row in t.sort_values("eps").iterrows():
        ys = [row[layers[n]] for n in names]
        ax.plot(
            range(len(names)), ys, marker="o", color=colors[row["eps"]], label=str(row["label"])
        )
    approx = [i for i, n in enumerate(names) if layers[n].endswith("approx_std")]
    labels = [n + (" *" if i in approx else "") for i, n in enumerate(names)]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("std of the layer's singular values")
    ax.set_title("Singular-value spread per layer by training ε (wen2020 Fig. 5c–d)")
    if approx:
        note = "* circular-padding approximation (exact top-k only)"
        ax.text(0.99, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out)


def _fig_margins(data: StudyData, out: Path) -> str | None:
    if data.arrays is None or "margins/test/margin_mean" not in data.table.columns:
        return None
    t = data.table
    colors = _colors(list(t["eps"]))
    fig = Figure(layout="constrained", figsize=(14, 3.8))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    drawn = False
    for _, row in t.sort_values("eps").iterrows():
        for ax, key in ((ax1, "margin"), (ax2, "p_true"), (ax3, "loss")):
            hist = data.arrays(row["run_id"], "margins", f"test/{key}_hist")
            edges = data.arrays(row["run_id"], "margins", f"test/{key}_edges")
            if hist is None or edges is None:
                continue
            centers = 0.5 * (edges[1:] + edges[:-1])
            ax.plot(
                centers,
                hist / max(hist.sum(), 1),
                color=colors[row["eps"]],
                label=str(row["label"]),
            )
            drawn = True
    if not drawn:
        return None
    ax1.set_xlabel("logit margin f_y − max_{j≠y} f_j (test)")
    ax2.set_xlabel("probability of the true class (test)")
    ax3.set_xlabel("cross-entropy loss (test)")
    ax3.set_title("Loss distribution")
    for ax in (ax1, ax2, ax3):
        ax.set_ylabel("fraction of examples")
        ax.grid(alpha=0.3)
    ax1.set_title("Margin distributions by training ε (wen2020 Fig. 4)")
    ax2.set_title("Confidence in the true class")
    ax1.legend(fontsize=7)
    return _save(fig, out)


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right} th{background:#f4f4f4}
td.l,th.l{text-align:left} img{max-width:100%} .meta{color:#555;font-size:.9em}
.yes{color:#1a7f37;font-weight:bold}.no{color:#b42318;font-weight:bold}.na{color:#777}
"""


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for v in r:
            if isinstance(v, float | np.floating):
                cells.append(f"<td>{'' if math.isnan(v) else f'{v:.4g}'}</td>")
            else:
                cells.append(f'<td class="l">{html.escape(str(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _findings_html(findings: list[Finding]) -> str:
    items = []
    for f in findings:
        if f.holds is None:
            verdict = '<span class="na">not tested</span>'
        elif f.holds:
            verdict = '<span class="yes">yes</span>'
        else:
            verdict = '<span class="no">no</span>'
        items.append(
            f"<li><b>{html.escape(f.claim)}</b> ({html.escape(f.paper)}): {verdict} — "
            f"{html.escape(f.evidence)}</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def write_report(study_dir: str | Path, data: StudyData | None = None) -> Path:
    """Write ``<study_dir>/report.html`` and ``<study_dir>/figures/*.png``; returns the HTML path."""
    study_dir = Path(study_dir)
    data = data if data is not None else load_study(study_dir)
    figs = study_dir / "figures"
    spec = data.spec
    t = data.table
    parts = [
        f"<h1>{html.escape(str(spec.get('name', study_dir.name)))}</h1>",
        f"<p>{html.escape(str(spec.get('description', '')))}</p>",
        f"<p class='meta'>Reproduces: {html.escape(str(spec.get('reproduces', '')))}<br>"
        f"Report written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; {len(t)} finished run(s); "
        + html.escape(", ".join(f"{k} {v}" for k, v in data.provenance.items()))
        + "</p>",
    ]
    if not len(t):
        parts.append("<p>No finished runs yet.</p>")
    else:
        main = _main_robust_column(t, spec) if "clean_accuracy" in t.columns else None
        parts.append("<h2>Findings</h2>" + _findings_html(compute_findings(t, main)))
        sections: list[tuple[str, str | None]] = []
        if main is not None:
            sections.append(("The trade-off", _fig_frontier(data, main, figs / "frontier.png")))
            sections.append(
                (
                    "Robust accuracy vs attack ε",
                    _fig_robust_curves(data, figs / "robust_vs_eps.png"),
                )
            )
        sections.append(
            ("Training curves (shi2020 Figs. 3–4)", _fig_training(data, figs / "training.png"))
        )
        sections.append(("Probes vs training ε", _fig_probes(data, figs / "probes.png")))
        sections.append(
            (
                "Margins, confidence and loss (wen2020 Figs. 4–5)",
                _fig_margins(data, figs / "margins.png"),
            )
        )
        sections.append(
            (
                "Singular values of every layer (wen2020 Fig. 5c–d)",
                _fig_spectra(data, figs / "spectra.png"),
            )
        )
        for title, b64 in sections:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            if b64 is None:
                parts.append("<p class='na'>Not measured in this study.</p>")
            else:
                parts.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">')
        base = ["label", "model", "family", "eps", "seed"]
        metric_cols = [
            c
            for c in t.columns
            if c == "clean_accuracy" or str(c).endswith("/robust_accuracy") or c == "train_time_s"
        ]
        parts.append("<h2>All numbers</h2><h3>Accuracy</h3>" + _table_html(t[base + metric_cols]))
        probe_cols = [
            c
            for c in t.columns
            if "/" in str(c)
            and c not in metric_cols
            and not str(c).startswith("train/")
            and "robust_accuracy" not in str(c)
        ]
        if probe_cols:
            parts.append(
                "<h3>Probe scalars</h3>"
                + _table_html(
                    t[["label", *probe_cols]]
                    .set_index("label")
                    .T.reset_index()
                    .rename(columns={"index": "quantity"})
                )
            )
    doc = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(str(spec.get('name', 'study')))} — robustscope report</title>"
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = study_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out
