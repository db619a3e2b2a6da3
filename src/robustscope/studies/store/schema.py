"""The store's schema (version :data:`SCHEMA_VERSION`), its creation and its migrations.

``PRAGMA user_version`` is the schema version; the ``meta`` table marks a file as a
robustscope store. :func:`check_or_init` creates an empty file's schema, or migrates an
older one in place (1 → 2 → 3 → 4, all steps in one transaction), and refuses a newer or unknown
version and SQLite files that are not stores. The tables are documented in ``docs/store.md``.

Version 3 moved attack results out of metric-name strings into the ``attack_results`` and
``attack_flags`` tables and added ``claims`` (:mod:`robustscope.studies.store.claims`).
Version 4 added a run's health (``runs.health``, ``health_reason``, ``health_fix``: whether it
trained, :mod:`robustscope.studies.health`) and ``attack_results.escalates`` (the evaluation an
escalated result re-attacks). A new store is made as version 3 and then given the version-4
columns by the same statements that migrate an old one, so both have one schema.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustscope.studies.store.base import StoreError
from robustscope.studies.store.vocab import (
    ESCALATES,
    FORMAT,
    HEALTH,
    HEALTH_FIX,
    HEALTH_REASON,
    HEALTH_STATUSES,
    NORMS,
    SCHEMA_VERSION,
    STORE_FILE,
    LegacyAttackMetric,
    attack_label,
    canonical_params,
    find_eps,
    parse_legacy_metric,
)

__all__ = ["check_or_init", "refuse_unreadable", "robustscope_version", "utc_now"]

# One statement per entry: executescript() would commit the enclosing transaction.
# Every run_id column references runs, every study column studies; deleting one cascades.
_RUN = "run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE"
_V2_TABLES = {
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
    "history": f"""CREATE TABLE history (
        {_RUN},
        epoch INTEGER NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, epoch, key))""",
    "metrics": f"""CREATE TABLE metrics (
        {_RUN},
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, name))""",
    "probes": f"""CREATE TABLE probes (
        {_RUN},
        probe TEXT NOT NULL,
        split TEXT NOT NULL,
        key TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, probe, split, key))""",
    "artifacts": f"""CREATE TABLE artifacts (
        {_RUN},
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
_V2_INDEXES = (
    "CREATE INDEX runs_by_status ON runs (study, status)",
    "CREATE INDEX artifacts_by_path ON artifacts (path)",
    # a plain UNIQUE would let study-level rows (run_id NULL) repeat
    "CREATE UNIQUE INDEX provenance_key ON provenance (study, ifnull(run_id, ''), key)",
)
# norm, params and n are NULL only in rows migrated from v2 whose attack the spec no
# longer lists (unknown); rows written by this code always have them.
_V3_TABLES = {
    "attack_results": f"""CREATE TABLE attack_results (
        {_RUN},
        label TEXT NOT NULL,
        attack TEXT NOT NULL,
        norm TEXT,
        params TEXT,
        attack_eps REAL NOT NULL,
        quantity TEXT NOT NULL,
        value REAL,
        n INTEGER,
        PRIMARY KEY (run_id, label, attack_eps, quantity))""",
    "attack_flags": f"""CREATE TABLE attack_flags (
        {_RUN},
        label TEXT NOT NULL,
        flag TEXT NOT NULL,
        message TEXT,
        value REAL,
        PRIMARY KEY (run_id, label, flag))""",
    "claims": """CREATE TABLE claims (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
        token TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since REAL NOT NULL,
        heartbeat REAL NOT NULL)""",
}
_V3_INDEXES = ("CREATE INDEX claims_by_token ON claims (token)",)
_HEALTHS = ", ".join(f"'{h}'" for h in HEALTH_STATUSES)
# NULL health: not assessed (a run not measured yet, or measured before version 4)
_V4_COLUMNS = (
    f"ALTER TABLE runs ADD COLUMN {HEALTH} TEXT CHECK ({HEALTH} IS NULL OR {HEALTH} IN ({_HEALTHS}))",
    f"ALTER TABLE runs ADD COLUMN {HEALTH_REASON} TEXT",
    f"ALTER TABLE runs ADD COLUMN {HEALTH_FIX} TEXT",
    f"ALTER TABLE attack_results ADD COLUMN {ESCALATES} TEXT",
)


def robustscope_version() -> str:
    import robustscope

    return robustscope.__version__


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {n for (n,) in rows if not n.startswith("sqlite_")}


def _create(conn: sqlite3.Connection) -> None:
    for ddl in (*_V2_TABLES.values(), *_V3_TABLES.values(), *_V2_INDEXES, *_V3_INDEXES):
        conn.execute(ddl)
    _migrate_3_to_4(conn)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("format", FORMAT),
            ("created", utc_now()),
            ("created_by", f"robustscope {robustscope_version()}"),
        ],
    )


# --- 1 → 2 -------------------------------------------------------------------------------------

_V1_VALUE = (
    "CASE WHEN typeof(value) = 'text' THEN CASE value WHEN 'inf' THEN 9e999 "
    "WHEN '-inf' THEN -9e999 WHEN 'nan' THEN NULL ELSE CAST(value AS REAL) END ELSE value END"
)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """REAL value columns (NaN as NULL instead of the text ``'nan'``), run timestamps,
    artifact digests (NULL for old rows: not checked), study-level provenance, ``meta``."""
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
        conn.execute(_V2_TABLES[table])
        conn.execute(
            f"INSERT INTO {table} ({keys}, value) SELECT {keys}, {_V1_VALUE} FROM {table}_v1"
        )
        conn.execute(f"DROP TABLE {table}_v1")
    conn.execute("ALTER TABLE artifacts ADD COLUMN sha256 TEXT")
    conn.execute("ALTER TABLE artifacts ADD COLUMN nbytes INTEGER")
    conn.execute("ALTER TABLE provenance RENAME TO provenance_v1")
    conn.execute(_V2_TABLES["provenance"])
    conn.execute(
        "INSERT INTO provenance (study, run_id, key, value, created) "
        "SELECT r.study, p.run_id, p.key, p.value, coalesce(r.finished, 0) "
        "FROM provenance_v1 p JOIN runs r ON r.run_id = p.run_id WHERE p.value IS NOT NULL"
    )
    conn.execute("DROP TABLE provenance_v1")
    conn.execute(_V2_TABLES["meta"])
    for ddl in _V2_INDEXES:
        conn.execute(ddl)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("created_by", f"robustscope {robustscope_version()}")],
    )


# --- 2 → 3 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    """What a v2 store's spec says about one evaluated attack (None: unknown)."""

    attack: str
    norm: str | None
    params: str | None
    eps: tuple[float, ...]
    n: int | None


def _settings(spec: Mapping[str, Any] | None) -> tuple[dict[str, _Setting], int | None]:
    """Label → setting of the spec's ``evaluation.attacks``, and ``evaluation.n``."""
    evaluation = (spec or {}).get("evaluation")
    if not isinstance(evaluation, Mapping):
        return {}, None
    n = evaluation.get("n")
    n = int(n) if isinstance(n, int | float) and not isinstance(n, bool) else None
    out: dict[str, _Setting] = {}
    for entry in evaluation.get("attacks") or []:
        if not isinstance(entry, Mapping):
            continue
        attack, norm = str(entry.get("attack", "pgd")), str(entry.get("norm", "linf"))
        params = entry.get("params") or {}
        eps = tuple(float(e) for e in entry.get("eps") or [] if isinstance(e, int | float))
        label = attack_label(attack, norm, entry.get("label"))
        out.setdefault(label, _Setting(attack, norm, canonical_params(params), eps, n))
    return out, n


def _guess(label: str, n: int | None) -> _Setting:
    """A label the spec no longer lists: ``<attack>-<norm>`` when it ends in a norm."""
    for norm in NORMS:
        if label.endswith(f"-{norm}") and len(label) > len(norm) + 1:
            return _Setting(label[: -len(norm) - 1], norm, None, (), n)
    return _Setting(label, None, None, (), n)


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Attack results and flags out of metric names into their tables; the claims table.

    ``<label>/<ε>/<quantity>`` metrics become ``attack_results`` rows and
    ``<label>/flag/<name>`` metrics ``attack_flags`` rows (message and value unknown: NULL);
    both are removed from ``metrics``. Attack, norm and parameters come from the entry of the
    study's stored spec (``evaluation.attacks``) with that label, the exact ε from that
    entry's ε list (v2 names kept six significant digits), n from ``evaluation.n``.
    """
    for ddl in (*_V3_TABLES.values(), *_V3_INDEXES):
        conn.execute(ddl)
    specs = {}
    for name, text in conn.execute("SELECT name, spec FROM studies").fetchall():
        try:
            specs[name] = _settings(json.loads(text))
        except (ValueError, TypeError):
            specs[name] = ({}, None)
    metrics = conn.execute(
        "SELECT m.run_id, r.study, m.name, m.value FROM metrics m JOIN runs r USING (run_id)"
    ).fetchall()
    results, flags, moved = [], [], []
    for run_id, study, name, value in metrics:
        parsed = parse_legacy_metric(str(name))
        if parsed is None:
            continue
        known, n = specs.get(study, ({}, None))
        setting = known.get(parsed.label) or _guess(parsed.label, n)
        if isinstance(parsed, LegacyAttackMetric):
            eps = find_eps(parsed.eps, setting.eps)
            results.append(
                (run_id, parsed.label, setting.attack, setting.norm, setting.params,
                 parsed.eps if eps is None else eps, parsed.quantity, value, setting.n)
            )  # fmt: skip
        else:
            flags.append((run_id, parsed.label, parsed.flag))
        moved.append((run_id, name))
    conn.executemany(
        "INSERT INTO attack_results (run_id, label, attack, norm, params, attack_eps, quantity, "
        "value, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        results,
    )
    conn.executemany(
        "INSERT INTO attack_flags (run_id, label, flag) VALUES (?, ?, ?)",
        flags,
    )
    conn.executemany("DELETE FROM metrics WHERE run_id = ? AND name = ?", moved)


# --- 3 → 4 -------------------------------------------------------------------------------------


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    """A run's health (NULL: not assessed — the report assesses such runs itself) and the
    escalation column of attack results (NULL: the spec's own evaluations, as all v3 rows)."""
    for ddl in _V4_COLUMNS:
        conn.execute(ddl)


_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
    3: _migrate_3_to_4,
}


def refuse_unreadable(version: int, path: Path) -> None:
    """StoreError unless this code reads schema ``version`` (0 = a new, empty file)."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: results store schema version {version} is newer than this robustscope "
            f"({robustscope_version()}) reads (version {SCHEMA_VERSION}); upgrade robustscope "
            "(pip install -U robustscope) or write this study to a new --out"
        )
    if version != 0 and version not in _MIGRATIONS and version != SCHEMA_VERSION:
        raise StoreError(
            f"{path}: unknown results store schema version {version} (this robustscope reads "
            f"version {SCHEMA_VERSION} and migrates versions "
            f"{', '.join(map(str, sorted(_MIGRATIONS)))}); write the study to a new --out"
        )


def check_or_init(conn: sqlite3.Connection, path: Path) -> None:
    """Verify the schema, or create / migrate it in one write transaction."""
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have created or migrated the store while we waited
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            refuse_unreadable(version, path)
            tables = _tables(conn)
            if version == 0 and tables:
                raise StoreError(
                    f"{path}: a SQLite database holding tables {sorted(tables)} but no "
                    "robustscope schema version, so not a results store; point to a study "
                    f"directory's {STORE_FILE} or write the study to a new --out"
                )
            if version == 0:
                _create(conn)
            elif version != SCHEMA_VERSION:
                original = version
                while version in _MIGRATIONS:
                    _MIGRATIONS[version](conn)
                    version += 1
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("migrated_from", str(original)), ("migrated", utc_now())],
                )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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
