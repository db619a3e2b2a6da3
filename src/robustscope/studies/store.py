"""The results store of a study: one SQLite database (``runs/<study>/results.sqlite``).

WAL journal, foreign keys on, every write one transaction, so a process killed at any
moment leaves only whole transactions; readers (``robustscope show``) may read while the
driver writes. Arrays live in ``.npz`` files under ``artifacts/`` beside the database,
written atomically *before* the row that references them is committed. The schema is
documented in ``docs/store.md``; its version is ``PRAGMA user_version``.

Scalars are stored as REAL; SQLite has no NaN (it stores NULL), so non-finite values are
stored as text (``'nan'``, ``'inf'``, ``'-inf'``) and read back as floats.
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from robustscope.errors import RobustscopeError

__all__ = ["SCHEMA_VERSION", "Store", "StoreError", "export", "open"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(name),
    config TEXT NOT NULL,
    method TEXT,
    eps REAL,
    seed INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    checkpoint TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    train_time_s REAL
);
CREATE TABLE IF NOT EXISTS history (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY (run_id, epoch, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    value,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS probes (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    probe TEXT NOT NULL,
    split TEXT NOT NULL,
    key TEXT NOT NULL,
    value,
    PRIMARY KEY (run_id, probe, split, key)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    probe TEXT NOT NULL,
    split TEXT NOT NULL,
    key TEXT NOT NULL,
    path TEXT NOT NULL,
    shape TEXT NOT NULL,
    dtype TEXT NOT NULL,
    PRIMARY KEY (run_id, probe, split, key)
);
CREATE TABLE IF NOT EXISTS provenance (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (run_id, key)
);
"""


class StoreError(RobustscopeError):
    """The results store cannot be opened or read."""


def _enc(value: Any) -> float | str | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else repr(v)


def _dec(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


class Store:
    """An open results store (see the module doc). Use as a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.root = path.parent
        self.conn = conn

    # --- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.conn:
            yield self.conn

    # --- writes ------------------------------------------------------------------------------

    def add_study(self, name: str, spec: dict[str, Any]) -> None:
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO studies (name, spec, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                (name, json.dumps(spec, sort_keys=True), now, now),
            )

    def upsert_run(
        self,
        run_id: str,
        study: str,
        config: dict[str, Any],
        *,
        method: str | None = None,
        eps: float | None = None,
        seed: int | None = None,
        status: str = "pending",
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (run_id, study, config, method, eps, seed, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
                "config = excluded.config, method = excluded.method, eps = excluded.eps, "
                "seed = excluded.seed, status = excluded.status",
                (run_id, study, json.dumps(config, sort_keys=True), method, eps, seed, status),
            )

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        checkpoint: str | None = None,
        train_time_s: float | None = None,
    ) -> None:
        now = time.time()
        with self._tx() as c:
            if status == "running":
                c.execute(
                    "UPDATE runs SET status = ?, started = ?, attempts = attempts + 1, "
                    "error = NULL WHERE run_id = ?",
                    (status, now, run_id),
                )
            else:
                c.execute(
                    "UPDATE runs SET status = ?, finished = ?, error = ?, "
                    "checkpoint = COALESCE(?, checkpoint), "
                    "train_time_s = COALESCE(?, train_time_s) WHERE run_id = ?",
                    (status, now, error, checkpoint, _enc(train_time_s), run_id),
                )

    def add_history(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Per-epoch history (re-adding an (epoch, key) replaces it); non-numbers are skipped."""
        values = []
        for row in rows:
            epoch = int(row["epoch"])
            for key, value in row.items():
                if key == "epoch" or isinstance(value, str | dict | list) or value is None:
                    continue
                values.append((run_id, epoch, key, _enc(value)))
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)", values)

    def add_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                [(run_id, k, _enc(v)) for k, v in metrics.items()],
            )

    def add_probe(
        self,
        run_id: str,
        probe: str,
        split: str,
        scalars: dict[str, float],
        arrays: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Probe scalars as rows; each array an ``.npz`` under ``artifacts/`` (written first)."""
        rows = []
        for key, arr in (arrays or {}).items():
            arr = np.asarray(arr)
            rel = Path("artifacts") / run_id / probe / split / f"{key.replace('/', '__')}.npz"
            dest = self.root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.savez(buf, value=arr)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
            os.replace(tmp, dest)
            rows.append(
                (run_id, probe, split, key, str(rel), json.dumps(arr.shape), str(arr.dtype))
            )
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?)",
                [(run_id, probe, split, k, _enc(v)) for k, v in scalars.items()],
            )
            c.executemany("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def add_provenance(self, run_id: str, info: dict[str, Any]) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO provenance VALUES (?, ?, ?)",
                [(run_id, k, str(v)) for k, v in info.items()],
            )

    # --- reads -------------------------------------------------------------------------------

    def study(self) -> dict[str, Any] | None:
        """The (first) study's name, spec and timestamps."""
        row = self.conn.execute(
            "SELECT name, spec, created, updated FROM studies ORDER BY created LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"name": row[0], "spec": json.loads(row[1]), "created": row[2], "updated": row[3]}

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        cols = [
            "run_id", "study", "config", "method", "eps", "seed", "status", "checkpoint",
            "error", "attempts", "started", "finished", "train_time_s",
        ]  # fmt: skip
        sql = f"SELECT {', '.join(cols)} FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        out = []
        for row in self.conn.execute(sql + " ORDER BY run_id", args):
            d = dict(zip(cols, row, strict=True))
            d["config"] = json.loads(d["config"])
            out.append(d)
        return out

    def runs_table(self) -> Any:
        """pandas DataFrame, one row per run: id, label, model, method, family, ε, seed, status."""
        import pandas as pd

        rows = []
        for r in self.runs():
            cfg = r["config"]
            rows.append(
                {
                    "run_id": r["run_id"],
                    "label": cfg.get("label", r["run_id"]),
                    "model": cfg.get("model"),
                    "method": r["method"],
                    "family": cfg.get("family", r["method"]),
                    "eps": r["eps"],
                    "norm": cfg.get("norm"),
                    "seed": r["seed"],
                    "status": r["status"],
                    "train_time_s": _dec(r["train_time_s"]),
                    "error": r["error"],
                }
            )
        return pd.DataFrame(rows)

    def _wide(self, sql: str, index: list[str], column: str) -> Any:
        import pandas as pd

        df = pd.DataFrame(self.conn.execute(sql).fetchall(), columns=[*index, column, "value"])
        if df.empty:
            return pd.DataFrame(index=pd.Index([], name=index[0]) if len(index) == 1 else None)
        df["value"] = df["value"].map(_dec)
        wide = df.pivot(index=index, columns=column, values="value")  # keys are unique
        wide.columns.name = None
        return wide

    def metrics_table(self) -> Any:
        """pandas DataFrame indexed by run_id, one column per metric."""
        return self._wide("SELECT run_id, name, value FROM metrics", ["run_id"], "name")

    def history_table(self) -> Any:
        """pandas DataFrame, one row per (run_id, epoch), one column per history key."""
        wide = self._wide(
            "SELECT run_id, epoch, key, value FROM history", ["run_id", "epoch"], "key"
        )
        return wide.reset_index() if len(wide) else wide

    def probes_table(self) -> Any:
        """pandas DataFrame indexed by run_id, one column per ``<probe>/<key>``."""
        return self._wide(
            "SELECT run_id, probe || '/' || key, value FROM probes", ["run_id"], "name"
        )

    def load_artifact(
        self, run_id: str, probe: str, key: str, split: str = "all"
    ) -> np.ndarray | None:
        row = self.conn.execute(
            "SELECT path FROM artifacts WHERE run_id = ? AND probe = ? AND split = ? AND key = ?",
            (run_id, probe, split, key),
        ).fetchone()
        if row is None:
            return None
        with np.load(self.root / row[0], allow_pickle=False) as f:
            return np.asarray(f["value"])

    def provenance(self, run_id: str) -> dict[str, str]:
        return dict(
            self.conn.execute("SELECT key, value FROM provenance WHERE run_id = ?", (run_id,))
        )


def open(path: str | Path, create: bool = False) -> Store:
    """Open the store at ``path`` (a ``results.sqlite`` file or a study directory)."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".sqlite":
        path = path / "results.sqlite"
    if not path.exists() and not create:
        raise StoreError(f"{path}: no results store here; run `robustscope study` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=30.0)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            conn.close()
            raise StoreError(
                f"{path}: results store schema version {version}, this robustscope reads "
                f"version {SCHEMA_VERSION}; use a matching robustscope version or a new --out"
            )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        if version == 0:
            with conn:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a readable results store ({exc})") from None
    return Store(path, conn)


def export(study_dir: str | Path, format: str = "csv", out: str | Path | None = None) -> list[Path]:
    """Write every table of the study's store as ``<table>.csv`` or ``.parquet`` in ``out``
    (default ``<study_dir>/export``); returns the paths written."""
    if format not in ("csv", "parquet"):
        raise StoreError(f"--format must be csv or parquet, got {format!r}")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError("--format parquet needs pyarrow: pip install pyarrow") from None
    dest = Path(out) if out is not None else Path(study_dir) / "export"
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with open(study_dir) as store:
        tables = {
            "runs": store.runs_table(),
            "metrics": store.metrics_table().reset_index(),
            "history": store.history_table(),
            "probes": store.probes_table().reset_index(),
        }
    for name, df in tables.items():
        path = dest / f"{name}.{format}"
        if format == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        written.append(path)
    return written
