"""The store's vocabulary: every name a results store uses, in one place.

Table and column names, run statuses, metric names (``clean_accuracy``, ``train/<key>``,
``train_time_s``), attack-result quantities, how an evaluated attack is labelled, how ε
values are compared, and the display names of the wide views. Everything that writes or
reads a store (the study executor and recorder, the report, the CLI) imports its names from
here; ``docs/store.md`` documents them.

The one parser of metric-name strings is :func:`parse_legacy_metric`: version-2 stores kept
robust accuracies and gradient-masking flags in metric names
(``pgd-linf/0.1/robust_accuracy``, ``pgd-linf/flag/zero_gradients``), and only the v2 → v3
migration reads them back.

Example:
    >>> attack_label("cw-linf", "linf")
    'cw-linf-linf'
    >>> attack_column("pgd-linf", 8 / 255, ROBUST_ACCURACY)
    'pgd-linf/0.0313725/robust_accuracy'
    >>> find_eps(0.0313725, [0.0, 8 / 255, 0.1])  # the %g-rounded value finds the exact one
    0.03137254901960784
    >>> parse_legacy_metric("cw-linf-linf/0.05/robust_accuracy_on_correct")
    LegacyAttackMetric(label='cw-linf-linf', eps=0.05, quantity='robust_accuracy_on_correct')
    >>> parse_legacy_metric("train/test_accuracy") is None
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ARTIFACTS_DIR",
    "ATTACK_FLAG_COLUMNS",
    "ATTACK_RESULT_COLUMNS",
    "CLEAN_ACCURACY",
    "COLLAPSED",
    "EPS_ABS_TOL",
    "EPS_REL_TOL",
    "ESCALATES",
    "FORMAT",
    "HEALTH",
    "HEALTHY",
    "HEALTH_COLUMNS",
    "HEALTH_FIX",
    "HEALTH_REASON",
    "HEALTH_STATUSES",
    "LOADED",
    "LOADED_FROM",
    "MEASURE_HASH_KEY",
    "NORMS",
    "POINTS_PROBE",
    "POSTHOC_PROBE",
    "QUANTITIES",
    "ROBUST_ACCURACY",
    "ROBUST_ACCURACY_ON_CORRECT",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_FILE",
    "TABLES",
    "TRAIN_PREFIX",
    "TRAIN_SIZE",
    "TRAIN_TIME_S",
    "LegacyAttackMetric",
    "LegacyFlagMetric",
    "attack_column",
    "attack_label",
    "canonical_params",
    "escalation_label",
    "find_eps",
    "flag_column",
    "format_eps",
    "parse_legacy_metric",
    "same_eps",
    "train_metric",
]

# --- the file ---------------------------------------------------------------------------------

#: ``PRAGMA user_version`` of the schema this code writes
SCHEMA_VERSION = 4
#: ``meta.format`` of every robustscope store
FORMAT = "robustscope-results-store"
#: the database's file name inside a study directory
STORE_FILE = "results.sqlite"
#: the folder of probe arrays, beside the database
ARTIFACTS_DIR = "artifacts"
#: the values of ``runs.status``
STATUSES = ("pending", "running", "done", "failed")
#: the tables of a version-3 (and 4) store (``docs/store.md`` documents each)
TABLES = (
    "meta", "studies", "runs", "history", "metrics", "probes", "artifacts", "provenance",
    "attack_results", "attack_flags", "claims",
)  # fmt: skip

# --- metric names (table ``metrics``) ----------------------------------------------------------

#: accuracy on the first ``evaluation.n`` test points
CLEAN_ACCURACY = "clean_accuracy"
#: summed training time of the epochs (seconds)
TRAIN_TIME_S = "train_time_s"
#: prefix of the last epoch's history values (``train/test_accuracy``)
TRAIN_PREFIX = "train/"
#: column of the run tables (``Store.runs_table()``, the report's ``StudyData.runs``): the
#: training-set size of a run, its training configuration's ``train_subset`` (the first N
#: training examples; a study's ``train_sizes`` axis sets it per run); NaN: the whole split
TRAIN_SIZE = "train_size"
#: key of a run's ``config`` JSON holding the hash of the settings it was measured with
MEASURE_HASH_KEY = "measure_hash"
#: key of a run's ``config`` JSON describing the checkpoint a loaded run measured (``path``,
#: ``sha256``, ``dataset``, ``transforms``: :mod:`robustscope.studies.loaded`); absent for a
#: run the study trained
LOADED = "loaded"
#: column of the run tables: the checkpoint file a loaded run measured (None: trained by the
#: study, with a training history)
LOADED_FROM = "loaded_from"
#: the probe name under which a run's post-hoc sweep (a spec's ``posthoc``) is stored: its
#: arrays are those of :class:`robustscope.posthoc.sweep.SweepResult` (``array_key``)
POSTHOC_PROBE = "posthoc"

#: the probe name under which a run's per-test-point evaluation is stored (no scalars):
#: ``clean`` ([n] bool, correctly classified clean) and, per evaluation label, ``<label>``
#: ([E, n] bool, still correct under the attack at ε) with ``<label>/eps`` ([E] its ε) —
#: what the report's bootstrap intervals resample (:mod:`robustscope.report.evidence`)
POINTS_PROBE = "points"

# --- run health (columns of ``runs``; the rule is robustscope.studies.health) ------------------

#: column of ``runs``: whether the run trained — :data:`HEALTHY`, :data:`COLLAPSED`, or NULL
#: (not assessed: a run not measured yet, or stored before schema 4)
HEALTH = "health"
#: column of ``runs``: why the run collapsed, with the numbers (NULL when healthy)
HEALTH_REASON = "health_reason"
#: column of ``runs``: what would likely make it train (NULL when healthy)
HEALTH_FIX = "health_fix"
#: the three health columns, in the order of the run tables
HEALTH_COLUMNS = (HEALTH, HEALTH_REASON, HEALTH_FIX)
#: ``runs.health`` of a run that trained
HEALTHY = "ok"
#: ``runs.health`` of a run that failed to train: no evidence for or against any claim
COLLAPSED = "collapsed"
#: the values of ``runs.health`` (besides NULL)
HEALTH_STATUSES = (HEALTHY, COLLAPSED)


def train_metric(key: str) -> str:
    """The metric name of the last epoch's history value ``key`` (``train/<key>``)."""
    return f"{TRAIN_PREFIX}{key}"


# --- attack results (tables ``attack_results`` and ``attack_flags``) ---------------------------

#: robust accuracy over **all** evaluated points
ROBUST_ACCURACY = "robust_accuracy"
#: robust accuracy over the points correctly classified clean (wen2020 §D.2)
ROBUST_ACCURACY_ON_CORRECT = "robust_accuracy_on_correct"
#: the quantities an attack result row may hold
QUANTITIES = (ROBUST_ACCURACY, ROBUST_ACCURACY_ON_CORRECT)
#: the threat models' norms
NORMS = ("linf", "l2")
#: columns of ``attack_results`` (and of ``Store.attack_results_long()``)
ATTACK_RESULT_COLUMNS = (
    "run_id", "label", "attack", "norm", "params", "attack_eps", "quantity", "value", "n",
    "escalates",
)  # fmt: skip
#: column of ``attack_results``: the label of the evaluation this result escalates (the same
#: ε and norm re-attacked with the spec's ``evaluation.escalate`` attack after a
#: gradient-masking flag fired on it); NULL for the spec's own evaluations
ESCALATES = "escalates"
#: columns of ``attack_flags`` (and of ``Store.attack_flags_long()``)
ATTACK_FLAG_COLUMNS = ("run_id", "label", "flag", "message", "value")

#: ε values that agree to this relative tolerance are the same ε: it absorbs the six
#: significant digits of ``%g`` (v2 metric names, user input such as ``0.0313725`` for 8/255)
EPS_REL_TOL = 1e-5
#: absolute tolerance of the ε comparison (for ε = 0)
EPS_ABS_TOL = 1e-12


def attack_label(attack: str, norm: str, label: str | None = None) -> str:
    """The study's name of one evaluated attack: its spec ``label``, else ``<attack>-<norm>``."""
    return label or f"{attack}-{norm}"


def escalation_label(label: str, attack: str) -> str:
    """The label of the escalated evaluation of ``label`` by ``attack``: ``<label>+<attack>``.

    Example:
        >>> escalation_label("pgd-linf", "autoattack")
        'pgd-linf+autoattack'
    """
    return f"{label}+{attack}"


def canonical_params(params: Mapping[str, Any]) -> str:
    """Attack parameters as canonical JSON (sorted keys, no spaces): equal settings give
    equal text, so SQL can compare them.

    Example:
        >>> canonical_params({"steps": 20, "restarts": 1})
        '{"restarts":1,"steps":20}'
    """
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"))


def same_eps(a: float, b: float) -> bool:
    """Whether two ε are the same up to :data:`EPS_REL_TOL` (and :data:`EPS_ABS_TOL`)."""
    return math.isclose(float(a), float(b), rel_tol=EPS_REL_TOL, abs_tol=EPS_ABS_TOL)


def find_eps(eps: float, candidates: Iterable[float]) -> float | None:
    """The first of ``candidates`` that is the same ε as ``eps`` (:func:`same_eps`), or None."""
    for c in candidates:
        if same_eps(c, eps):
            return c
    return None


def format_eps(eps: float) -> str:
    """ε for display: ``%g`` (six significant digits; ``8/255`` → ``0.0313725``)."""
    return f"{float(eps):g}"


def attack_column(label: str, eps: float, quantity: str) -> str:
    """The display name of one attack result in the wide per-run views and the report's
    tables, ``<label>/<ε:g>/<quantity>``. It is a name only: the views carry the label, ε
    and quantity of each column as data and nothing ever parses it back."""
    return f"{label}/{format_eps(eps)}/{quantity}"


def flag_column(label: str, flag: str) -> str:
    """The display name of one gradient-masking flag in the wide views, ``<label>/flag/<flag>``."""
    return f"{label}/flag/{flag}"


# --- the v2 metric names (read by the v2 → v3 migration only) ----------------------------------


@dataclass(frozen=True)
class LegacyAttackMetric:
    """A v2 metric ``<label>/<ε:g>/<quantity>``; ``eps`` as parsed (six significant digits)."""

    label: str
    eps: float
    quantity: str


@dataclass(frozen=True)
class LegacyFlagMetric:
    """A v2 metric ``<label>/flag/<flag>`` (value 1: the warning was raised)."""

    label: str
    flag: str


def parse_legacy_metric(name: str) -> LegacyAttackMetric | LegacyFlagMetric | None:
    """Read a version-2 metric name back into its parts; None for every other metric.

    Only the v2 → v3 migration calls this. ``train/…`` names are never attack results; the
    label may itself contain ``/`` (the last two components are ε and the quantity).
    """
    if name.startswith(TRAIN_PREFIX):
        return None
    parts = name.rsplit("/", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    label, middle, last = parts
    if middle == "flag" and last:
        return LegacyFlagMetric(label, last)
    if last not in QUANTITIES:
        return None
    try:
        eps = float(middle)
    except ValueError:
        return None
    if not (math.isfinite(eps) and eps >= 0):
        return None
    return LegacyAttackMetric(label, eps, last)
