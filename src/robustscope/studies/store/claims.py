"""Claims: which study driver is working on which run, so that two never train one run.

A driver (one ``robustscope study`` process, :class:`Claimant`) claims a run in the
``claims`` table before it executes it and releases the claim in the transaction that
records the run's outcome. Another driver on the same study directory skips a run that is
held, and takes over a claim that is *stale*:

* on the same host, when the holder's process is gone (its pid no longer runs, or is a
  zombie) — at once;
* on any host, when the holder's heartbeat is older than the lease (:data:`LEASE_S`): a live
  driver renews the heartbeat of all its claims every :data:`HEARTBEAT_S` seconds from a
  background thread (:class:`Heartbeat`), also while a long run trains.

So a claim left by a killed process is never waited on forever. "Same host" means the same
``socket.gethostname()``; drivers in containers sharing a hostname but not a pid namespace
would see each other as dead — give them distinct hostnames.

Example:
    >>> import tempfile
    >>> from robustscope.studies.store import open_store
    >>> store = open_store(tempfile.mkdtemp(), create=True)
    >>> store.add_study("s", {}); store.upsert_run("r", "s", {})
    >>> me, other = Claimant.here(), Claimant("another-driver", "elsewhere", 1)
    >>> store.claim_run("r", me).outcome, store.claim_run("r", other, now=1e10).outcome
    ('claimed', 'claimed')
    >>> store.claim_run("r", me).holder.host  # held by "elsewhere" until its lease expires
    'elsewhere'
    >>> store.close()
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from robustscope.studies.store.base import StoreBase, StoreError

__all__ = [
    "HEARTBEAT_S",
    "LEASE_S",
    "Claim",
    "ClaimResult",
    "Claimant",
    "Claims",
    "Heartbeat",
    "pid_alive",
]

#: seconds between two renewals of a live driver's claims
HEARTBEAT_S = 15.0
#: seconds without a heartbeat after which a claim is stale on any host
LEASE_S = 180.0


@dataclass(frozen=True)
class Claimant:
    """A driver that claims runs: a random ``token`` (one per :func:`run_study` call), and
    the ``host`` and ``pid`` that tell others whether it is still alive."""

    token: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Claimant:
        """A new claimant for this process."""
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid())


@dataclass(frozen=True)
class Claim:
    """A row of ``claims``: run ``run_id`` held by the driver ``token`` (``host``, ``pid``)
    since ``since``, last renewed at ``heartbeat`` (Unix seconds)."""

    run_id: str
    token: str
    host: str
    pid: int
    since: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        """``host vm, pid 4711, since 2026-01-02 10:00:00 UTC (last heartbeat 3 s ago)``."""
        age = (time.time() if now is None else now) - self.heartbeat
        since = _dt.datetime.fromtimestamp(self.since, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"host {self.host}, pid {self.pid}, since {since} (last heartbeat {age:.0f} s ago)"


@dataclass(frozen=True)
class ClaimResult:
    """What :meth:`Claims.claim_run` did.

    Attributes:
        run_id: the run.
        outcome: ``claimed`` (the caller holds it now), ``held`` (another live driver holds
            it) or ``measured`` (it is already done with the caller's measurement settings).
        holder: ``held``: the claim that holds it; ``claimed``: the stale claim taken over
            (None when the run was free).
        reason: why the taken-over claim was stale, else None.
    """

    run_id: str
    outcome: Literal["claimed", "held", "measured"]
    holder: Claim | None = None
    reason: str | None = None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie — ended, not yet reaped — does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] != "Z"


def stale_reason(claim: Claim, *, now: float, lease_s: float, host: str) -> str | None:
    """Why ``claim`` is stale for a driver on ``host`` at ``now``, or None if it holds."""
    if claim.host == host and not pid_alive(claim.pid):
        return f"its process (pid {claim.pid} on this host) has ended"
    if now - claim.heartbeat > lease_s:
        return f"no heartbeat for {now - claim.heartbeat:.0f} s (lease {lease_s:.0f} s)"
    return None


_CLAIM_COLUMNS = "run_id, token, host, pid, since, heartbeat"


class Claims(StoreBase):
    """The claim methods of :class:`robustscope.studies.store.Store` (see the module doc)."""

    def claim_of(self, run_id: str) -> Claim | None:
        """The claim holding run ``run_id``, or None."""
        row = self.conn.execute(
            f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else Claim(*row)

    def claim_run(
        self,
        run_id: str,
        claimant: Claimant,
        *,
        measure_hash: str | None = None,
        lease_s: float = LEASE_S,
        now: float | None = None,
    ) -> ClaimResult:
        """Claim run ``run_id`` for ``claimant``, in one transaction.

        Returns ``measured`` when ``measure_hash`` is given and the run is done with it
        (another driver finished it meanwhile); ``held`` when another driver's claim is not
        stale (see the module doc); else ``claimed``: the caller holds the run (a stale
        claim is taken over; its own claim is renewed).
        """
        now = time.time() if now is None else now
        with self.transaction() as c:
            self._require_run(run_id)
            if measure_hash is not None and self.measured(measure_hash, run_id):
                return ClaimResult(run_id, "measured")
            held = self.claim_of(run_id)
            reason = None
            if held is not None and held.token != claimant.token:
                reason = stale_reason(held, now=now, lease_s=lease_s, host=claimant.host)
                if reason is None:
                    return ClaimResult(run_id, "held", held)
            # a new claim, a stale one taken over, or this driver's own renewed (its `since` kept)
            c.execute(
                f"INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET token = excluded.token, "
                "host = excluded.host, pid = excluded.pid, heartbeat = excluded.heartbeat, "
                "since = CASE WHEN claims.token = excluded.token THEN claims.since "
                "ELSE excluded.since END",
                (run_id, claimant.token, claimant.host, claimant.pid, now, now),
            )
        taken = held if held is not None and held.token != claimant.token else None
        return ClaimResult(run_id, "claimed", taken, reason)

    def release_run(self, run_id: str, token: str) -> bool:
        """Drop the claim of ``run_id`` if the driver ``token`` holds it; whether it did."""
        with self.transaction() as c:
            cur = c.execute("DELETE FROM claims WHERE run_id = ? AND token = ?", (run_id, token))
            return cur.rowcount > 0

    def claimed_by(self, token: str) -> list[str]:
        """Ids of the runs the driver ``token`` holds."""
        rows = self.conn.execute(
            "SELECT run_id FROM claims WHERE token = ? ORDER BY run_id", (token,)
        )
        return [r for (r,) in rows]

    def renew_claims(self, token: str, now: float | None = None) -> int:
        """Set the heartbeat of every claim of the driver ``token`` to ``now``; how many."""
        return renew(self.conn, token, now)


def renew(conn: sqlite3.Connection, token: str, now: float | None = None) -> int:
    """Set the heartbeat of the driver ``token``'s claims to ``now`` (one statement, so atomic
    on an autocommit connection); returns how many it holds."""
    cur = conn.execute(
        "UPDATE claims SET heartbeat = ? WHERE token = ?",
        (time.time() if now is None else now, token),
    )
    return cur.rowcount


class Heartbeat:
    """Renews the claims of the driver ``token`` every ``interval`` seconds from a daemon
    thread with its own connection, while the ``with`` block runs.

    A renewal that fails (the database stayed locked beyond the busy timeout) is retried at
    the next beat; :attr:`beats` counts the renewals that committed.

    Example:
        >>> import tempfile, time
        >>> from robustscope.studies import open_store
        >>> store = open_store(tempfile.mkdtemp(), create=True)
        >>> with Heartbeat(store.path, Claimant.here().token, interval=0.01) as beat:
        ...     time.sleep(0.1)  # a run training for hours, its claims kept fresh
        >>> beat.beats > 0
        True
        >>> store.close()
    """

    def __init__(self, path: Path, token: str, interval: float = HEARTBEAT_S) -> None:
        if not interval > 0:
            raise StoreError(f"heartbeat interval must be > 0 seconds, got {interval}")
        self.path, self.token, self.interval = Path(path), token, float(interval)
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="robustscope-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            while not self._stop.wait(self.interval):
                try:
                    renew(conn, self.token)
                    self.beats += 1
                except sqlite3.Error:
                    pass  # the database stayed locked: the next beat tries again
        finally:
            conn.close()
