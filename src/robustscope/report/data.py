"""What the report reads: :class:`StudyData`, built from a study's results store or by hand.

The report never opens the store itself; it draws from a :class:`StudyData` — the study's
spec and four pandas tables (runs, metrics, per-epoch history, probe scalars) plus a
callable giving the stored probe arrays. :func:`load_study` fills one from
``<study>/results.sqlite``; tests build one with :meth:`StudyData.from_frames`.

Column conventions (those of :mod:`robustscope.studies.execute` and the probes):

* ``runs``: ``run_id, label, model, method, family, eps, norm, seed, status, train_time_s``
  (``error`` optional) — one row per run, whatever its status;
* ``metrics`` (index ``run_id``): ``clean_accuracy``,
  ``<attack>-<norm>/<ε:g>/robust_accuracy`` (and ``..._on_correct``),
  ``<attack>-<norm>/flag/<name>``, ``train/<history key>``, ``train_time_s``;
* ``history``: ``run_id, epoch`` and every history key (``test_accuracy``,
  ``track/test/input_fisher_frobenius_mean``, ...);
* ``probes`` (index ``run_id``): ``<probe>/<scalar key>``;
* ``array(run_id, probe, key)``: e.g. ``("…", "margins", "test/margin_hist")``.

Example::

    data = StudyData.from_frames(spec={"name": "s"}, runs=runs_df, metrics=metrics_df)
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

__all__ = [
    "RUN_COLUMNS",
    "ArrayLoader",
    "RobustColumn",
    "StudyData",
    "attack_key",
    "load_study",
    "natural_key",
    "robust_columns",
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
    "seed",
    "status",
    "train_time_s",
)

ArrayLoader = Callable[[str, str, str], "np.ndarray | None"]


def _no_arrays(run_id: str, probe: str, key: str) -> np.ndarray | None:
    return None


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
    provenance: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

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
    ) -> StudyData:
        """A :class:`StudyData` from plain frames, filling what is missing.

        ``runs`` may be a list of dicts; missing run columns get defaults (``label`` =
        run id, ``method``/``family`` = ``"standard"``/``method``, ``norm`` = ``"linf"``,
        ``seed`` = 0, ``status`` = ``"done"``). ``metrics``/``probes`` may carry ``run_id``
        as a column or as the index. ``arrays`` may be a dict keyed by
        ``(run_id, probe, key)``.
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

    def table(self) -> pd.DataFrame:
        """Finished runs joined with their metrics and probe scalars, index ``run_id``,
        sorted by model, family, ε and seed (failed runs never enter figures or findings)."""
        runs = _indexed(self.runs)
        runs = runs.loc[[r for r in self.done_ids() if r in runs.index]]
        runs = runs.drop(columns=[c for c in ("error",) if c in runs.columns])
        extra = [df for df in (self.metrics, self.probes) if len(df.columns)]
        for df in extra:
            cols = [c for c in df.columns if c not in runs.columns]
            runs = runs.join(df[cols], how="left")
        if len(runs):
            runs = runs.sort_values(["model", "family", "eps", "seed"], kind="stable")
        return runs

    def first_attack(self) -> str | None:
        """The key (``<attack>-<norm>`` or its label) of the spec's first evaluation attack,
        else of the first attack found in the metrics."""
        attacks = (self.spec.get("evaluation") or {}).get("attacks") or []
        if attacks:
            return attack_key(attacks[0])
        found = robust_columns(list(self.metrics.columns))
        return found[0].attack if found else None


def attack_key(entry: dict[str, Any]) -> str:
    """The metric prefix of one ``evaluation.attacks`` entry of a spec dict."""
    return str(entry.get("label") or f"{entry.get('attack', 'pgd')}-{entry.get('norm', 'linf')}")


@dataclass(frozen=True)
class RobustColumn:
    """One ``<attack>/<ε>/robust_accuracy`` metric column."""

    attack: str
    eps: float
    column: str


def robust_columns(columns: list[str], *, on_correct: bool = False) -> list[RobustColumn]:
    """The robust-accuracy columns among ``columns``, ordered by attack (first seen) and ε."""
    suffix = "robust_accuracy_on_correct" if on_correct else "robust_accuracy"
    order: dict[str, int] = {}
    out = []
    for col in columns:
        parts = str(col).rsplit("/", 2)
        if len(parts) != 3 or parts[2] != suffix:
            continue
        try:
            eps = float(parts[1])
        except ValueError:
            continue
        order.setdefault(parts[0], len(order))
        out.append(RobustColumn(parts[0], eps, str(col)))
    return sorted(out, key=lambda c: (order[c.attack], c.eps))


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key putting ``body.2`` before ``body.10`` and ``head`` after the body."""
    parts = re.split(r"(\d+)", name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p)
    return (1 if name.startswith("head") else 0, key)


def load_study(study_dir: str | Path) -> StudyData:
    """Read ``<study_dir>/results.sqlite`` into a :class:`StudyData` through the store's
    pandas readers. Arrays are read lazily (and cached) through ``Store.load_artifact``.

    Raises:
        robustscope.studies.store.StoreError: no (readable) store in ``study_dir``.
        RobustscopeError: the store holds no study.
    """
    from robustscope.studies import store as store_mod

    study_dir = Path(study_dir)
    with store_mod.open(study_dir) as store:
        study = store.study()
        runs = store.runs_table()
        metrics = store.metrics_table()
        try:
            probes = store.probes_table()
        except store_mod.StoreError:  # the same scalar stored for several splits
            probes = store.probes_table(split="all")  # type: ignore[call-arg, unused-ignore]
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
            with store_mod.open(study_dir) as s:
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
    )
