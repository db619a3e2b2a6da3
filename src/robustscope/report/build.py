"""``write_report``: the study's ``report.html`` (one self-contained file) and its PNGs.

The page: header (what was run, budgets, provenance, run status) → Findings (each
testable claim of the papers, with its verdict and numbers) → the trade-off (frontier,
robust accuracy against the attack's ε) → training curves (shi2020 Figs. 3–4) → shi2020
(Fisher, CCKL, G1 share) → wen2020 (gaps, margins, confidence/loss histograms, singular
values) → weights and every other probe → all the numbers. A section whose data the
study lacks is replaced by a one-line note. Figures are written to
``<study>/figures/<name>.png`` (the folder is the report's: stale PNGs are removed) and
embedded in the HTML as ``data:`` URIs; the page has inline CSS and no script.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from robustscope.report import fig_probes, fig_tradeoff
from robustscope.report.data import RUN_COLUMNS, StudyData, load_study
from robustscope.report.findings import compute_findings
from robustscope.report.page import (
    FigureRecord,
    document,
    esc,
    figure_html,
    findings_html,
    skip_html,
    table_html,
)
from robustscope.report.stats import by_eps, main_robust_column, series
from robustscope.report.style import Palette, png_bytes
from robustscope.report.summary import summary_rows
from robustscope.studies.store import views
from robustscope.studies.store.vocab import CLEAN_ACCURACY, QUANTITIES, TRAIN_PREFIX, format_eps

__all__ = ["write_report"]

SECTIONS = (
    ("findings", "Findings"),
    ("tradeoff", "The trade-off"),
    ("training", "Training curves"),
    ("shi2020", "Fisher information, CCKL and the G1 share (shi2020)"),
    ("wen2020", "Generalization, margins, confidence and singular values (wen2020)"),
    ("weights", "Weights and the other probes"),
    ("numbers", "All numbers"),
)


def _fmt_list(values: Any) -> str:
    if isinstance(values, list | tuple):
        return ", ".join(_value(v) for v in values)
    return _value(values)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _params(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""
    return " (" + ", ".join(f"{k}={_value(v)}" for k, v in params.items()) + ")"


def _spec_rows(spec: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if spec.get("reproduces"):
        rows.append(("reproduces", str(spec["reproduces"])))
    if spec.get("dataset"):
        rows.append(("dataset", str(spec["dataset"]) + _params(spec.get("dataset_params"))))
    models = spec.get("models") or []
    if models:
        rows.append(
            (
                "models",
                "; ".join(
                    str(m.get("label") or m.get("model")) + _params(m.get("model_kwargs"))
                    for m in models
                    if isinstance(m, dict)
                ),
            )
        )
    methods = spec.get("methods") or []
    if methods:
        rows.append(
            (
                "training",
                "; ".join(
                    f"{m.get('method')} ({m.get('norm', 'linf')}) at ε ∈ "
                    f"{{{_fmt_list(m.get('eps', []))}}}{_params(m.get('params'))}"
                    for m in methods
                    if isinstance(m, dict)
                ),
            )
        )
    if spec.get("seeds") is not None:
        rows.append(("seeds", _fmt_list(spec["seeds"])))
    if spec.get("train"):
        rows.append(("training options", _params(spec["train"]).strip(" ()")))
    ev = spec.get("evaluation") or {}
    if ev:
        attacks = "; ".join(
            f"{a.get('label') or a.get('attack')} ({a.get('norm', 'linf')}) at ε ∈ "
            f"{{{_fmt_list(a.get('eps', []))}}}{_params(a.get('params'))}"
            for a in ev.get("attacks") or []
            if isinstance(a, dict)
        )
        rows.append(("evaluation", f"first {ev.get('n', '?')} test points: {attacks}"))
    pr = spec.get("probes") or {}
    if pr.get("run"):
        names = ", ".join(
            str(p.get("name")) + _params(p.get("options")) for p in pr["run"] if isinstance(p, dict)
        )
        rows.append(
            (
                "probes",
                f"{names} on {pr.get('n', '?')} test and {pr.get('train_n', 0)} training points",
            )
        )
    return rows


def _stamp(t: Any) -> str:
    try:
        return _dt.datetime.fromtimestamp(float(t), _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return str(t)


def _header(data: StudyData, now: _dt.datetime) -> str:
    spec = data.spec
    status = Counter(str(s) for s in data.runs["status"]) if len(data.runs) else Counter()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items())) or "none"
    rows = _spec_rows(spec)
    rows.append(("runs", f"{len(data.runs)} ({counts})"))
    written = now.strftime("%Y-%m-%d %H:%M %Z").strip()
    when = f"report written {written}"
    if data.info.get("created") is not None:
        when += f"; study created {_stamp(data.info['created'])}"
    if data.info.get("updated") is not None:
        when += f", last updated {_stamp(data.info['updated'])}"
    rows.append(("date", when))
    if data.provenance:
        rows.append(("provenance", ", ".join(f"{k} {v}" for k, v in data.provenance.items())))
    meta = "".join(
        f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in rows
    )
    parts = [
        f"<header><h1>{esc(data.name)}</h1>",
        f'<p class="desc">{esc(spec.get("description") or "")}</p>',
        f'<table class="meta"><tbody>{meta}</tbody></table>',
    ]
    if "status" in data.runs.columns:
        bad = data.runs[data.runs["status"] != "done"]
        if len(bad):
            cols = [c for c in ("label", "status", "error") if c in bad.columns]
            shown = bad[cols].copy()
            if "error" in shown.columns:
                shown["error"] = [
                    (str(e).splitlines()[0][:200] if isinstance(e, str) else "")
                    for e in shown["error"]
                ]
            parts.append(
                "<p>Runs not finished (left out of the figures and findings):</p>"
                + table_html(shown, index=False)
            )
    nav = "".join(f'<li><a href="#{sid}">{esc(title)}</a></li>' for sid, title in SECTIONS)
    parts.append(f"<nav><ol>{nav}</ol></nav></header>")
    return "".join(parts)


class _Report:
    """Collects the figures and the HTML of the sections."""

    def __init__(self, data: StudyData, eval_eps: float | None) -> None:
        self.data = data
        self.eval_eps = eval_eps
        self.table = data.table()
        names = list(series(self.table))
        self.palette = Palette(self.table["eps"] if len(self.table) else [], names)
        self.figures: list[FigureRecord] = []
        self.used: set[str] = set()

    def add(self, name: str, fig: Figure | None, caption: str) -> str | None:
        if fig is None:
            return None
        rec = FigureRecord(re.sub(r"[^A-Za-z0-9_.-]", "_", name), caption, png_bytes(fig))
        self.figures.append(rec)
        return figure_html(rec)

    # --- sections --------------------------------------------------------------------------

    def findings(self) -> str:
        findings = compute_findings(self.data, eval_eps=self.eval_eps)
        verdicts = Counter(
            "untested" if f.holds is None else ("hold" if f.holds else "fail") for f in findings
        )
        intro = (
            f"<p>{verdicts['hold']} claim(s) hold, {verdicts['fail']} do not, "
            f"{verdicts['untested']} not tested here. Trends are read on the seed means along "
            "the training ε of each model × method and must be strictly monotone; "
            "“robust vs standard” claims compare each ε &gt; 0 model with the ε = 0 one.</p>"
        )
        return intro + findings_html(findings)

    def tradeoff(self) -> str:
        t = self.table
        column = main_robust_column(self.data, self.eval_eps)
        parts = []
        if column is not None:
            attack, eps = column.label, format_eps(column.eps)
            parts.append(
                self.add(
                    "frontier",
                    fig_tradeoff.fig_frontier(t, column, self.palette),
                    f"Clean accuracy against robust accuracy under {attack} at ε = {eps}, one "
                    "point per training ε (seed mean; bars span the seeds, min–max), points of "
                    "one model × method joined in ε order.",
                )
                or ""
            )
        parts.append(
            self.add(
                "robust_vs_attack_eps",
                fig_tradeoff.fig_robust_vs_attack_eps(self.data, t, self.palette),
                "Robust accuracy against the attack's ε, one panel per model × method and one "
                "curve per training ε (first attack solid, others dashed/dotted; bands span the "
                "seeds). Robust accuracy is over all evaluated test points.",
            )
            or ""
        )
        flags = [c for c in self.data.flag_columns() if c.column in t.columns]
        fired = [
            f"{t.loc[rid, 'label']}: {c.flag}"
            for c in flags
            for rid, v in t[c.column].items()
            if v == v and v > 0
        ]
        if fired:
            parts.append(
                "<p><b>Gradient-masking warnings</b> (robust accuracy may be overestimated): "
                + esc("; ".join(fired))
                + "</p>"
            )
        body = "".join(parts)
        return body or skip_html("Not measured in this study: no attack results.")

    def training(self) -> str:
        fig = fig_tradeoff.fig_training(self.data, self.table, self.palette)
        html = self.add(
            "training",
            fig,
            "Training history, averaged over seeds per model × method and training ε: test "
            "accuracy, the input-Fisher norm ‖F_x‖_F tracked on a test subset (log scale; "
            "shi2020 Figs. 3–4), tracked PGD accuracy, and the losses.",
        )
        return html or skip_html("Not measured in this study: no training history stored.")

    def shi2020(self) -> str:
        html = self.add(
            "shi2020",
            fig_probes.fig_shi2020(self.table, self.palette, self.used),
            "shi2020 against the training ε: mean input-Fisher Frobenius norm and largest "
            "eigenvalue over the test points (log), CCKL (mean KL between the predictions of "
            "cross-class pairs, eq. 1) and the share of the second-order Fisher term G1 in "
            "that KL (eq. 11); last panel: CCKL against clean accuracy, one point per model. "
            "Bars span the seeds.",
        )
        return html or skip_html(
            "Not measured in this study: the input_fisher, cckl and taylor_split probes did "
            "not run."
        )

    def wen2020(self) -> str:
        d, t, p = self.data, self.table, self.palette
        parts = [
            self.add(
                "wen2020_gaps",
                fig_probes.fig_gaps(t, p, self.used),
                "wen2020 Fig. 3: training (dashed) and test (solid) loss and error, and the "
                "generalization gaps (test − train), against the training ε.",
            ),
            self.add(
                "wen2020_margins",
                fig_probes.fig_margin_hists(d, t, p),
                "wen2020 Fig. 4: distribution of the logit margin f_y − max_{j≠y} f_j on test "
                "and training points by training ε (fixed bins; values outside the range are "
                "counted in the end bins; seeds pooled).",
            ),
            self.add(
                "wen2020_confidence",
                fig_probes.fig_confidence_hists(d, t, p),
                "wen2020 Fig. 5(a–b): histograms of the true-class probability p_y and of the "
                "loss −log p_y of test points, and of the confidence max_k p_k, by training ε "
                "(log density).",
            ),
            self.add(
                "wen2020_spectra_std",
                fig_probes.fig_spectra_std(t, p, self.used),
                "wen2020 Fig. 5(c–d) and B.2: standard deviation of the singular values of each "
                "layer's operator by training ε (circular approximation where only the top "
                "singular values are exact), and per layer the STD at the weakest minus the "
                "strongest training ε (blue: the spread fell).",
            ),
            self.add(
                "singular_values",
                fig_probes.fig_singular_values(d, t, p),
                "Singular values of every layer (descending, against their normalised rank) by "
                "training ε, first seed.",
            ),
        ]
        body = "".join(x for x in parts if x)
        return body or skip_html(
            "Not measured in this study: the margins, confidence, generalization_gap and "
            "layer_spectra probes did not run."
        )

    def weights(self) -> str:
        t, p = self.table, self.palette
        parts = [
            self.add(
                "weights",
                fig_probes.fig_weights(t, p, self.used),
                "Weights against the training ε: total ℓ2 and ℓ1 norms (terzi2021 Fig. 5, "
                "tsipras2019 Table 5), information in the weights (terzi2021 Fig. 4), the "
                "representation's Fisher w.r.t. the input, and the ℓ2 norm of each layer.",
            )
        ]
        probe_names = sorted(
            {str(c).split("/", 1)[0] for c in self.data.probes.columns if "/" in str(c)}
        )
        for probe in probe_names:
            if probe in fig_probes.DEDICATED_PROBES:
                continue
            parts.append(
                self.add(
                    f"probe_{probe}",
                    fig_probes.fig_generic(t, p, probe, self.used),
                    f"Probe {probe}: its scalars that vary across the models, against the "
                    "training ε.",
                )
            )
        rest = [
            str(c)
            for c in self.data.probes.columns
            if str(c) not in self.used and str(c) in t.columns
        ]
        if rest:
            parts.append(
                "<details><summary>Every other probe scalar by model × method and training ε "
                f"(seed means; {len(rest)} quantities)</summary>"
                + table_html(self._by_eps_table(rest), index_label="quantity")
                + "</details>"
            )
        body = "".join(x for x in parts if x)
        return body or skip_html("Not measured in this study: no probe ran.")

    def _by_eps_table(self, columns: list[str]) -> pd.DataFrame:
        out: dict[str, dict[str, float]] = {}
        for name, rows in series(self.table).items():
            for col in columns:
                for e, mean in by_eps(rows, col)["mean"].items():
                    out.setdefault(f"{name} ε={float(e):g}", {})[col] = float(mean)
        return pd.DataFrame(out).reindex(columns)

    def numbers(self) -> str:
        d = self.data
        parts = ["<h3>Summary (one row per run)</h3>"]
        rows = summary_rows(d)
        parts.append(table_html(pd.DataFrame(rows), index=False) if rows else skip_html("No run."))
        runs = d.runs[[c for c in (*RUN_COLUMNS, "error") if c in d.runs.columns]]
        if "error" in runs.columns:
            runs = runs.assign(
                error=[
                    str(e).splitlines()[0][:200] if isinstance(e, str) else ""
                    for e in runs["error"]
                ]
            )
        if len(runs):
            order = runs.sort_values(["model", "family", "eps", "seed"], kind="stable")
            parts.append("<h3>Runs</h3>" + table_html(order, index=False))
            labels = dict(zip(order["run_id"], order["label"], strict=True))
            for title, frame in (("Metrics", _all_metrics(d)), ("Probe scalars", d.probes)):
                if not len(frame.columns):
                    continue
                ids = [r for r in order["run_id"] if r in frame.index]
                cols = (
                    _metric_order(d, list(frame.columns))
                    if title == "Metrics"
                    else sorted(frame.columns)
                )
                wide = frame.loc[ids, cols].T
                wide.columns = [str(labels[r]) for r in ids]
                parts.append(
                    f"<details{' open' if len(cols) <= 30 else ''}><summary>{title} "
                    f"({len(cols)} quantities × {len(ids)} runs)</summary>"
                    + table_html(wide, index_label="quantity")
                    + "</details>"
                )
        return "".join(parts)

    def body(self, now: _dt.datetime) -> str:
        parts = [_header(self.data, now)]
        done = len(self.table)
        for sid, title in SECTIONS:
            if sid == "numbers":
                content = self.numbers()
            elif not done:
                content = skip_html("No finished run yet: nothing to show.")
            else:
                content = getattr(self, sid)()
            parts.append(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>')
        parts.append(
            "<footer>Written by robustscope (robustscope report). Figures are embedded; the "
            "same PNGs are in figures/ beside this file.</footer>"
        )
        return "".join(parts)


def _all_metrics(data: StudyData) -> pd.DataFrame:
    """Every run's metrics, attack results and flags, one column each (index ``run_id``)."""
    frames = [views.attack_results_wide(data.attacks), views.flags_wide(data.flags)]
    out = data.metrics
    for frame in frames:
        if len(frame.columns):
            out = out.join(frame, how="outer") if len(out.columns) else frame
    return out


def _metric_order(data: StudyData, columns: list[str]) -> list[str]:
    """Clean accuracy, then the attack results (by label, quantity, ε), the flags, the last
    epoch's training values and the rest."""
    rank = {q: i for i, q in enumerate(QUANTITIES)}
    attack = {
        c.column: (c.label, rank.get(c.quantity, len(rank)), c.quantity, c.eps)
        for c in views.attack_columns(data.attacks)
    }
    flags = {c.column for c in data.flag_columns()}

    def key(c: str) -> tuple[int, Any]:
        if c == CLEAN_ACCURACY:
            return (0, "")
        if c in attack:
            return (1, attack[c])
        if c in flags:
            return (2, c)
        if c.startswith(TRAIN_PREFIX):
            return (3, c)
        return (4, c)

    return sorted(columns, key=key)


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(
    study_dir: str | Path, data: StudyData | None = None, *, eval_eps: float | None = None
) -> Path:
    """Write ``<study_dir>/report.html`` and ``<study_dir>/figures/*.png``; return the HTML path.

    Args:
        study_dir: the study's directory (``runs/<study>``).
        data: the study's data; read from ``<study_dir>/results.sqlite`` when None.
        eval_eps: the attack ε of the frontier and of the robust-accuracy finding (default:
            the middle training ε > 0 that the first attack evaluates).

    Example::

        path = write_report("runs/tradeoff-fmnist")   # runs/tradeoff-fmnist/report.html
    """
    study_dir = Path(study_dir)
    if data is None:
        data = load_study(study_dir)
    report = _Report(data, eval_eps)
    now = _dt.datetime.now().astimezone()
    page = document(f"{data.name} — robustscope report", report.body(now))
    figures = study_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    keep = {f"{rec.name}.png" for rec in report.figures}
    for old in figures.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    for rec in report.figures:
        _atomic_write(figures / f"{rec.name}.png", rec.png)
    out = study_dir / "report.html"
    _atomic_write(out, page.encode("utf-8"))
    return out
