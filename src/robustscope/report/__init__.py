"""The study report: figures, findings and one self-contained HTML file.

``write_report(study_dir)`` reads the study's results store (:func:`load_study`) into a
:class:`StudyData` and writes ``report.html`` (figures embedded, inline CSS, no script)
and ``figures/*.png`` beside it; ``summarize`` gives ``robustscope show`` its table;
``compute_findings`` checks the source papers' claims on the study's numbers.

The page is assembled from registered sections (:class:`Section`, :func:`register_section`,
one module per paper or capability in :mod:`robustscope.report.sections`), each with its
figures and its Findings; importing this package registers the built-in ones.
"""

from __future__ import annotations

from robustscope.report import sections as _sections  # registers the built-in sections
from robustscope.report.build import write_report
from robustscope.report.data import StudyData, load_study
from robustscope.report.findings import Finding
from robustscope.report.section import (
    SECTIONS,
    ReportContext,
    ReportError,
    Section,
    SectionFigure,
    compute_findings,
    register_section,
)
from robustscope.report.summary import Summary, summarize, summary_rows

__all__ = [
    "SECTIONS",
    "Finding",
    "ReportContext",
    "ReportError",
    "Section",
    "SectionFigure",
    "StudyData",
    "Summary",
    "compute_findings",
    "load_study",
    "register_section",
    "summarize",
    "summary_rows",
    "write_report",
]

del _sections
