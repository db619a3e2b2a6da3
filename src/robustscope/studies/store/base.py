"""The core of an open store: its error, the value conventions and transactions.

* :class:`StoreError` — every error the store raises on purpose; messages name the file.
* Values: scalars are bound as plain floats, NaN as ``NULL`` (:func:`real`), read back
  with ``NULL`` → NaN (:func:`read_real`).
* :class:`StoreBase` — the connection, ``with store.transaction():`` (``BEGIN IMMEDIATE``,
  nested calls are savepoints) and the clean-up of artifact files no committed row names.
  :class:`robustscope.studies.store.Store` adds the writers, readers and claims to it.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from robustscope.errors import RobustscopeError
from robustscope.studies.store.vocab import MEASURE_HASH_KEY, STATUSES

__all__ = ["StoreBase", "StoreError", "read_real", "real"]


class StoreError(RobustscopeError):
    """The results store cannot be opened, read or written as asked."""


def real(value: Any, what: str) -> float | None:
    """``value`` as the REAL to bind: a plain float, or None for NaN.

    Ints, bools and numpy/torch scalars are converted with ``float()``; strings and arrays
    with more than one element are refused with a :class:`StoreError` naming ``what``.
    """
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


def is_number(value: Any) -> bool:
    """Whether ``value`` is a scalar number (the history keeps these and skips the rest)."""
    if isinstance(value, bool | int | float | np.number | np.bool_):
        return True
    return getattr(value, "ndim", None) == 0 and hasattr(value, "__float__")


def read_real(value: Any) -> float:
    """A stored REAL as a float: ``NULL`` is NaN."""
    return math.nan if value is None else float(value)


def safe_component(name: str) -> str:
    """``name`` as one path component: ``/`` → ``__``, other unsafe characters → ``_``."""
    out = re.sub(r"[^A-Za-z0-9._=+-]", "_", name.replace("/", "__"))
    if not out or out.startswith("."):
        out = "_" + out
    return out[:120]


def to_json(obj: Mapping[str, Any], what: str) -> str:
    """``obj`` as sorted JSON; StoreError naming ``what`` when it is not serialisable."""
    try:
        return json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable ({exc}); pass plain values") from None


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(f"run status must be one of {', '.join(STATUSES)}, got {status!r}")


class StoreBase:
    """An open store's connection and transactions (see the package doc).

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
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
            >>> import tempfile
            >>> from robustscope.studies import open_store
            >>> store = open_store(tempfile.mkdtemp(), create=True)
            >>> store.add_study("demo", {})
            >>> store.upsert_run("r1", "demo", {}, method="standard", eps=0.0, seed=0)
            >>> with store.transaction():  # both writes commit together, or neither
            ...     store.add_metrics("r1", {"clean_accuracy": 0.9})
            ...     store.set_status("r1", "done")
            >>> [r["status"] for r in store.runs()]
            ['done']
            >>> store.close()
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

    def measured(self, measure_hash: str, run_id: str | None = None) -> set[str]:
        """Ids of the ``done`` runs (or of ``run_id`` alone) measured with the evaluation and
        probe settings of hash ``measure_hash`` (their config's ``measure_hash``)."""
        sql = (
            "SELECT run_id FROM runs WHERE status = 'done' "
            f"AND json_extract(config, '$.{MEASURE_HASH_KEY}') = ?"
        )
        args: tuple[str, ...] = (measure_hash,)
        if run_id is not None:
            sql += " AND run_id = ?"
            args += (run_id,)
        return {r for (r,) in self.conn.execute(sql, args)}

    def _require_study(self, name: str) -> None:
        if self.conn.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchone() is None:
            raise StoreError(
                f"{self.path}: study {name!r} is not in the store; call add_study first"
            )
