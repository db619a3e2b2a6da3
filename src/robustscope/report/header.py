"""The page header: what was run (spec, budgets), when, on what (provenance), the runs'
status, the runs that did not finish, and the table of contents of the sections shown.
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from robustscope.report.data import StudyData
from robustscope.report.page import error_line, esc, nav_html, table_html

__all__ = ["header_html", "run_counts", "spec_rows"]


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


def spec_rows(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """``(what, description)`` rows of the spec: dataset, models, training, seeds, the
    checkpoints loaded, evaluation, probes (only those the spec has; models, seeds and training
    options only when it trains)."""
    rows: list[tuple[str, str]] = []
    if spec.get("reproduces"):
        rows.append(("reproduces", str(spec["reproduces"])))
    if spec.get("dataset"):
        rows.append(("dataset", str(spec["dataset"]) + _params(spec.get("dataset_params"))))
    trains = bool(spec.get("methods")) or "methods" not in spec
    models = (spec.get("models") or []) if trains else []
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
    if trains and spec.get("seeds") is not None:
        rows.append(("seeds", _fmt_list(spec["seeds"])))
    if trains and spec.get("train"):
        rows.append(("training options", _params(spec["train"]).strip(" ()")))
    loaded = [c for c in spec.get("checkpoints") or [] if isinstance(c, dict)]
    if loaded:
        rows.append(
            (
                "checkpoints (loaded, not trained)",
                "; ".join(
                    str(c.get("path")) + (f" (label {c['label']})" if c.get("label") else "")
                    for c in loaded
                ),
            )
        )
    ev = spec.get("evaluation") or {}
    if ev:
        attacks = "; ".join(
            f"{a.get('label') or a.get('attack')} ({a.get('norm', 'linf')}) at ε ∈ "
            f"{{{_fmt_list(a.get('eps', []))}}}{_params(a.get('params'))}"
            for a in ev.get("attacks") or []
            if isinstance(a, dict)
        )
        escalate = ev.get("escalate")
        if isinstance(escalate, dict) and escalate.get("attack") and ev.get("checks", True):
            attacks += (
                f"; a run its checks flag is attacked again with {escalate['attack']}"
                f"{_params(escalate.get('params'))} (the lower robust accuracy is reported)"
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


def run_counts(data: StudyData) -> str:
    """``"<n> (<k> done, <m> failed)"``: the study's runs, counted by status."""
    status = Counter(str(s) for s in data.runs["status"]) if len(data.runs) else Counter()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items())) or "none"
    return f"{len(data.runs)} ({counts})"


def header_html(data: StudyData, now: _dt.datetime, nav: Sequence[tuple[str, str]]) -> str:
    """The ``<header>``: study name and description, the spec, run counts by status, dates,
    provenance, the runs not finished (first line of their errors) and ``nav`` — the
    ``(id, title)`` of each section on the page, in order."""
    spec = data.spec
    rows = spec_rows(spec)
    rows.append(("runs", run_counts(data)))
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
                shown["error"] = [error_line(e) for e in shown["error"]]
            parts.append(
                "<p>Runs not finished (left out of the figures and findings):</p>"
                + table_html(shown, index=False)
            )
    parts.append(nav_html(nav) + "</header>")
    return "".join(parts)
