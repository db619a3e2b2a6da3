"""HTML pieces of the report: escaping, number formatting, tables, figures, findings, and
the page itself (inline CSS, no script, no external resource).

Every piece of text that comes from data (labels, spec strings, column names, errors) goes
through :func:`esc`; the markup is closed explicitly everywhere so that the page parses as
well-formed.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from robustscope.report.evidence import Verdict
from robustscope.report.findings import Finding

__all__ = [
    "FigureRecord",
    "document",
    "error_line",
    "esc",
    "figure_html",
    "findings_html",
    "fmt",
    "skip_html",
    "table_html",
]

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
max-width:1180px;margin:1.5em auto;padding:0 1.2em;color:#1d1d1f;line-height:1.45;background:#fff}
h1{margin:.2em 0 .1em;font-size:1.9em}
h2{border-bottom:2px solid #e3e3e8;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}
p.desc{font-size:1.05em;color:#333;margin-top:.3em}
nav ol{columns:2;margin:.4em 0 0 0}
table{border-collapse:collapse;font-size:.84em;margin:.6em 0}
.scroll{overflow-x:auto;max-width:100%}
td,th{border:1px solid #dcdce2;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f6;font-weight:600}
td.l,th.l{text-align:left}
table.meta td,table.meta th{text-align:left;border:none;padding:2px 12px 2px 0}
table.meta th{background:none;color:#555;white-space:nowrap}
figure{margin:1.2em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
.yes{color:#0a6e31;font-weight:700}.no{color:#b42318;font-weight:700}.na{color:#6e6e73}.maybe{color:#9a6700;font-weight:700}
p.skip{color:#6e6e73;font-style:italic}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
footer{margin-top:3em;color:#888;font-size:.8em}
"""


def esc(value: Any) -> str:
    """HTML-escaped text (quotes included)."""
    return html.escape(str(value), quote=True)


def error_line(error: Any) -> str:
    """The first line of a run's error, at most 200 characters ('' when there is none)."""
    if not isinstance(error, str):
        return ""
    return (error.splitlines() or [""])[0][:200]


def fmt(value: Any) -> str:
    """A cell's text: 4 significant digits for floats, empty for NaN/None."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return ""
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return str(value)


def table_html(df: pd.DataFrame, *, index: bool = True, index_label: str = "") -> str:
    """A plain HTML table (numbers right-aligned, text left-aligned), every cell escaped."""
    head = []
    if index:
        head.append(f'<th class="l">{esc(index_label or df.index.name or "")}</th>')
    for j, c in enumerate(df.columns):
        numeric = pd.api.types.is_numeric_dtype(df.iloc[:, j]) and not pd.api.types.is_bool_dtype(
            df.iloc[:, j]
        )
        head.append(f"<th>{esc(c)}</th>" if numeric else f'<th class="l">{esc(c)}</th>')
    rows = []
    for idx, row in zip(df.index, df.itertuples(index=False), strict=True):
        cells = [f'<th class="l">{esc(idx)}</th>'] if index else []
        for v in row:
            is_num = isinstance(v, int | float | np.integer | np.floating) and not isinstance(
                v, bool
            )
            cls = "" if is_num else ' class="l"'
            cells.append(f"<td{cls}>{esc(fmt(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


@dataclass(frozen=True)
class FigureRecord:
    """One figure of the report: file stem, caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


def figure_html(fig: FigureRecord) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="fig-{esc(fig.name)}">'
        f'<img alt="{esc(fig.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(fig.caption)} "
        f'<span class="na">(figures/{esc(fig.name)}.png)</span></figcaption></figure>'
    )


def skip_html(reason: str) -> str:
    return f'<p class="skip">{esc(reason)}</p>'


#: the CSS class of each verdict in the Findings table
VERDICT_CLASS = {
    Verdict.HOLDS: "yes",
    Verdict.FAILS: "no",
    Verdict.INCONCLUSIVE: "maybe",
    Verdict.UNTESTED: "na",
}


def _verdict(v: Verdict) -> str:
    return f'<span class="{VERDICT_CLASS[v]}">{esc(str(v))}</span>'


def findings_html(findings: Iterable[Finding]) -> str:
    rows = [
        "<tr>"
        f'<td class="l">{esc(f.claim)}</td>'
        f'<td class="l">{esc(f.paper)}</td>'
        f'<td class="l">{_verdict(f.verdict)}</td>'
        f'<td class="l">{esc(f.evidence)}</td>'
        "</tr>"
        for f in findings
    ]
    return (
        '<div class="scroll"><table class="findings"><thead><tr>'
        '<th class="l">claim</th><th class="l">source</th><th class="l">verdict</th>'
        '<th class="l">evidence</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"
    )


def document(title: str, body: str) -> str:
    """The whole page: one file, inline CSS, no script, no external resource."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
