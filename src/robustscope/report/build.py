"""``write_report``: the study's ``report.html`` (one self-contained file) and its PNGs.

The page is the header (what was run, budgets, provenance, run status, contents) followed
by the registered sections (:mod:`robustscope.report.section`) in their order; this module
knows no section by name. For each section that applies to the study, its figures (those
drawn) come first, then its HTML; an empty body becomes the section's "not measured"
note, and before any run finished a section that needs runs shows "No finished run yet" ("No
finished run trained" when every finished run collapsed).
Figures are written to ``<study>/figures/<name>.png`` (the folder is the report's: stale
PNGs are removed) and embedded in the HTML as ``data:`` URIs; the page has inline CSS and
no script.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path

from matplotlib.figure import Figure

from robustscope.io import write_bytes
from robustscope.report.data import StudyData, load_study
from robustscope.report.header import header_html
from robustscope.report.page import (
    FigureRecord,
    document,
    figure_html,
    section_html,
    skip_html,
)
from robustscope.report.section import ReportContext, ReportError, Section, ordered_sections
from robustscope.report.style import png_bytes

__all__ = ["add_figure", "render", "write_page", "write_report"]

FOOTER = (
    "<footer>Written by robustscope (robustscope report). Figures are embedded; the "
    "same PNGs are in figures/ beside this file.</footer>"
)


def add_figure(
    figures: list[FigureRecord],
    name: str,
    figure: Figure,
    caption: str,
    *,
    owner: str,
    page: str = "report",
) -> str:
    """Encode ``figure`` as the figure ``name`` of the ``page`` (characters other than letters,
    digits, ``_.-`` become ``_``), append it to ``figures`` and return its HTML. A name already
    on the page is refused (:class:`ReportError`, naming ``owner``, what drew it)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if any(rec.name == name for rec in figures):
        raise ReportError(
            f"{owner}: a figure named {name!r} is already in the {page}; give each figure its "
            "own name"
        )
    rec = FigureRecord(name, caption, png_bytes(figure))
    figures.append(rec)
    return figure_html(rec)


def _section_html(section: Section, ctx: ReportContext, figures: list[FigureRecord]) -> str:
    """One ``<section>``; the figures it drew are appended to ``figures``."""
    if section.needs_runs and not len(ctx.table):
        none = "No finished run yet" if not ctx.data.done_ids() else "No finished run trained"
        content = skip_html(f"{none}: nothing to show.")
    else:
        parts = [
            add_figure(
                figures, drawn.name, drawn.figure, drawn.caption, owner=f"section {section.id!r}"
            )
            for drawn in section.figures(ctx)
            if drawn.figure is not None
        ]
        parts.append(section.html(ctx))
        content = "".join(parts) or skip_html(section.missing(ctx))
    return section_html(section.id, section.title, content)


def render(ctx: ReportContext, now: _dt.datetime) -> tuple[str, list[FigureRecord]]:
    """The page's HTML body and its figures, from every registered section that applies."""
    shown = [s for s in ordered_sections() if s.applies(ctx)]
    figures: list[FigureRecord] = []
    parts = [header_html(ctx.data, now, [(s.id, s.title) for s in shown])]
    parts.extend(_section_html(s, ctx, figures) for s in shown)
    parts.append(FOOTER)
    return "".join(parts), figures


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
    now = _dt.datetime.now().astimezone()
    body, records = render(ReportContext(data, eval_eps), now)
    return write_page(study_dir / "report.html", f"{data.name} — robustscope report", body, records)


def write_page(path: Path, title: str, body: str, records: list[FigureRecord]) -> Path:
    """Write the page (:func:`~robustscope.report.page.document` of ``title`` and ``body``) at
    ``path`` and each figure of ``records`` as ``<path's folder>/figures/<name>.png``. The
    figures folder is the page's own: PNGs no record names are removed. Returns ``path``."""
    figures = path.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    keep = {f"{rec.name}.png" for rec in records}
    for old in figures.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    for rec in records:
        write_bytes(figures / f"{rec.name}.png", rec.png)
    write_bytes(path, document(title, body).encode("utf-8"))
    return path
