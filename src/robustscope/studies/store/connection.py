"""Opening a store: :func:`open_store` and the :class:`Store` it returns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from robustscope.studies.store.base import StoreError
from robustscope.studies.store.claims import Claims
from robustscope.studies.store.reads import Reads
from robustscope.studies.store.schema import check_or_init, refuse_unreadable
from robustscope.studies.store.vocab import STORE_FILE
from robustscope.studies.store.writes import Writes

__all__ = ["Store", "open_store"]


class Store(Writes, Reads, Claims):
    """An open results store (see :mod:`robustscope.studies.store`). Use it as a context
    manager; get one with :func:`open_store`.

    Attributes:
        path: the database file.
        root: the study directory (the database's folder); artifact paths are relative to it.
        conn: the ``sqlite3`` connection (autocommit mode; transactions are explicit).
    """

    @classmethod
    def open(cls, path: str | Path, create: bool = False) -> Store:
        """Same as :func:`open_store`."""
        return open_store(path, create=create)


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir() or p.suffix != ".sqlite":
        p = p / STORE_FILE
    return p


def open_store(path: str | Path, create: bool = False) -> Store:
    """Open the results store at ``path`` (a study directory or its ``results.sqlite``).

    ``create=True`` creates the file (and its folders) when missing. An older schema is
    migrated in place, in one transaction. Raises :class:`StoreError` naming the file when
    it is missing (without ``create``), is not a SQLite database or not a robustscope
    store, or has a schema this version cannot read.

    Example:
        >>> import tempfile
        >>> store = open_store(tempfile.mkdtemp(), create=True)
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
        refuse_unreadable(conn.execute("PRAGMA user_version").fetchone()[0], file)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"{file}: SQLite refused the WAL journal (got {mode!r}); keep studies on a "
                "local file system"
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        check_or_init(conn, file)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"{file}: not a readable results store ({exc}); point to a study directory"
        ) from None
    except BaseException:
        conn.close()
        raise
    return Store(file, conn)
