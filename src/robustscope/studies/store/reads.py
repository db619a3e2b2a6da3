"""The store's readers: plain Python (studies, runs, provenance, arrays) and pandas tables.

Long tables are the tables as stored (``NULL`` values read as NaN); wide tables have one row
per run (or per run × epoch, run × attack × ε) — see ``docs/store.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from robustscope.studies.store import views
from robustscope.studies.store.base import StoreBase, StoreError, check_status, read_real
from robustscope.studies.store.vocab import (
    ATTACK_FLAG_COLUMNS,
    ATTACK_RESULT_COLUMNS,
    HEALTH_COLUMNS,
    LOADED,
    LOADED_FROM,
    TRAIN_SIZE,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Reads"]

_RUN_COLUMNS = (
    "run_id", "study", "config", "method", "eps", "seed", "status", "checkpoint", "error",
    "attempts", "started", "finished", "train_time_s", "created", "updated", *HEALTH_COLUMNS,
)  # fmt: skip
_RUN_TABLE_COLUMNS = [
    "run_id", "label", "model", "dataset", "method", "family", "eps", "norm", TRAIN_SIZE,
    "seed", "status", "attempts", "checkpoint", "started", "finished", "train_time_s", "error",
    *HEALTH_COLUMNS, LOADED_FROM,
]  # fmt: skip
_RUN_KEY_COLUMNS = [
    "label", "model", "dataset", "method", "family", "eps", "norm", TRAIN_SIZE, "seed", "status",
]  # fmt: skip


def _cfg(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]``, else the nested training config's ``key``, else ``default``."""
    if key in cfg:
        return cfg[key]
    nested = cfg.get("config")
    if isinstance(nested, Mapping) and key in nested:
        return nested[key]
    return default


class Reads(StoreBase):
    """The read methods of :class:`robustscope.studies.store.Store`."""

    # --- plain Python ------------------------------------------------------------------------

    def study(self, name: str | None = None) -> dict[str, Any] | None:
        """Study ``name`` (default: the first created) as name, spec, created, updated."""
        sql = "SELECT name, spec, created, updated FROM studies"
        args: tuple[Any, ...] = ()
        if name is not None:
            sql += " WHERE name = ?"
            args = (name,)
        row = self.conn.execute(sql + " ORDER BY created, name LIMIT 1", args).fetchone()
        if row is None:
            return None
        return {"name": row[0], "spec": json.loads(row[1]), "created": row[2], "updated": row[3]}

    def studies(self) -> list[str]:
        """Names of the studies in the store, oldest first."""
        return [n for (n,) in self.conn.execute("SELECT name FROM studies ORDER BY created, name")]

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every run (or those with ``status``) as a dict of the ``runs`` columns, config
        parsed, sorted by run id."""
        sql = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            check_status(status)
            sql += " WHERE status = ?"
            args = (status,)
        out = []
        for row in self.conn.execute(sql + " ORDER BY run_id", args):
            d = dict(zip(_RUN_COLUMNS, row, strict=True))
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def provenance(self, run_id: str | None = None, study: str | None = None) -> dict[str, str]:
        """Provenance of a run, or of a study when ``run_id`` is None (default: the first)."""
        if run_id is not None:
            rows = self.conn.execute(
                "SELECT key, value FROM provenance WHERE run_id = ? ORDER BY key", (run_id,)
            )
        else:
            name = study or (self.study() or {}).get("name")
            rows = self.conn.execute(
                "SELECT key, value FROM provenance WHERE run_id IS NULL AND study = ? ORDER BY key",
                (name,),
            )
        return dict(rows.fetchall())

    def load_artifact(
        self, run_id: str, probe: str, key: str, split: str = "all"
    ) -> np.ndarray | None:
        """The array stored under (run, probe, split, key), exactly as written; None if absent.

        Raises :class:`StoreError` naming the file when it is missing or its SHA-256 differs
        from the one recorded with the row.
        """
        row = self.conn.execute(
            "SELECT path, sha256 FROM artifacts "
            "WHERE run_id = ? AND probe = ? AND split = ? AND key = ?",
            (run_id, probe, split, key),
        ).fetchone()
        if row is None:
            return None
        file = self.root / row[0]
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise StoreError(
                f"{file}: artifact {probe}/{split}/{key} of run {run_id!r} cannot be read "
                f"({exc.strerror}); copy the study directory whole, with artifacts/"
            ) from None
        if row[1] is not None and hashlib.sha256(data).hexdigest() != row[1]:
            raise StoreError(
                f"{file}: content differs from the SHA-256 recorded in {self.path}; "
                "the file was modified — measure the run again"
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            return np.asarray(f["value"])

    # --- pandas ------------------------------------------------------------------------------

    def runs_table(self) -> pd.DataFrame:
        """One row per run (sorted by id): ``run_id``, ``label``, ``model``, ``dataset``,
        ``method``, ``family``, ``eps``, ``norm``, ``train_size``, ``seed``, ``status``,
        ``attempts``, ``checkpoint``, ``started``, ``finished``, ``train_time_s``, ``error``,
        ``health``, ``health_reason``, ``health_fix`` (whether it trained, why not and the
        likely fix; None when not assessed — :data:`~.vocab.HEALTH`), ``loaded_from`` (the
        checkpoint file a run loaded instead of training, :data:`~.vocab.LOADED_FROM`; None
        for a trained run).

        ``label``, ``model``, ``dataset``, ``family`` and ``norm`` are read from the run's
        config (its top level, else its nested training ``config``); ``label`` defaults to
        the run id and ``family`` to ``method``. ``train_size`` (:data:`~.vocab.TRAIN_SIZE`)
        is the training config's ``train_subset`` (a study's ``train_sizes`` axis sets it),
        NaN when the run trained on the whole split.
        """
        import pandas as pd

        rows = []
        for r in self.runs():
            cfg = r["config"] if isinstance(r["config"], dict) else {}
            loaded = cfg.get(LOADED)
            rows.append(
                {
                    "run_id": r["run_id"],
                    "label": _cfg(cfg, "label", r["run_id"]),
                    "model": _cfg(cfg, "model"),
                    "dataset": _cfg(cfg, "dataset"),
                    "method": r["method"],
                    "family": _cfg(cfg, "family", r["method"]),
                    "eps": read_real(r["eps"]),
                    "norm": _cfg(cfg, "norm"),
                    TRAIN_SIZE: read_real(_cfg(cfg, "train_subset")),
                    "seed": r["seed"],
                    "status": r["status"],
                    "attempts": r["attempts"],
                    "checkpoint": r["checkpoint"],
                    "started": read_real(r["started"]),
                    "finished": read_real(r["finished"]),
                    "train_time_s": read_real(r["train_time_s"]),
                    "error": r["error"],
                    **{c: r[c] for c in HEALTH_COLUMNS},
                    LOADED_FROM: loaded.get("path") if isinstance(loaded, Mapping) else None,
                }
            )
        return pd.DataFrame(rows, columns=_RUN_TABLE_COLUMNS)

    def _long(self, sql: str, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.conn.execute(sql).fetchall(), columns=list(columns))
        df["value"] = df["value"].astype("float64")  # NULL (None) → NaN
        return df

    def _pivot(self, long: pd.DataFrame, index: list[str], column: str) -> pd.DataFrame:
        import pandas as pd

        if long.empty:
            if len(index) == 1:
                return pd.DataFrame(index=pd.Index([], name=index[0], dtype=object))
            return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=index))
        wide = long.pivot(index=index, columns=column, values="value")
        wide.columns.name = None
        return wide.sort_index()

    def metrics_long(self) -> pd.DataFrame:
        """The ``metrics`` table as stored: ``run_id``, ``name``, ``value`` (NULL → NaN)."""
        return self._long(
            "SELECT run_id, name, value FROM metrics ORDER BY run_id, name",
            ["run_id", "name", "value"],
        )

    def metrics_table(self, with_runs: bool = False) -> pd.DataFrame:
        """Wide metrics: indexed by ``run_id``, one float column per metric name.

        Without ``with_runs`` only runs with at least one metric appear. With
        ``with_runs=True`` every run appears, and the run columns ``label``, ``model``,
        ``dataset``, ``method``, ``family``, ``eps``, ``norm``, ``train_size``, ``seed``,
        ``status`` come first (a metric whose name equals one of them gets the suffix ``:metric``).
        Attack results are not metrics: see :meth:`attack_results_long`.
        """
        wide = self._pivot(self.metrics_long(), ["run_id"], "name")
        if not with_runs:
            return wide
        runs = self.runs_table()[["run_id", *_RUN_KEY_COLUMNS]].set_index("run_id")
        wide = wide.rename(columns={c: f"{c}:metric" for c in wide.columns if c in runs.columns})
        return runs.join(wide, how="left")

    def attack_results_long(self) -> pd.DataFrame:
        """The ``attack_results`` table as stored, one row per (run, label, attack ε,
        quantity): ``run_id``, ``label``, ``attack``, ``norm``, ``params`` (canonical JSON),
        ``attack_eps``, ``quantity``, ``value`` (NULL → NaN), ``n`` (nullable Int64),
        ``escalates`` (the label of the evaluation an escalated result re-attacks, else None)."""
        df = self._long(
            f"SELECT {', '.join(ATTACK_RESULT_COLUMNS)} FROM attack_results "
            "ORDER BY run_id, label, attack_eps, quantity",
            ATTACK_RESULT_COLUMNS,
        )
        df["attack_eps"] = df["attack_eps"].astype("float64")
        df["n"] = df["n"].astype("Int64")
        return df

    def attack_flags_long(self) -> pd.DataFrame:
        """The ``attack_flags`` table: ``run_id``, ``label``, ``flag``, ``message`` (None when
        unknown), ``value`` (NULL → NaN), sorted by run, label and flag."""
        return self._long(
            f"SELECT {', '.join(ATTACK_FLAG_COLUMNS)} FROM attack_flags "
            "ORDER BY run_id, label, flag",
            ATTACK_FLAG_COLUMNS,
        )

    def robustness_table(self) -> pd.DataFrame:
        """Robust accuracies, one row per (run, label, attack ε): ``run_id``, ``label``,
        ``attack``, ``norm``, ``params``, ``attack_eps``, ``n``, ``escalates``,
        ``robust_accuracy``, ``robust_accuracy_on_correct`` (:func:`~robustscope.studies.store.views.robustness_wide`)."""
        return views.robustness_wide(self.attack_results_long())

    def attack_results_table(self) -> pd.DataFrame:
        """Attack results wide: index ``run_id``, one float column per (label, ε, quantity)
        named ``<label>/<ε:g>/<quantity>`` (described by
        :func:`~robustscope.studies.store.views.attack_columns`)."""
        return views.attack_results_wide(self.attack_results_long())

    def history_long(self) -> pd.DataFrame:
        """The ``history`` table as stored: ``run_id``, ``epoch``, ``key``, ``value``."""
        return self._long(
            "SELECT run_id, epoch, key, value FROM history ORDER BY run_id, epoch, key",
            ["run_id", "epoch", "key", "value"],
        )

    def history_table(self) -> pd.DataFrame:
        """Wide history: one row per (run, epoch) — columns ``run_id``, ``epoch``, then one
        float column per history key (NaN where an epoch lacks the key)."""
        import pandas as pd

        long = self.history_long()
        if long.empty:
            return pd.DataFrame(
                {"run_id": pd.Series([], dtype=object), "epoch": pd.Series([], dtype="int64")}
            )
        return self._pivot(long, ["run_id", "epoch"], "key").reset_index()

    def probes_long(self) -> pd.DataFrame:
        """The ``probes`` table as stored: ``run_id``, ``probe``, ``split``, ``key``,
        ``value``."""
        return self._long(
            "SELECT run_id, probe, split, key, value FROM probes "
            "ORDER BY run_id, probe, split, key",
            ["run_id", "probe", "split", "key", "value"],
        )

    def probes_table(self, split: str | None = None) -> pd.DataFrame:
        """Wide probe scalars: indexed by ``run_id``, one float column per ``<probe>/<key>``.

        ``split`` keeps only the results on that split. Without it, a (run, probe, key)
        stored for two splits is ambiguous and raises :class:`StoreError` (pass ``split``
        or read :meth:`probes_long`).
        """
        long = self.probes_long()
        if split is not None:
            long = long[long["split"] == split]
        long = long.assign(column=long["probe"] + "/" + long["key"])
        dup = long.duplicated(["run_id", "column"])
        if dup.any():
            first = long[dup].iloc[0]
            raise StoreError(
                f"{self.path}: probe value {first['column']!r} of run {first['run_id']!r} is "
                "stored for several splits; pass split= or read probes_long()"
            )
        return self._pivot(long[["run_id", "column", "value"]], ["run_id"], "column")

    def _frame(self, sql: str, columns: list[str]) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.conn.execute(sql).fetchall(), columns=columns)

    def artifacts_table(self) -> pd.DataFrame:
        """The ``artifacts`` index: ``run_id``, ``probe``, ``split``, ``key``, ``path``
        (relative to the study directory), ``shape`` (tuple), ``dtype`` (numpy dtype
        string, e.g. ``<f4``), ``sha256``, ``nbytes``."""
        cols = ["run_id", "probe", "split", "key", "path", "shape", "dtype", "sha256", "nbytes"]
        df = self._frame(
            f"SELECT {', '.join(cols)} FROM artifacts ORDER BY run_id, probe, split, key", cols
        )
        df["shape"] = [tuple(json.loads(s)) for s in df["shape"]]
        return df

    def provenance_table(self) -> pd.DataFrame:
        """The ``provenance`` table: ``study``, ``run_id`` (None for study-level rows),
        ``key``, ``value``, ``created``."""
        cols = ["study", "run_id", "key", "value", "created"]
        return self._frame(
            f"SELECT {', '.join(cols)} FROM provenance ORDER BY study, run_id, key", cols
        )

    def studies_table(self) -> pd.DataFrame:
        """The ``studies`` table: ``name``, ``spec`` (JSON text), ``created``, ``updated``."""
        cols = ["name", "spec", "created", "updated"]
        return self._frame(f"SELECT {', '.join(cols)} FROM studies ORDER BY name", cols)

    def claims_table(self) -> pd.DataFrame:
        """The ``claims`` table: ``run_id``, ``token``, ``host``, ``pid``, ``since``,
        ``heartbeat`` (Unix seconds) — which driver holds which run right now."""
        cols = ["run_id", "token", "host", "pid", "since", "heartbeat"]
        return self._frame(f"SELECT {', '.join(cols)} FROM claims ORDER BY run_id", cols)
