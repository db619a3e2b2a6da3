"""The results store of a study: one SQLite database, ``runs/<study>/results.sqlite``.

Only the study driver writes it; readers (``robustscope show``, the report, a notebook)
may read while the driver writes. The schema, the vocabulary (:mod:`.vocab`), the NaN
convention, the migrations and the claims are documented in ``docs/store.md``; this package
is their only writer.

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
  naming the file. Stores of versions 1 to 3 are migrated in place, in one
  transaction.
* **Non-finite values.** Scalars are ``REAL``: ±inf are stored as such, NaN as ``NULL``
  (SQLite has no NaN), and a ``NULL`` reads back as NaN. A quantity that was never
  measured has no row at all.
* **Results with structure.** Attack results are rows with columns (run, label, attack,
  norm, params, ε, quantity, value, n, escalates), flags rows of their own; no metric name is ever
  parsed (except v2 names, once, by the migration).
* **One driver per run.** A driver claims a run before executing it (:mod:`.claims`); a
  second driver skips held runs and takes over stale claims.

The package, by idea: :mod:`.vocab` (names), :mod:`.records` (typed attack results),
:mod:`.base` (errors, values, transactions), :mod:`.schema` (tables, migrations),
:mod:`.writes` / :mod:`.reads` (the methods of :class:`Store`), :mod:`.views` (wide pandas
views), :mod:`.claims`, :mod:`.provenance`, :mod:`.connection` (:func:`open_store`),
:mod:`.export`.

Example:
    >>> import tempfile
    >>> from robustscope.studies import AttackResult, open_store
    >>> with open_store(tempfile.mkdtemp(), create=True) as store:
    ...     store.add_study("demo", {"epochs": 1})
    ...     store.upsert_run("abc123", "demo", {"lr": 0.1}, method="pgd", eps=0.1, seed=0)
    ...     store.add_metrics("abc123", {"clean_accuracy": 0.9})
    ...     store.set_attack_results("abc123", [AttackResult(
    ...         "pgd-linf", "pgd", "linf", {"steps": 20}, n=100, epsilons=(0.1,),
    ...         robust_accuracy=(0.4,), robust_accuracy_on_correct=(0.44,))])
    ...     float(store.metrics_table().loc["abc123", "clean_accuracy"])
    ...     store.robustness_table()[["label", "attack_eps", "robust_accuracy"]].values.tolist()
    0.9
    [['pgd-linf', 0.1, 0.4]]
"""

from __future__ import annotations

from robustscope.studies.store.base import StoreError
from robustscope.studies.store.claims import (
    HEARTBEAT_S,
    LEASE_S,
    Claim,
    Claimant,
    ClaimResult,
    Heartbeat,
)
from robustscope.studies.store.connection import Store, open_store
from robustscope.studies.store.export import EXPORT_TABLES, export
from robustscope.studies.store.provenance import collect_provenance
from robustscope.studies.store.records import AttackFlag, AttackResult
from robustscope.studies.store.vocab import FORMAT, SCHEMA_VERSION, STATUSES, STORE_FILE

__all__ = [
    "EXPORT_TABLES",
    "FORMAT",
    "HEARTBEAT_S",
    "LEASE_S",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_FILE",
    "AttackFlag",
    "AttackResult",
    "Claim",
    "ClaimResult",
    "Claimant",
    "Heartbeat",
    "Store",
    "StoreError",
    "collect_provenance",
    "export",
    "open_store",
]
