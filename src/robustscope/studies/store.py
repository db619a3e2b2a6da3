"""The results store of a study: one SQLite database, ``runs/<study>/results.sqlite``.

Only the study driver writes it; readers (``robustscope show``, the report, a notebook)
may read while the driver writes. The schema, the naming of metrics and the NaN
convention are documented in ``docs/store.md``; this module is their only writer.

Guarantees:

* **Whole transactions only.** Every write method runs in one ``BEGIN IMMEDIATE`` …
  ``COMMIT`` transaction (or inside an enclosing :meth:`Store.transaction`); the journal
  is WAL with ``synchronous=FULL``, so a process killed at any instant leaves the
  database holding exactly the transactions that committed.
* **Arrays before rows.** A probe's arrays are ``.npz`` files under ``artifacts/`` beside
  the database, each written to a temporary file, fsynced and renamed into place *before*
  the transaction that references it commits. File names carry the SHA-256 of their
  bytes, so a committed row always names a file with exactly the content it describes
  (the row stores the digest and :meth:`Store.load_artifact` checks it); files that no
  committed row references any more are deleted after the commit.
* **Versioned schema.** ``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; the
  ``meta`` table marks the file as a robustscope store. Opening a store of a newer or
  unknown schema, or a SQLite file that is not a store, raises :class:`StoreError`
  naming the file. Version-1 stores are migrated in place, in one transaction.
* **Non-finite values.** Scalars are ``REAL``: ±inf are stored as such, NaN as ``NULL``
  (SQLite has no NaN), and a ``NULL`` reads back as NaN. A quantity that was never
  measured has no row at all.

Example:
    >>> import tempfile
    >>> from robustscope import studies
    >>> d = tempfile.mkdtemp()
    >>> with studies.open(d, create=True) as store:
    ...     store.add_study("demo", {"epochs": 1})
    ...     store.upsert_run("abc123", "demo", {"lr": 0.1}, method="pgd", eps=0.1, seed=0)
    ...     store.add_metrics("abc123", {"clean_accuracy": 0.9})
    ...     float(store.metrics_table().loc["abc123", "clean_accuracy"])
    0.9
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustscope.errors import RobustscopeError
from robustscope.io import atomic_write

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EXPORT_TABLES",
    "FORMAT",
    "SCHEMA_VERSION",
    "STATUSES",
    "Store",
    "StoreError",
    "collect_provenance",
    "export",
    "open",
]

SCHEMA_VERSION = 2
FORMAT = "robustscope-results-store"
STATUSES = ("pending", "running", "done", "failed")
STORE_FILE = "results.sqlite"
ARTIFACTS_DIR = "artifacts"

# One statement per entry: executescript() would commit the enclosing transaction.
_DDL = {
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "studies": """CREATE TABLE studies (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL)""",
    "runs": """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
        config TEXT NOT NULL,
        method TEXT,
        eps REAL,
        seed INTEGER,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'running', 'done', 'failed')),
        checkpoint TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        started REAL,
        finished REAL,
        train_time_s REAL,
        created REAL,
        updated REAL)""",
    "history": """CREATE TABLE history (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, epoch, key))""",
    "metrics": """CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, name))""",
    "probes": """CREATE TABLE probes (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        probe TEXT NOT NULL,
        split TEXT NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, probe, split, key))""",
    "artifacts": """CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        probe TEXT NOT NULL,
        split TEXT NOT NULL,
        key TEXT NOT NULL,
        path TEXT NOT NULL,
        shape TEXT NOT NULL,
        dtype TEXT NOT NULL,
        sha256 TEXT,
        nbytes INTEGER,
        PRIMARY KEY (run_id, probe, split, key))""",
    "provenance": """CREATE TABLE provenance (
        study TEXT NOT NULL REFERENCES studies(name) ON DELETE CASCADE,
        run_id TEXT REFERENCES runs(run_id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        created REAL NOT NULL)""",
}
_INDEXES = (
    "CREATE INDEX runs_by_status ON runs (study, status)",
    "CREATE INDEX artifacts_by_path ON artifacts (path)",
    # a plain UNIQUE would let study-level rows (run_id NULL) repeat
    "CREATE UNIQUE INDEX provenance_key ON provenance (study, ifnull(run_id, ''), key)",
)

_RUN_COLUMNS = (
    "run_id", "study", "config", "method", "eps", "seed", "status", "checkpoint", "error",
    "attempts", "started", "finished", "train_time_s", "created", "updated",
)  # fmt: skip
_RUN_TABLE_COLUMNS = [
    "run_id", "label", "model", "dataset", "method", "family", "eps", "norm", "seed",
    "status", "attempts", "checkpoint", "started", "finished", "train_time_s", "error",
]  # fmt: skip
_RUN_KEY_COLUMNS = [
    "label", "model", "dataset", "method", "family", "eps", "norm", "seed", "status",
]  # fmt: skip


class StoreError(RobustscopeError):
    """The results store cannot be opened, read or written as asked."""


# --- values -------------------------------------------------------------------------------------


def _real(value: Any, what: str) -> float | None:
    """``value`` as the REAL to bind: a plain float, or None for NaN (see the module doc)."""
    message = (
        f"{what} must be a real number (float, int, bool, numpy or torch scalar), "
        f"got {type(value).__name__} {value!r:.60}"
    )
    if isinstance(value, str | bytes) or getattr(value, "ndim", 0) != 0:
        raise StoreError(message)
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise StoreError(message) from None
    return None if math.isnan(v) else v


def _is_number(value: Any) -> bool:
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return True
    return getattr(value, "ndim", None) == 0 and hasattr(value, "__float__")


def _read(value: Any) -> float:
    return math.nan if value is None else float(value)


def _safe_component(name: str) -> str:
    """``name`` as one path component: ``/`` → ``__``, other unsafe characters → ``_``."""
    out = re.sub(r"[^A-Za-z0-9._=+-]", "_", name.replace("/", "__"))
    if not out or out.startswith("."):
        out = "_" + out
    return out[:120]


def _write_bytes(tmp: Path, data: bytes) -> None:
    tmp.write_bytes(data)


def _json(obj: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable ({exc}); pass plain values") from None


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")


def _cfg(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]``, else the nested training config's ``key``, else ``default``."""
    if key in cfg:
        return cfg[key]
    nested = cfg.get("config")
    if isinstance(nested, Mapping) and key in nested:
        return nested[key]
    return default


def _version() -> str:
    import robustscope

    return robustscope.__version__


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# --- provenance -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the robustscope sources, or (None, None)."""
    import robustscope

    src = Path(robustscope.__file__).resolve().parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of a shared tree
    run = functools.partial(
        subprocess.run, cwd=src, env=env, capture_output=True, text=True, timeout=5, check=True
    )
    try:
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        status = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (commit or None), bool(status.strip())


def collect_provenance(
    device: str | None = None, config: Mapping[str, Any] | None = None
) -> dict[str, str | None]:
    """Where and with what a result was produced — call it in the process that computed it.

    Keys: ``robustscope_version``, ``torch_version``, ``numpy_version``, ``python_version``,
    ``platform``, ``host``, ``device`` (as given), ``git_commit`` and ``git_dirty``
    (``"true"``/``"false"``: tracked files modified) of the checkout holding the robustscope
    sources (None outside git), ``created`` (UTC, ISO 8601) and, when ``config`` is given,
    ``config_hash`` (SHA-256 of ``config`` as sorted JSON).

    Example:
        >>> info = collect_provenance("cpu", {"lr": 0.1})
        >>> info["device"], len(info["config_hash"])
        ('cpu', 64)
    """
    import torch

    commit, dirty = _git_state()
    info: dict[str, str | None] = {
        "robustscope_version": _version(),
        "torch_version": str(torch.__version__),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "git_commit": commit,
        "git_dirty": None if dirty is None else str(dirty).lower(),
        "created": _utc_now(),
    }
    if config is not None:
        text = json.dumps(config, sort_keys=True, default=str)
        info["config_hash"] = hashlib.sha256(text.encode()).hexdigest()
    return info


# --- the store ----------------------------------------------------------------------------------


class Store:
    """An open results store (see the module doc). Use it as a context manager.

    Attributes:
        path: the database file.
        root: the study directory (the database's folder); artifact paths are relative to it.
        conn: the ``sqlite3`` connection (autocommit mode; transactions are explicit).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.root = path.parent
        self.conn = conn
        self._depth = 0
        self._touched: list[str] = []  # artifact files written or replaced in the transaction

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Store:
        """Same as :func:`robustscope.studies.store.open`."""
        return open(path, create=create)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # --- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction around several writes; a nested call is a savepoint inside it.

        The outermost call runs ``BEGIN IMMEDIATE`` (the write lock is taken at once, so a
        second writer waits up to the busy timeout rather than failing half-way) and
        commits on exit, or rolls back on an exception. A nested call that raises rolls back
        only its own writes. Artifact files written or replaced inside the transaction that
        no committed row references afterwards are deleted when the outermost call ends.

        Example:
            >>> with store.transaction():  # doctest: +SKIP
            ...     store.add_metrics(run_id, metrics)
            ...     store.set_status(run_id, "done")
        """
        if self._depth:
            name = f"rs_{self._depth}"
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
            self.conn.commit()
        except BaseException:
            if self.conn.in_transaction:
                self.conn.rollback()
            raise
        finally:
            self._depth = 0
            touched, self._touched = self._touched, []
            self._drop_unreferenced(touched)

    def _drop_unreferenced(self, paths: Iterable[str]) -> None:
        for rel in set(paths):
            row = self.conn.execute("SELECT 1 FROM artifacts WHERE path = ?", (rel,)).fetchone()
            if row is None:
                (self.root / rel).unlink(missing_ok=True)

    def _require_run(self, run_id: str) -> str:
        """The study of run ``run_id``; StoreError when the run is not in the store."""
        row = self.conn.execute("SELECT study FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(
                f"{self.path}: run {run_id!r} is not in the store; call upsert_run first"
            )
        return str(row[0])

    def _require_study(self, name: str) -> None:
        if self.conn.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchone() is None:
            raise StoreError(
                f"{self.path}: study {name!r} is not in the store; call add_study first"
            )

    # --- writes ----------------------------------------------------------------------------

    def add_study(self, name: str, spec: Mapping[str, Any]) -> None:
        """Record study ``name`` and its spec (a JSON object); an existing spec is replaced."""
        now = time.time()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO studies (name, spec, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                (name, _json(spec, f"spec of study {name!r}"), now, now),
            )

    def upsert_run(
        self,
        run_id: str,
        study: str,
        config: Mapping[str, Any],
        *,
        method: str | None = None,
        eps: float | None = None,
        seed: int | None = None,
        status: str | None = None,
    ) -> None:
        """Insert run ``run_id`` of ``study``, or update its config, method, ε and seed.

        ``run_id`` is the caller's stable hash of the run's config. ``status=None`` keeps an
        existing run's status (``pending`` for a new run); results already stored are kept.
        """
        if status is not None:
            _check_status(status)
        now = time.time()
        row = (
            run_id,
            study,
            _json(config, f"config of run {run_id!r}"),
            method,
            None if eps is None else _real(eps, f"eps of run {run_id!r}"),
            None if seed is None else int(seed),
            status or "pending",
            now,
            now,
            status,
        )
        with self.transaction() as c:
            self._require_study(study)
            c.execute(
                "INSERT INTO runs (run_id, study, config, method, eps, seed, status, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET study = excluded.study, "
                "config = excluded.config, method = excluded.method, eps = excluded.eps, "
                "seed = excluded.seed, status = coalesce(?, runs.status), "
                "updated = excluded.updated",
                row,
            )

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: str | None = None,
        checkpoint: str | None = None,
        train_time_s: float | None = None,
        started: float | None = None,
        finished: float | None = None,
    ) -> None:
        """Move a run to ``status`` (one of :data:`STATUSES`); times are Unix seconds.

        ``running`` counts an attempt, sets ``started`` (now unless given) and clears
        ``finished`` and ``error``; ``done`` / ``failed`` set ``finished`` (now unless given)
        and ``error``; ``pending`` sets ``error``. ``checkpoint`` (path of the run directory)
        and ``train_time_s`` are kept unless given.
        """
        _check_status(status)
        now = time.time()
        t = None if train_time_s is None else _real(train_time_s, "train_time_s")
        keep = "checkpoint = coalesce(?, checkpoint), train_time_s = coalesce(?, train_time_s)"
        with self.transaction() as c:
            self._require_run(run_id)
            if status == "running":
                c.execute(
                    f"UPDATE runs SET status = ?, started = ?, finished = NULL, error = NULL, "
                    f"attempts = attempts + 1, {keep}, updated = ? WHERE run_id = ?",
                    (status, now if started is None else started, checkpoint, t, now, run_id),
                )
            elif status == "pending":
                c.execute(
                    f"UPDATE runs SET status = ?, error = ?, {keep}, updated = ? WHERE run_id = ?",
                    (status, error, checkpoint, t, now, run_id),
                )
            else:
                c.execute(
                    f"UPDATE runs SET status = ?, finished = ?, error = ?, "
                    f"started = coalesce(?, started), {keep}, updated = ? WHERE run_id = ?",
                    (
                        status,
                        now if finished is None else finished,
                        error,
                        started,
                        checkpoint,
                        t,
                        now,
                        run_id,
                    ),
                )

    def add_history(self, run_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Training history, one mapping per epoch with an ``epoch`` key (stored long).

        Numeric values (bool, int, float, numpy/torch scalars) are stored; strings, None
        and containers (e.g. ``stop_reason``) are skipped. Re-adding an (epoch, key)
        replaces its value, so writing a history again is idempotent.
        """
        values = []
        for i, row in enumerate(rows):
            if "epoch" not in row:
                raise StoreError(f"history row {i} of run {run_id!r} has no 'epoch' key: {row}")
            epoch = int(row["epoch"])
            for key, value in row.items():
                if key != "epoch" and _is_number(value):
                    values.append((run_id, epoch, str(key), _real(value, f"history {key!r}")))
        with self.transaction() as c:
            self._require_run(run_id)
            c.executemany(
                "INSERT INTO history (run_id, epoch, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id, epoch, key) DO UPDATE SET value = excluded.value",
                values,
            )

    def add_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        """Final scalar metrics of a run (names: ``docs/store.md``); re-adding a name replaces."""
        values = [
            (run_id, str(k), _real(v, f"metric {k!r} of run {run_id!r}"))
            for k, v in metrics.items()
        ]
        with self.transaction() as c:
            self._require_run(run_id)
            c.executemany(
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(run_id, name) DO UPDATE SET value = excluded.value",
                values,
            )

    def add_probe(
        self,
        run_id: str,
        probe: str,
        split: str,
        scalars: Mapping[str, Any],
        arrays: Mapping[str, Any] | None = None,
    ) -> None:
        """One probe result (``ProbeResult.scalars()`` / ``.arrays()``) of a run on ``split``.

        The result replaces what was stored for (run, probe, split): keys absent from the
        new result are removed. Each array becomes
        ``artifacts/<run>/<probe>/<split>/<key>.<sha256[:16]>.npz`` (one array named
        ``value``), written before the rows commit; the previous result's files are deleted
        after the commit. Arrays keep their dtype and shape exactly (only bool, integer,
        float and complex dtypes are accepted).
        """
        label = f"probe {probe!r} ({split}) of run {run_id!r}"
        rows = [
            (run_id, probe, split, str(k), _real(v, f"{label}: {k!r}")) for k, v in scalars.items()
        ]
        encoded = []
        for key, value in (arrays or {}).items():
            arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            if arr.dtype.kind not in "biufc":
                raise StoreError(
                    f"{label}: array {key!r} has dtype {arr.dtype}; store numbers only"
                )
            buf = io.BytesIO()
            np.savez(buf, value=arr)
            data = buf.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            name = f"{_safe_component(str(key))}.{digest[:16]}.npz"
            rel = "/".join([ARTIFACTS_DIR, *map(_safe_component, (run_id, probe, split)), name])
            encoded.append(
                (run_id, probe, split, str(key), rel, json.dumps(list(arr.shape)), arr.dtype.str,
                 digest, len(data), data)
            )  # fmt: skip
        with self.transaction() as c:
            self._require_run(run_id)
            for *_, rel, _, _, _, _, data in encoded:
                self._touched.append(rel)
                atomic_write(self.root / rel, functools.partial(_write_bytes, data=data))
            where = "WHERE run_id = ? AND probe = ? AND split = ?"
            old = c.execute(f"SELECT path FROM artifacts {where}", (run_id, probe, split))
            self._touched.extend(p for (p,) in old.fetchall())
            c.execute(f"DELETE FROM probes {where}", (run_id, probe, split))
            c.execute(f"DELETE FROM artifacts {where}", (run_id, probe, split))
            c.executemany(
                "INSERT INTO probes (run_id, probe, split, key, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            c.executemany(
                "INSERT INTO artifacts (run_id, probe, split, key, path, shape, dtype, sha256, "
                "nbytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [e[:-1] for e in encoded],
            )

    def add_provenance(
        self,
        run_id: str | None,
        info: Mapping[str, Any] | None = None,
        *,
        study: str | None = None,
    ) -> None:
        """Record provenance key/values of a run, or of a study when ``run_id`` is None.

        ``info=None`` records :func:`collect_provenance` of *this* process; pass the
        worker's own ``collect_provenance(...)`` when the result was computed elsewhere.
        Values are stored as text; None (unknown) is not stored; re-adding a key replaces it. For a
        study-level record ``study`` may be omitted when the store holds one study.
        """
        if info is None:
            info = collect_provenance()
        now = time.time()
        with self.transaction() as c:
            if run_id is not None:
                study = self._require_run(run_id)
            elif study is None:
                names = self.studies()
                if len(names) != 1:
                    raise StoreError(
                        f"{self.path}: study-level provenance needs study= "
                        f"(the store holds {len(names)} studies)"
                    )
                study = names[0]
            else:
                self._require_study(study)
            c.executemany(
                "INSERT OR REPLACE INTO provenance (study, run_id, key, value, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [(study, run_id, str(k), str(v), now) for k, v in info.items() if v is not None],
            )

    # --- reads: plain Python -----------------------------------------------------------------

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
            _check_status(status)
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

    # --- reads: pandas -----------------------------------------------------------------------

    def runs_table(self) -> pd.DataFrame:
        """One row per run (sorted by id): ``run_id``, ``label``, ``model``, ``dataset``,
        ``method``, ``family``, ``eps``, ``norm``, ``seed``, ``status``, ``attempts``,
        ``checkpoint``, ``started``, ``finished``, ``train_time_s``, ``error``.

        ``label``, ``model``, ``dataset``, ``family`` and ``norm`` are read from the run's
        config (its top level, else its nested training ``config``); ``label`` defaults to
        the run id and ``family`` to ``method``.
        """
        import pandas as pd

        rows = []
        for r in self.runs():
            cfg = r["config"] if isinstance(r["config"], dict) else {}
            rows.append(
                {
                    "run_id": r["run_id"],
                    "label": _cfg(cfg, "label", r["run_id"]),
                    "model": _cfg(cfg, "model"),
                    "dataset": _cfg(cfg, "dataset"),
                    "method": r["method"],
                    "family": _cfg(cfg, "family", r["method"]),
                    "eps": _read(r["eps"]),
                    "norm": _cfg(cfg, "norm"),
                    "seed": r["seed"],
                    "status": r["status"],
                    "attempts": r["attempts"],
                    "checkpoint": r["checkpoint"],
                    "started": _read(r["started"]),
                    "finished": _read(r["finished"]),
                    "train_time_s": _read(r["train_time_s"]),
                    "error": r["error"],
                }
            )
        return pd.DataFrame(rows, columns=_RUN_TABLE_COLUMNS)

    def _long(self, sql: str, columns: list[str]) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.conn.execute(sql).fetchall(), columns=columns)
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
        ``dataset``, ``method``, ``family``, ``eps``, ``norm``, ``seed``, ``status`` come
        first (a metric whose name equals one of them gets the suffix ``:metric``).
        """
        wide = self._pivot(self.metrics_long(), ["run_id"], "name")
        if not with_runs:
            return wide
        runs = self.runs_table()[["run_id", *_RUN_KEY_COLUMNS]].set_index("run_id")
        wide = wide.rename(columns={c: f"{c}:metric" for c in wide.columns if c in runs.columns})
        return runs.join(wide, how="left")

    def robustness_table(self) -> pd.DataFrame:
        """Robust accuracies in long form: one row per (run, attack, attack ε) with columns
        ``run_id``, ``attack``, ``attack_eps``, ``robust_accuracy``,
        ``robust_accuracy_on_correct``, parsed from the metric names
        ``<attack>/<ε>/<quantity>``."""
        import pandas as pd

        quantities = ["robust_accuracy", "robust_accuracy_on_correct"]
        rows = []
        for run_id, name, value in self.metrics_long().itertuples(index=False):
            parts = str(name).split("/")
            if len(parts) != 3 or parts[2] not in quantities:
                continue
            try:
                eps = float(parts[1])
            except ValueError:
                continue
            rows.append((run_id, parts[0], eps, parts[2], value))
        index = ["run_id", "attack", "attack_eps"]
        if not rows:
            return pd.DataFrame(columns=[*index, *quantities])
        df = pd.DataFrame(rows, columns=[*index, "quantity", "value"])
        wide = df.pivot(index=index, columns="quantity", values="value")
        wide = wide.reindex(columns=quantities)
        wide.columns.name = None
        return wide.sort_index().reset_index()

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

    def artifacts_table(self) -> pd.DataFrame:
        """The ``artifacts`` index: ``run_id``, ``probe``, ``split``, ``key``, ``path``
        (relative to the study directory), ``shape`` (tuple), ``dtype`` (numpy dtype
        string, e.g. ``<f4``), ``sha256``, ``nbytes``."""
        import pandas as pd

        cols = ["run_id", "probe", "split", "key", "path", "shape", "dtype", "sha256", "nbytes"]
        df = pd.DataFrame(
            self.conn.execute(
                f"SELECT {', '.join(cols)} FROM artifacts ORDER BY run_id, probe, split, key"
            ).fetchall(),
            columns=cols,
        )
        df["shape"] = [tuple(json.loads(s)) for s in df["shape"]]
        return df

    def provenance_table(self) -> pd.DataFrame:
        """The ``provenance`` table: ``study``, ``run_id`` (None for study-level rows),
        ``key``, ``value``, ``created``."""
        import pandas as pd

        cols = ["study", "run_id", "key", "value", "created"]
        return pd.DataFrame(
            self.conn.execute(
                f"SELECT {', '.join(cols)} FROM provenance ORDER BY study, run_id, key"
            ).fetchall(),
            columns=cols,
        )

    def studies_table(self) -> pd.DataFrame:
        """The ``studies`` table: ``name``, ``spec`` (JSON text), ``created``, ``updated``."""
        import pandas as pd

        cols = ["name", "spec", "created", "updated"]
        return pd.DataFrame(
            self.conn.execute(f"SELECT {', '.join(cols)} FROM studies ORDER BY name").fetchall(),
            columns=cols,
        )


# --- opening, creating, migrating -----------------------------------------------------------


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir() or p.suffix != ".sqlite":
        p = p / STORE_FILE
    return p


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {n for (n,) in rows if not n.startswith("sqlite_")}


def _create(conn: sqlite3.Connection) -> None:
    for ddl in _DDL.values():
        conn.execute(ddl)
    for ddl in _INDEXES:
        conn.execute(ddl)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("created", _utc_now()), ("created_by", f"robustscope {_version()}")],
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_V1_VALUE = (
    "CASE WHEN typeof(value) = 'text' THEN CASE value WHEN 'inf' THEN 9e999 "
    "WHEN '-inf' THEN -9e999 WHEN 'nan' THEN NULL ELSE CAST(value AS REAL) END ELSE value END"
)


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 → 2: REAL value columns (NaN as NULL instead of the text ``'nan'``), run
    timestamps, artifact digests (NULL for old rows: not checked), study-level provenance,
    the ``meta`` table."""
    conn.execute("ALTER TABLE runs ADD COLUMN created REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN updated REAL")
    conn.execute(
        f"UPDATE runs SET train_time_s = {_V1_VALUE.replace('value', 'train_time_s')} "
        "WHERE typeof(train_time_s) = 'text'"
    )
    for table, keys in (
        ("history", "run_id, epoch, key"),
        ("metrics", "run_id, name"),
        ("probes", "run_id, probe, split, key"),
    ):
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
        conn.execute(_DDL[table])
        conn.execute(
            f"INSERT INTO {table} ({keys}, value) SELECT {keys}, {_V1_VALUE} FROM {table}_v1"
        )
        conn.execute(f"DROP TABLE {table}_v1")
    conn.execute("ALTER TABLE artifacts ADD COLUMN sha256 TEXT")
    conn.execute("ALTER TABLE artifacts ADD COLUMN nbytes INTEGER")
    conn.execute("ALTER TABLE provenance RENAME TO provenance_v1")
    conn.execute(_DDL["provenance"])
    conn.execute(
        "INSERT INTO provenance (study, run_id, key, value, created) "
        "SELECT r.study, p.run_id, p.key, p.value, coalesce(r.finished, 0) "
        "FROM provenance_v1 p JOIN runs r ON r.run_id = p.run_id WHERE p.value IS NOT NULL"
    )
    conn.execute("DROP TABLE provenance_v1")
    conn.execute(_DDL["meta"])
    for ddl in _INDEXES:
        conn.execute(ddl)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("migrated_from", "1"), ("created_by", f"robustscope {_version()}")],
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _refuse_unreadable(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: results store schema version {version} is newer than this robustscope "
            f"({_version()}) reads (version {SCHEMA_VERSION}); upgrade robustscope "
            "(pip install -U robustscope) or write this study to a new --out"
        )
    if version not in (0, 1, SCHEMA_VERSION):
        raise StoreError(
            f"{path}: unknown results store schema version {version} (this robustscope reads "
            f"version {SCHEMA_VERSION} and migrates version 1); write the study to a new --out"
        )


def _check_or_init(conn: sqlite3.Connection, path: Path) -> None:
    """Verify the schema, or create / migrate it in one write transaction."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have created or migrated the store while we waited
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            _refuse_unreadable(version, path)
            tables = _tables(conn)
            if version == 0 and not tables:
                _create(conn)
            elif version == 0:
                raise StoreError(
                    f"{path}: a SQLite database holding tables {sorted(tables)} but no "
                    "robustscope schema version, so not a results store; point to a study "
                    f"directory's {STORE_FILE} or write the study to a new --out"
                )
            elif version == 1:
                _migrate_v1(conn)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    row = None
    if "meta" in _tables(conn):
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if row is None or row[0] != FORMAT:
        raise StoreError(
            f"{path}: a SQLite database but not a robustscope results store "
            f"(no meta.format = {FORMAT!r}); point to a study directory's {STORE_FILE}"
        )


def open(path: str | Path, create: bool = False) -> Store:
    """Open the results store at ``path`` (a study directory or its ``results.sqlite``).

    ``create=True`` creates the file (and its folders) when missing. Raises
    :class:`StoreError` naming the file when it is missing (without ``create``), is not a
    SQLite database or not a robustscope store, or has a schema this version cannot read.

    Example:
        >>> import tempfile
        >>> store = open(tempfile.mkdtemp(), create=True)
        >>> store.runs()
        []
        >>> store.close()
    """
    file = _resolve(path)
    if not file.exists() and not create:
        raise StoreError(
            f"{file}: no results store here; run `robustscope study` first "
            "(or pass the study directory that holds results.sqlite)"
        )
    file.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(file, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        _refuse_unreadable(conn.execute("PRAGMA user_version").fetchone()[0], file)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"{file}: SQLite refused the WAL journal (got {mode!r}); keep studies on a "
                "local file system"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _check_or_init(conn, file)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{file}: not a readable results store ({exc}); point to a study directory"
        ) from None
    except BaseException:
        conn.close()
        raise
    return Store(file, conn)


# --- export ---------------------------------------------------------------------------------

EXPORT_TABLES = ("runs", "metrics", "history", "probes", "artifacts", "provenance", "studies")


def export(
    study_dir: str | Path,
    format: str = "csv",
    out: str | Path | None = None,
) -> list[Path]:
    """Write every table of a study's store as ``<table>.csv`` or ``<table>.parquet``.

    The files (in ``out``, default ``<study_dir>/export``), one per table of
    :data:`EXPORT_TABLES`: ``runs`` (:meth:`Store.runs_table`), ``metrics`` (wide, run
    columns first: ``metrics_table(with_runs=True)``), ``history`` (wide), ``probes``
    (wide), ``artifacts`` (the index of ``.npz`` files; shape as JSON), ``provenance`` and
    ``studies`` (spec as JSON). NaN is an empty CSV field. Each file is written atomically.
    Returns the paths written. Parquet needs pyarrow (:class:`StoreError` says so).

    Example:
        >>> paths = export("runs/demo", format="csv")  # doctest: +SKIP
    """
    if format not in ("csv", "parquet"):
        raise StoreError(f"export format must be 'csv' or 'parquet', got {format!r}")
    if format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise StoreError(
                "export --format parquet needs pyarrow, which is not installed: "
                "pip install pyarrow (or use --format csv)"
            ) from None
    with open(study_dir) as store:
        artifacts = store.artifacts_table()
        artifacts["shape"] = [json.dumps(list(s)) for s in artifacts["shape"]]
        tables = {
            "runs": store.runs_table(),
            "metrics": store.metrics_table(with_runs=True).reset_index(),
            "history": store.history_table(),
            "probes": store.probes_table().reset_index(),
            "artifacts": artifacts,
            "provenance": store.provenance_table(),
            "studies": store.studies_table(),
        }
        root = store.root
    dest = Path(out) if out is not None else root / "export"
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in EXPORT_TABLES:
        file = dest / f"{name}.{format}"
        atomic_write(file, functools.partial(_write_table, df=tables[name], format=format))
        written.append(file)
    return written


def _write_table(tmp: Path, df: pd.DataFrame, format: str) -> None:
    if format == "csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
