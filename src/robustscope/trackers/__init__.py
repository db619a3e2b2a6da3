"""Experiment trackers: a study in MLflow, a run's history in TensorBoard. Optional extras,
used only when asked (``robustscope study --mlflow``, ``--tensorboard DIR``; ``robustscope
train --tensorboard DIR``); importing this package imports neither library.

* :class:`MlflowTracker` (``pip install 'robustscope[mlflow]'``) — the study as a parent run,
  each of its runs a nested child run with its configuration as parameters, its history per
  epoch and its attack and probe results as metrics; the report and figures as artifacts of
  the parent (:mod:`~robustscope.trackers.mlflow_tracker`).
* :class:`TensorBoardWriter` (``pip install 'robustscope[tensorboard]'``) — an epoch callback
  of training writing each history row's numbers as scalars; :class:`TensorBoardStudyTracker`
  — each run of a study in its own subdirectory
  (:mod:`~robustscope.trackers.tensorboard_tracker`).

The study trackers follow :class:`robustscope.studies.runner.StudyTracker`: the study driver
(never a worker) calls ``start`` and ``record``; their owner calls ``finish`` (or ``abort``)
after the report is written. Without one of the packages, creating its tracker raises a
:class:`TrackerError` naming the extra to install.
"""

from __future__ import annotations

from robustscope.trackers.common import TrackerError, require
from robustscope.trackers.mlflow_tracker import MlflowTracker, resolve_uri
from robustscope.trackers.tensorboard_tracker import TensorBoardStudyTracker, TensorBoardWriter

__all__ = [
    "MlflowTracker",
    "TensorBoardStudyTracker",
    "TensorBoardWriter",
    "TrackerError",
    "require",
    "resolve_uri",
]
