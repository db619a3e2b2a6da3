"""The study report: figures, findings and one self-contained HTML file.

``write_report(study_dir)`` reads the study's results store (:func:`load_study`) into a
:class:`StudyData` and writes ``report.html`` (figures embedded, inline CSS, no script)
and ``figures/*.png`` beside it; ``summary_rows`` gives ``robustscope show`` its table;
``compute_findings`` checks the source papers' claims on the study's numbers.
"""

from __future__ import annotations

from robustscope.report.build import write_report
from robustscope.report.data import StudyData, load_study
from robustscope.report.findings import Finding, compute_findings
from robustscope.report.summary import Summary, summarize, summary_rows

__all__ = [
    "Finding",
    "StudyData",
    "Summary",
    "compute_findings",
    "load_study",
    "summarize",
    "summary_rows",
    "write_report",
]
