"""The study report: figures, findings and one self-contained HTML file.

``write_report(study_dir)`` reads the study's results store and writes
``report.html`` (figures embedded) and ``figures/*.png`` beside it.
"""

from __future__ import annotations

from robustscope.report.build import StudyData, load_study, write_report
from robustscope.report.findings import Finding, compute_findings

__all__ = ["Finding", "StudyData", "compute_findings", "load_study", "write_report"]
