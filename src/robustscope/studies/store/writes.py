"""The store's writers: studies, runs and their status, history, metrics, probe results with
their arrays, attack results with their flags, provenance.

Every method is one transaction (or a savepoint inside an enclosing
:meth:`~robustscope.studies.store.base.StoreBase.transaction`); the conventions are those of
``docs/store.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from robustscope.io import write_bytes
from robustscope.studies.store.base import (
    StoreBase,
    StoreError,
    check_status,
    is_number,
    real,
    safe_component,
    to_json,
)
from robustscope.studies.store.provenance import collect_provenance
from robustscope.studies.store.records import AttackResult
from robustscope.studies.store.vocab import ARTIFACTS_DIR, HEALTH_STATUSES, canonical_params

__all__ = ["Writes"]


def _describe(r: AttackResult) -> str:
    return f"{r.attack} {r.norm} {canonical_params(r.params)}"


class Writes(StoreBase):
    """The write methods of :class:`robustscope.studies.store.Store`."""

    def add_study(self, name: str, spec: Mapping[str, Any]) -> None:
        """Record study ``name`` and its spec (a JSON object); an existing spec is replaced."""
        now = time.time()
        with self.transaction() as c:
            c.execute(
                "INSERT INTO studies (name, spec, created, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated = excluded.updated",
                (name, to_json(spec, f"spec of study {name!r}"), now, now),
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
            check_status(status)
        now = time.time()
        row = (
            run_id,
            study,
            to_json(config, f"config of run {run_id!r}"),
            method,
            None if eps is None else real(eps, f"eps of run {run_id!r}"),
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

    def remove_run(self, run_id: str) -> None:
        """Delete run ``run_id`` with everything stored for it (history, metrics, attack
        results, probes and their artifact files, provenance, claim); nothing when absent."""
        with self.transaction() as c:
            old = c.execute("SELECT path FROM artifacts WHERE run_id = ?", (run_id,))
            self._touched.extend(p for (p,) in old.fetchall())
            c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

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
        """Move a run to ``status`` (one of ``STATUSES``); times are Unix seconds.

        ``running`` counts an attempt, sets ``started`` (now unless given) and clears
        ``finished`` and ``error``; ``done`` / ``failed`` set ``finished`` (now unless given)
        and ``error``; ``pending`` sets ``error``. ``checkpoint`` (path of the run directory)
        and ``train_time_s`` are kept unless given.
        """
        check_status(status)
        now = time.time()
        t = None if train_time_s is None else real(train_time_s, "train_time_s")
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

    def set_health(
        self, run_id: str, health: str | None, reason: str | None = None, fix: str | None = None
    ) -> None:
        """Whether run ``run_id`` trained (``runs.health``: one of ``HEALTH_STATUSES``, or None:
        not assessed), why not (``reason``) and the likely fix (``fix``); replaces the old mark.
        The rule is :func:`robustscope.studies.health.assess`."""
        if health is not None and health not in HEALTH_STATUSES:
            raise StoreError(
                f"health of run {run_id!r} must be one of {', '.join(HEALTH_STATUSES)} or None, "
                f"got {health!r}"
            )
        with self.transaction() as c:
            self._require_run(run_id)
            c.execute(
                "UPDATE runs SET health = ?, health_reason = ?, health_fix = ?, updated = ? "
                "WHERE run_id = ?",
                (health, reason, fix, time.time(), run_id),
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
                if key != "epoch" and is_number(value):
                    values.append((run_id, epoch, str(key), real(value, f"history {key!r}")))
        with self.transaction() as c:
            self._require_run(run_id)
            c.executemany(
                "INSERT INTO history (run_id, epoch, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(run_id, epoch, key) DO UPDATE SET value = excluded.value",
                values,
            )

    def add_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        """Final scalar metrics of a run (names: ``docs/store.md``); re-adding a name replaces.

        Attack results are not metrics: store them with :meth:`set_attack_results`.
        """
        values = [
            (run_id, str(k), real(v, f"metric {k!r} of run {run_id!r}")) for k, v in metrics.items()
        ]
        with self.transaction() as c:
            self._require_run(run_id)
            c.executemany(
                "INSERT INTO metrics (run_id, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(run_id, name) DO UPDATE SET value = excluded.value",
                values,
            )

    def set_attack_results(self, run_id: str, results: Iterable[AttackResult]) -> None:
        """The attack results of a run: they replace, as a whole, every attack result and
        flag stored for it (a run is measured as a whole).

        Each :class:`~robustscope.studies.store.records.AttackResult` becomes one
        ``attack_results`` row per (ε, quantity) and one ``attack_flags`` row per flag. Labels
        must be unique within the run (:class:`StoreError` otherwise: two spec entries with
        the same attack and norm need distinct ``label``\\ s). A flag raised twice by one
        evaluation is stored once (the first). A result that ``escalates`` another must find
        it among ``results``.
        """
        results = list(results)
        seen: dict[str, AttackResult] = {}
        rows, flags = [], []
        for r in results:
            if not isinstance(r, AttackResult):
                raise StoreError(
                    f"attack results of run {run_id!r} must be AttackResult records, "
                    f"got {type(r).__name__}"
                )
            if r.label in seen:
                raise StoreError(
                    f"{self.path}: run {run_id!r} has two attack results labelled {r.label!r} "
                    f"({_describe(seen[r.label])} and {_describe(r)}); give the spec's "
                    "evaluation.attacks entries distinct labels (label: ...)"
                )
            seen[r.label] = r
        for r in results:
            if r.escalates is not None and r.escalates not in seen:
                raise StoreError(
                    f"{self.path}: attack result {r.label!r} of run {run_id!r} escalates "
                    f"{r.escalates!r}, which is not among the run's results"
                )
            params = canonical_params(r.params)
            what = f"attack result {r.label!r} of run {run_id!r}"
            for eps, quantity, value in r.rows():
                rows.append(
                    (run_id, r.label, r.attack, r.norm, params, float(eps), quantity,
                     real(value, f"{what} at ε={eps:g}"), int(r.n), r.escalates)
                )  # fmt: skip
            for f in r.flags:
                number = None if f.value is None else real(f.value, f"{what}: flag {f.name!r}")
                flags.append((run_id, r.label, f.name, f.message, number))
        with self.transaction() as c:
            self._require_run(run_id)
            c.execute("DELETE FROM attack_results WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM attack_flags WHERE run_id = ?", (run_id,))
            c.executemany(
                "INSERT INTO attack_results (run_id, label, attack, norm, params, attack_eps, "
                "quantity, value, n, escalates) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            c.executemany(
                "INSERT INTO attack_flags (run_id, label, flag, message, value) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                flags,
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
            (run_id, probe, split, str(k), real(v, f"{label}: {k!r}")) for k, v in scalars.items()
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
            name = f"{safe_component(str(key))}.{digest[:16]}.npz"
            rel = "/".join([ARTIFACTS_DIR, *map(safe_component, (run_id, probe, split)), name])
            encoded.append(
                (run_id, probe, split, str(key), rel, json.dumps(list(arr.shape)), arr.dtype.str,
                 digest, len(data), data)
            )  # fmt: skip
        with self.transaction() as c:
            self._require_run(run_id)
            for *_, rel, _, _, _, _, data in encoded:
                self._touched.append(rel)
                write_bytes(self.root / rel, data)
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
        Values are stored as text; None (unknown) is not stored; re-adding a key replaces it.
        For a study-level record ``study`` may be omitted when the store holds one study.
        """
        if info is None:
            info = collect_provenance()
        now = time.time()
        with self.transaction() as c:
            if run_id is not None:
                study = self._require_run(run_id)
            elif study is None:
                names = [n for (n,) in c.execute("SELECT name FROM studies")]
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
