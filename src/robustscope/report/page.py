"""HTML pieces of the report and the comparison page: escaping, number formatting, tables,
figures, findings, sections, contents, and the page itself (inline CSS, no script, no external
resource). The CSS keeps the page readable at a phone's width: wide tables scroll sideways
inside their ``.scroll`` box, the header's table and the Findings table become stacked
blocks.

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
    "findings_table",
    "fmt",
    "nav_html",
    "section_html",
    "skip_html",
    "table_html",
    "verdict_cell",
    "verdict_html",
]

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
max-width:1180px;margin:1.5em auto;padding:0 1.2em;color:#1d1d1f;line-height:1.45;background:#fff;
overflow-wrap:break-word}
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
table.meta td{overflow-wrap:anywhere}
figure{margin:1.2em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;margin-top:.3em}
.yes{color:#0a6e31;font-weight:700}.no{color:#b42318;font-weight:700}.na{color:#6e6e73}.maybe{color:#9a6700;font-weight:700}
p.skip{color:#6e6e73;font-style:italic}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
table.findings details{margin:0}table.findings summary{font-weight:400;color:#444}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:-.1em;margin-right:.3em}
tr.differs td:first-child{border-left:3px solid #9a6700}
footer{margin-top:3em;color:#888;font-size:.8em}
@media (max-width:640px){
body{margin:.8em auto;padding:0 .75em}
h1{font-size:1.5em}
nav ol{columns:1;padding-left:1.4em}
table.meta,table.meta tbody,table.meta tr,table.meta th,table.meta td{display:block}
table.meta th{padding-top:.4em}
table.findings,table.findings tbody,table.findings tr,table.findings td{display:block;width:auto}
table.findings thead{display:none}
table.findings tr{border:1px solid #dcdce2;border-radius:4px;margin:.7em 0;padding:.35em .6em}
table.findings td{border:none;padding:.15em 0;text-align:left}
table.findings td:first-child{font-weight:600}
table.findings td[data-label]::before{content:attr(data-label) ": ";color:#555;font-weight:400}
tr.differs td:first-child{border-left:none}
tr.differs{border-left:3px solid #9a6700}
}
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


def verdict_html(v: Verdict) -> str:
    """A verdict as the page prints it (coloured by :data:`VERDICT_CLASS`)."""
    return f'<span class="{VERDICT_CLASS[v]}">{esc(str(v))}</span>'


def verdict_cell(v: Verdict, label: str = "verdict") -> str:
    """A Findings table's verdict cell; ``label`` names it when the table is stacked (narrow
    screens)."""
    return f'<td class="l verdict" data-label="{esc(label)}">{verdict_html(v)}</td>'


def findings_table(head: Iterable[str], rows: Iterable[str]) -> str:
    """A Findings table (``class="findings"``): its column names and its ``<tr>`` rows. On a
    narrow screen each row is a block of its cells (each named by its ``data-label``)."""
    heads = "".join(f'<th class="l">{esc(h)}</th>' for h in head)
    return (
        f'<div class="scroll"><table class="findings"><thead><tr>{heads}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


def findings_html(findings: Iterable[Finding]) -> str:
    """The report's Findings table: claim, source, verdict and evidence of each claim."""
    rows = [
        "<tr>"
        f'<td class="l claim">{esc(f.claim)}</td>'
        f'<td class="l" data-label="source">{esc(f.paper)}</td>'
        f"{verdict_cell(f.verdict)}"
        f'<td class="l" data-label="evidence">{esc(f.evidence)}</td>'
        "</tr>"
        for f in findings
    ]
    return findings_table(("claim", "source", "verdict", "evidence"), rows)


def nav_html(items: Iterable[tuple[str, str]]) -> str:
    """The contents: a link to each ``(id, title)`` of the page, in order."""
    links = "".join(f'<li><a href="#{esc(sid)}">{esc(title)}</a></li>' for sid, title in items)
    return f"<nav><ol>{links}</ol></nav>"


def section_html(sid: str, title: str, content: str) -> str:
    """One ``<section>`` of the page: its anchor ``sid`` (what :func:`nav_html` links to), its
    heading and its content."""
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{content}</section>'


def document(title: str, body: str) -> str:
    """The whole page: one file, inline CSS, no script, no external resource."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
