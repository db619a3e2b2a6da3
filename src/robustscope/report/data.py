"""What the report reads: :class:`StudyData`, built from a study's results store or by hand.

The report never opens the store itself; it draws from a :class:`StudyData` — the study's
spec, six pandas tables (runs, metrics, attack results, attack flags, per-epoch history,
probe scalars) plus a callable giving the stored probe arrays. :func:`load_study` fills one
from ``<study>/results.sqlite``; tests build one with :meth:`StudyData.from_frames`.

Column conventions (names from :mod:`robustscope.studies.store.vocab`):

* ``runs``: ``run_id, label, model, method, family, eps, norm, train_size, seed, status,
  train_time_s`` (``error`` and ``health, health_reason, health_fix`` optional) — one row per
  run, whatever its status; ``train_size``
  (:data:`~robustscope.studies.store.vocab.TRAIN_SIZE`) is the run's ``train_subset``, NaN
  for the whole training split; ``health`` is the store's mark of whether the run trained
  (:mod:`robustscope.studies.health`; None: not assessed); ``loaded_from`` (optional) is the
  checkpoint file a run loaded instead of training (:mod:`robustscope.studies.loaded`): such
  a run has no history, and one the lab did not train has no training ε (NaN);
* ``metrics`` (index ``run_id``): ``clean_accuracy``, ``train/<history key>``,
  ``train_time_s``;
* ``attacks``: the long attack results (``Store.attack_results_long()``: ``run_id, label,
  attack, norm, params, attack_eps, quantity, value, n, escalates``; rows with ``escalates``
  are a flagged evaluation re-attacked with the spec's ``evaluation.escalate`` attack);
* ``flags``: the long gradient-masking flags (``run_id, label, flag, message, value``);
* ``history``: ``run_id, epoch`` and every history key (``test_accuracy``,
  ``track/test/input_fisher_frobenius_mean``, ...);
* ``probes`` (index ``run_id``): ``<probe>/<scalar key>``;
* ``array(run_id, probe, key)``: e.g. ``("…", "margins", "test/margin_hist")``.

:meth:`StudyData.table` joins the runs with their metrics, probe scalars and the wide attack
results and flags; :meth:`StudyData.robust_columns` and :meth:`StudyData.flag_columns`
describe those wide columns (label, ε, quantity) as data.

Two rules of evidence are applied here, once, for every section:

* **collapsed runs are left out.** :meth:`StudyData.health` is each run's health: the
  store's mark, or for a run the store has not assessed (stored before schema 4, or built by
  hand) the same rule (:func:`robustscope.studies.health.assess`) applied to its clean
  accuracy and history. :meth:`StudyData.table` — what every figure and Finding reads — holds
  only the runs that trained; :meth:`StudyData.collapsed` lists the others for the checks
  section;
* **escalated evaluations give the lower figure.** Where a gradient-masking flag made the
  study re-attack an evaluation with its ``evaluation.escalate`` attack, the evaluation's
  robust accuracy at each ε is the lower of the two
  (:func:`robustscope.studies.store.views.fold_escalations`); :meth:`StudyData.escalations`
  lists both figures.

Example::

    data = StudyData.from_frames(spec={"name": "s"}, runs=runs_df, metrics=metrics_df,
                                 attacks=attack_results_long_df)
    table = data.table()          # finished runs joined with their metrics and probes
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustscope.errors import RobustscopeError
from robustscope.report.evidence import Samples
from robustscope.studies import health as run_health
from robustscope.studies.spec import AttackEval
from robustscope.studies.store import views
from robustscope.studies.store.views import AttackColumn, FlagColumn
from robustscope.studies.store.vocab import (
    CLEAN_ACCURACY,
    COLLAPSED,
    ESCALATES,
    HEALTH,
    HEALTH_COLUMNS,
    LOADED_FROM,
    POINTS_PROBE,
    ROBUST_ACCURACY,
    ROBUST_ACCURACY_ON_CORRECT,
    TRAIN_SIZE,
    find_eps,
)

__all__ = [
    "NO_EPS",
    "NO_HISTORY",
    "RUN_COLUMNS",
    "ArrayLoader",
    "AttackColumn",
    "FlagColumn",
    "StudyData",
    "attack_key",
    "eval_n",
    "load_study",
    "natural_key",
    "num_classes",
]

#: the columns of :attr:`StudyData.runs` (``error`` is optional)
RUN_COLUMNS = (
    "run_id",
    "label",
    "model",
    "method",
    "family",
    "eps",
    "norm",
    TRAIN_SIZE,
    "seed",
    "status",
    "train_time_s",
)

ArrayLoader = Callable[[str, str, str], "np.ndarray | None"]

#: what a section that reads training histories says when the study's models were loaded
NO_HISTORY = "no training history: the models were loaded from checkpoints"
#: what a section drawn along the training ε says when no model of the study has one
NO_EPS = (
    "drawn against the training ε, which no model of this study has (they were loaded from "
    "checkpoints the lab did not train); their probe scalars are in the tables further down"
)


def _no_arrays(run_id: str, probe: str, key: str) -> np.ndarray | None:
    return None


def _missing(value: Any) -> bool:
    """None or NaN (a NULL read from the store)."""
    return value is None or (isinstance(value, float) and value != value)


def num_classes(spec: dict[str, Any]) -> int | None:
    """K, the number of classes of the study's dataset; None when the dataset is unknown here."""
    from robustscope import data

    try:
        return int(data.info(str(spec.get("dataset"))).num_classes)
    except Exception:  # an unregistered dataset: no chance level to compare with
        return None


def eval_n(spec: dict[str, Any]) -> int:
    """How many test points each run's evaluation measured (the spec's ``evaluation.n``)."""
    evaluation = spec.get("evaluation")
    return int(evaluation.get("n", 1000)) if isinstance(evaluation, dict) else 1000


def _indexed(df: pd.DataFrame | None) -> pd.DataFrame:
    """A copy indexed by ``run_id`` (a ``run_id`` column becomes the index)."""
    if df is None or (len(df) == 0 and len(df.columns) == 0):
        return pd.DataFrame(index=pd.Index([], name="run_id"))
    out = df.copy()
    if "run_id" in out.columns:
        out = out.set_index("run_id")
    out.index = out.index.astype(str)
    out.index.name = "run_id"
    out.columns = [str(c) for c in out.columns]
    return out


@dataclass
class StudyData:
    """Everything the report draws (see the module doc for the columns).

    Attributes:
        spec: the study spec as a dict (``name``, ``description``, ``reproduces``,
            ``dataset``, ``models``, ``methods``, ``seeds``, ``train``, ``evaluation``,
            ``probes``).
        runs: one row per run (columns :data:`RUN_COLUMNS`, ``error`` optional).
        metrics: index ``run_id``, one column per metric.
        attacks: the long attack results (one row per run × label × ε × quantity).
        flags: the long gradient-masking flags (one row per run × label × flag).
        history: one row per ``(run_id, epoch)``, one column per history key.
        probes: index ``run_id``, one column per ``<probe>/<key>`` scalar.
        array: ``(run_id, probe, key) → array or None`` for the stored probe arrays.
        provenance: versions, host and device (of the first finished run), if known.
        info: study-level facts from the store (``created``, ``updated`` as Unix times).
    """

    spec: dict[str, Any]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    history: pd.DataFrame
    probes: pd.DataFrame
    array: ArrayLoader = _no_arrays
    attacks: pd.DataFrame = field(default_factory=views.empty_attack_results)
    flags: pd.DataFrame = field(default_factory=views.empty_attack_flags)
    provenance: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _columns: dict[str, AttackColumn] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_frames(
        cls,
        spec: dict[str, Any] | None = None,
        runs: pd.DataFrame | list[dict[str, Any]] | None = None,
        metrics: pd.DataFrame | None = None,
        history: pd.DataFrame | None = None,
        probes: pd.DataFrame | None = None,
        arrays: ArrayLoader | dict[tuple[str, str, str], np.ndarray] | None = None,
        provenance: dict[str, str] | None = None,
        info: dict[str, Any] | None = None,
        attacks: pd.DataFrame | None = None,
        flags: pd.DataFrame | None = None,
    ) -> StudyData:
        """A :class:`StudyData` from plain frames, filling what is missing.

        ``runs`` may be a list of dicts; missing run columns get defaults (``label`` =
        run id, ``method``/``family`` = ``"standard"``/``method``, ``norm`` = ``"linf"``,
        ``seed`` = 0, ``status`` = ``"done"``, ``train_size`` = NaN). ``metrics``/``probes`` may carry ``run_id``
        as a column or as the index. ``arrays`` may be a dict keyed by
        ``(run_id, probe, key)``. ``attacks`` and ``flags`` are the long frames of the
        store (``Store.attack_results_long()``, ``Store.attack_flags_long()``).
        """
        rdf = pd.DataFrame(runs if runs is not None else [])
        if "run_id" not in rdf.columns:
            rdf["run_id"] = pd.Series(dtype=str)
        rdf["run_id"] = rdf["run_id"].astype(str)
        defaults: dict[str, Any] = {
            "model": "model",
            "method": "standard",
            "eps": 0.0,
            "norm": "linf",
            TRAIN_SIZE: math.nan,
            "seed": 0,
            "status": "done",
            "train_time_s": math.nan,
        }
        for col, value in defaults.items():
            if col not in rdf.columns:
                rdf[col] = value
        if "label" not in rdf.columns:
            rdf["label"] = rdf["run_id"]
        if "family" not in rdf.columns:
            rdf["family"] = rdf["method"]
        for col, value in (("model", "model"), ("method", "standard"), ("status", "done")):
            rdf[col] = rdf[col].fillna(value).astype(str)
        rdf["family"] = rdf["family"].fillna(rdf["method"]).astype(str)
        rdf["label"] = rdf["label"].fillna(rdf["run_id"]).astype(str)
        rdf["eps"] = pd.to_numeric(rdf["eps"], errors="coerce").astype(float)
        rdf[TRAIN_SIZE] = pd.to_numeric(rdf[TRAIN_SIZE], errors="coerce").astype(float)
        if callable(arrays):
            loader: ArrayLoader = arrays
        elif arrays:
            table = dict(arrays)

            def loader(run_id: str, probe: str, key: str) -> np.ndarray | None:
                return table.get((run_id, probe, key))
        else:
            loader = _no_arrays
        hist = history.copy() if history is not None else pd.DataFrame()
        if len(hist):
            hist["run_id"] = hist["run_id"].astype(str)
        return cls(
            spec=dict(spec or {}),
            runs=rdf,
            metrics=_indexed(metrics),
            history=hist,
            probes=_indexed(probes),
            array=loader,
            provenance=dict(provenance or {}),
            info=dict(info or {}),
            attacks=_long(attacks, views.empty_attack_results()),
            flags=_long(flags, views.empty_attack_flags()),
        )

    # --- views ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or "study")

    def done_ids(self) -> list[str]:
        """Ids of the finished runs (status ``done``; every run when there is no status)."""
        if not len(self.runs):
            return []
        if "status" not in self.runs.columns:
            return [str(r) for r in self.runs["run_id"]]
        return [str(r) for r in self.runs.loc[self.runs["status"] == "done", "run_id"]]

    def loaded_ids(self) -> list[str]:
        """Ids of the runs that loaded a checkpoint instead of training (column
        ``loaded_from``)."""
        if LOADED_FROM not in self.runs.columns or not len(self.runs):
            return []
        return [str(r) for r in self.runs.loc[self.runs[LOADED_FROM].notna(), "run_id"]]

    def historyless_ids(self) -> list[str]:
        """Ids of the loaded runs without a training history (an imported model, or a lab
        checkpoint away from its run directory's ``history.json``:
        :func:`robustscope.studies.loaded.training_history`)."""
        with_history = set(self.history["run_id"].astype(str)) if len(self.history) else set()
        return [r for r in self.loaded_ids() if r not in with_history]

    def no_history(self, run_ids: Any) -> str | None:
        """:data:`NO_HISTORY` when every run of ``run_ids`` (e.g. a table's index) was loaded
        from a checkpoint without its history, so no claim or figure over training epochs can
        be read; else None."""
        ids = [str(r) for r in run_ids]
        without = set(self.historyless_ids())
        return NO_HISTORY if ids and all(r in without for r in ids) else None

    def health(self) -> pd.DataFrame:
        """Each finished run's health (index ``run_id``; columns ``health``, ``health_reason``,
        ``health_fix``): the store's mark, else — a run not assessed when it was recorded —
        :func:`robustscope.studies.health.assess` on its clean accuracy (on the spec's
        ``evaluation.n`` points, against the dataset's chance level) and its history. None
        where it cannot be told (no dataset known here)."""
        runs = _indexed(self.runs)
        runs = runs.loc[[r for r in self.done_ids() if r in runs.index]]
        out = pd.DataFrame(
            {
                c: [None if _missing(v) else v for v in runs[c]]
                if c in runs.columns
                else [None] * len(runs)
                for c in HEALTH_COLUMNS
            },
            index=runs.index,
            dtype=object,
        )
        todo = [rid for rid in out.index if out.at[rid, HEALTH] is None]
        if not todo:
            return out
        classes, n = num_classes(self.spec), eval_n(self.spec)
        params = {
            str(m.get("method")): m.get("params") or {}
            for m in self.spec.get("methods") or []
            if isinstance(m, dict)
        }
        hist = self.history
        for rid in todo:
            acc = (
                self.metrics.at[rid, CLEAN_ACCURACY]
                if rid in self.metrics.index and CLEAN_ACCURACY in self.metrics.columns
                else None
            )
            rows = (
                hist[hist["run_id"] == rid].sort_values("epoch").to_dict("records")
                if len(hist) and "epoch" in hist.columns
                else []
            )
            method = str(runs.at[rid, "method"])
            found = run_health.assess(
                clean_accuracy=acc,
                n=n,
                classes=classes,
                history=rows,
                method=method,
                eps=float(runs.at[rid, "eps"]),
                method_params=params.get(method),
            )
            if classes is not None:
                out.loc[rid, list(HEALTH_COLUMNS)] = [found.status, found.reason, found.fix]
        return out

    def collapsed(self) -> pd.DataFrame:
        """The finished runs that failed to train (:meth:`health`), with their ``label``,
        ``health_reason`` and ``health_fix`` (index ``run_id``, the runs' order)."""
        health = self.health()
        ids = [rid for rid in health.index if health.at[rid, HEALTH] == COLLAPSED]
        runs = _indexed(self.runs)
        return runs.loc[ids, ["label"]].join(health)

    def effective_attacks(self) -> pd.DataFrame:
        """The long attack results the study reports: every escalated evaluation folded into
        the evaluation it escalates, at the lower figure per ε
        (:func:`~robustscope.studies.store.views.fold_escalations`)."""
        return views.fold_escalations(self.attacks)

    def escalations(self) -> pd.DataFrame:
        """Every escalated evaluation with both figures per ε
        (:func:`~robustscope.studies.store.views.escalations`)."""
        return views.escalations(self.attacks)

    def table(self) -> pd.DataFrame:
        """Finished runs that trained, joined with their metrics, wide attack results (at the
        lower figure where an evaluation was escalated), flags and probe scalars, index
        ``run_id``, sorted by model, family, ε, training-set size and seed. Failed and
        collapsed runs (:meth:`collapsed`) never enter figures or findings; the health
        columns say why each run is in."""
        runs = _indexed(self.runs)
        runs = runs.loc[[r for r in self.done_ids() if r in runs.index]]
        runs = runs.drop(columns=[c for c in ("error", *HEALTH_COLUMNS) if c in runs.columns])
        health = self.health()
        runs = runs.join(health)
        runs = runs[runs[HEALTH] != COLLAPSED]
        wide = [views.attack_results_wide(self.effective_attacks()), views.flags_wide(self.flags)]
        extra = [df for df in (self.metrics, *wide, self.probes) if len(df.columns)]
        for df in extra:
            cols = [c for c in df.columns if c not in runs.columns]
            runs = runs.join(df[cols], how="left")
        if len(runs):
            runs = runs.sort_values(["model", "family", "eps", TRAIN_SIZE, "seed"], kind="stable")
        return runs

    def robust_columns(self, *, on_correct: bool = False) -> list[AttackColumn]:
        """The robust-accuracy columns of :meth:`table` (over all points, or over the
        correctly classified ones), ordered by label, then ε."""
        quantity = ROBUST_ACCURACY_ON_CORRECT if on_correct else ROBUST_ACCURACY
        return views.attack_columns(self.effective_attacks(), quantity)

    def train_sizes(self) -> list[int]:
        """The distinct training-set sizes of the study's runs (any status), ascending; a
        study with a ``train_sizes`` axis has one per size, others at most one."""
        if TRAIN_SIZE not in self.runs.columns:
            return []
        return sorted({int(n) for n in self.runs[TRAIN_SIZE].dropna()})

    def flag_columns(self) -> list[FlagColumn]:
        """The gradient-masking flag columns of :meth:`table` (1.0 where raised)."""
        return views.flag_columns(self.flags)

    def points(self, run_id: str, column: str) -> Samples | None:
        """The per-test-point values behind ``column`` of run ``run_id`` in :meth:`table`
        (what :mod:`robustscope.report.evidence` resamples), None when the study did not
        store them:

        * ``clean_accuracy`` and the robust-accuracy columns: the evaluation's per-point
          correctness (:data:`~robustscope.studies.store.vocab.POINTS_PROBE`); over the
          correctly classified points, weighted by clean correctness;
        * a probe scalar ``<probe>/<x>_mean`` (``_median``, ``_qNN``) or
          ``<probe>/mean_<x>``: that statistic of the probe's per-example array ``<x>``.
        """
        if column == CLEAN_ACCURACY:
            clean = self.array(run_id, POINTS_PROBE, "clean")
            return None if clean is None else Samples(clean.astype(np.float64))
        if (c := self._attack_columns().get(column)) is not None:
            return self._attack_points(run_id, c)
        probe, _, key = column.partition("/")
        if not key or probe == POINTS_PROBE:
            return None
        for suffix in ("_mean", "_median"):
            if key.endswith(suffix):
                return self._probe_points(run_id, probe, key[: -len(suffix)], suffix[1:])
        if m := re.fullmatch(r"(.+)_q(\d\d)", key):
            return self._probe_points(run_id, probe, m.group(1), f"q{m.group(2)}")
        if key.startswith("mean_"):
            return self._probe_points(run_id, probe, key[len("mean_") :], "mean")
        return None

    def _attack_columns(self) -> dict[str, AttackColumn]:
        """The attack-result columns by name (computed once)."""
        if self._columns is None:
            self._columns = {c.column: c for c in views.attack_columns(self.attacks)}
        return self._columns

    def _attack_points(self, run_id: str, c: AttackColumn) -> Samples | None:
        """The evaluation's per-point correctness at ``c.eps`` — or, where the run was
        escalated, that of whichever evaluation gives the lower figure (the one the table
        reports, :func:`~robustscope.studies.store.views.fold_escalations`)."""
        labels = [c.label]
        if ESCALATES in self.attacks.columns:
            mine = self.attacks[
                (self.attacks["run_id"] == run_id) & (self.attacks[ESCALATES] == c.label)
            ]
            labels += sorted(set(mine["label"]))
        clean = self.array(run_id, POINTS_PROBE, "clean")
        best: Samples | None = None
        for label in labels:
            row = self._robust_row(run_id, label, c.eps)
            if row is None:
                continue
            if c.quantity == ROBUST_ACCURACY_ON_CORRECT:
                if clean is None:
                    return None
                found = Samples(row, weights=clean.astype(np.float64))
            else:
                found = Samples(row)
            if best is None or _value(found) < _value(best):
                best = found
        return best

    def _robust_row(self, run_id: str, label: str, eps: float) -> np.ndarray | None:
        robust = self.array(run_id, POINTS_PROBE, label)
        at = self.array(run_id, POINTS_PROBE, f"{label}/eps")
        if robust is None or at is None or robust.ndim != 2:
            return None
        listed = [float(e) for e in at]
        found = find_eps(eps, listed)
        return None if found is None else robust[listed.index(found)].astype(np.float64)

    def _probe_points(self, run_id: str, probe: str, key: str, stat: str) -> Samples | None:
        """A probe's per-example array: one value per probed test point (its length is the
        spec's ``probes.n``, or the test set's size when that is smaller) — arrays over
        weights, pairs or bins are not test points and are not resampled."""
        values = self.array(run_id, probe, key)
        if values is None or values.ndim != 1 or values.dtype.kind not in "biuf":
            return None
        if len(values) != self._probe_n(run_id):
            return None
        return Samples(values.astype(np.float64), stat=stat)

    def _probe_n(self, run_id: str) -> int:
        probes = self.spec.get("probes")
        n = int(probes.get("n", 1000)) if isinstance(probes, dict) else 1000
        clean = self.array(run_id, POINTS_PROBE, "clean")
        if clean is not None and len(clean) < eval_n(self.spec):  # a smaller test set
            n = min(n, len(clean))
        return n

    def first_attack(self) -> str | None:
        """The label (``<attack>-<norm>`` or the spec's ``label``) of the spec's first
        evaluation attack, else of the first attack found in the results."""
        attacks = (self.spec.get("evaluation") or {}).get("attacks") or []
        if attacks:
            return attack_key(attacks[0])
        found = self.robust_columns()
        return found[0].label if found else None


def attack_key(entry: dict[str, Any]) -> str:
    """The label of one ``evaluation.attacks`` entry of a spec dict (the spec's own rule,
    :meth:`robustscope.studies.spec.AttackEval.key`, defaults included)."""
    return AttackEval.model_validate(entry).key()


def _long(df: pd.DataFrame | None, empty: pd.DataFrame) -> pd.DataFrame:
    """A copy of a long frame with ``run_id`` as text (``empty`` when None or empty)."""
    if df is None or not len(df):
        return empty
    out = df.reset_index(drop=True).copy()
    out["run_id"] = out["run_id"].astype(str)
    return out


def _value(s: Samples) -> float:
    """A :class:`Samples`' statistic on all its points."""
    return float(s.draw(np.arange(len(s))[None, :])[0])


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key putting ``body.2`` before ``body.10`` and ``head`` after the body."""
    parts = re.split(r"(\d+)", name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)
    return (1 if name.startswith("head") else 0, key)


def load_study(study_dir: str | Path) -> StudyData:
    """Read ``<study_dir>/results.sqlite`` into a :class:`StudyData` through the store's
    pandas readers. Arrays are read lazily (and cached) through ``Store.load_artifact``.

    Raises:
        robustscope.studies.StoreError: no (readable) store in ``study_dir``.
        RobustscopeError: the store holds no study.
    """
    from robustscope.studies.store import StoreError, open_store

    study_dir = Path(study_dir)
    with open_store(study_dir) as store:
        study = store.study()
        runs = store.runs_table()
        metrics = store.metrics_table()
        attacks = store.attack_results_long()
        flags = store.attack_flags_long()
        try:
            probes = store.probes_table()
        except StoreError:  # the same scalar stored for several splits
            probes = store.probes_table(split="all")
        history = store.history_table()
        done = [str(r) for r in runs.loc[runs["status"] == "done", "run_id"]] if len(runs) else []
        provenance: dict[str, str] = {}
        try:
            provenance = dict(store.provenance(None))  # study-level, where the store has it
        except Exception:
            provenance = {}
        if not provenance and done:
            provenance = dict(store.provenance(done[0]))
        listing = store.conn.execute("SELECT run_id, probe, key, split FROM artifacts").fetchall()
    if study is None and not len(runs):
        raise RobustscopeError(
            f"{study_dir}: the results store holds no study yet; run `robustscope study` first"
        )
    splits: dict[tuple[str, str, str], str] = {}
    for run_id, probe, key, split in listing:
        where = (str(run_id), str(probe), str(key))
        if where not in splits or split == "all":
            splits[where] = str(split)
    cache: dict[tuple[str, str, str], np.ndarray | None] = {}

    def array(run_id: str, probe: str, key: str) -> np.ndarray | None:
        where = (run_id, probe, key)
        if where not in splits:
            return None
        if where not in cache:
            with open_store(study_dir) as s:
                cache[where] = s.load_artifact(run_id, probe, key, splits[where])
        return cache[where]

    info = {k: study[k] for k in ("created", "updated")} if study else {}
    return StudyData.from_frames(
        spec=(study or {}).get("spec") or {"name": study_dir.name},
        runs=runs,
        metrics=metrics,
        history=history,
        probes=probes,
        arrays=array,
        provenance=provenance,
        info=info,
        attacks=attacks,
        flags=flags,
    )
