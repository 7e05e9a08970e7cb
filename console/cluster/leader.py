"""Which console process runs the work that must run once.

Several console processes may share one database (replicas behind a load balancer on one
PostgreSQL, or a restarted process while the old one is still shutting down). Every
process serves every route, but the periodic jobs that change shared state — rollups and
retention, log retention, batch-id pruning, blackbox probes, alert rule evaluation and
notification delivery — run in exactly one of them, the *leader*. Followers keep their
alert state fresh from the database instead of evaluating (docs/scaling.md).

Leadership is a lock the operating system or the database releases by itself when the
holder dies, so a ``kill -9`` hands the work over at the next poll (``poll_s``, 2 s):

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a
  connection of its own, outside the pool. The key is derived from the schema
  (``hashtext(current_schema() || '.fleetdeck.leader')``), so consoles of different schemas
  of one database do not contend. The connection has TCP keepalives (idle 5 s, 3 probes of
  2 s), so a leader whose host vanished loses the lock within ~15 s on the server; the
  leader checks its connection on every poll and steps down when it is gone.
  (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS)
- SQLite: an exclusive ``flock`` on ``<database file>.leader`` beside the database file
  (released when the process exits, however it exits). An in-memory database has one
  process by definition: always the leader.

Threading: acquisition and checks are blocking calls made on this service's own thread;
``is_leader`` is a plain attribute read by the jobs on the IOLoop.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("fleetdeck.cluster")

POLL_S = 2.0
# The key is the schema's: consoles of different schemas of one database lead separately.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.fleetdeck.leader'))")
# libpq keepalive parameters (https://www.postgresql.org/docs/current/libpq-connect.html).
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


class Leadership:
    """``is_leader``: whether this process runs the run-once jobs now. ``try_acquire()``
    (blocking) is called once at start so a single process leads from its first moment;
    ``start()`` then polls every ``poll_s`` seconds on the running loop. ``on_change(bool)``
    callbacks run on the IOLoop when leadership is gained or lost."""

    def __init__(self, database_url: str, poll_s: float = POLL_S, registry: CollectorRegistry | None = None) -> None:
        self.url = database_url
        self.poll_s = poll_s
        self.is_leader = False
        self.changes = 0  # times leadership was gained (exported at /metrics)
        self._conn: Connection | None = None  # PostgreSQL: the connection holding the lock
        self._file: Any = None  # SQLite: the locked file
        self._engine: Engine | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="leader")
        self._task: asyncio.Task | None = None
        self._closed = False
        self._listeners: list[Callable[[bool], None]] = []
        # Set as they change, not computed when scraped: with several workers, the value in
        # the shared files is what /metrics reads (console/telemetry.py). There the leader
        # flag is the largest of the live workers' (1 if one of them leads) and the changes
        # are summed over every worker that ran.
        self._m_leader = Gauge("fleetdeck_leader", "1 while this console runs the run-once jobs (rollups, "
                               "retention, probes, alert evaluation) of the consoles sharing its database.",
                               registry=registry, multiprocess_mode="livemax") if registry is not None else None
        self._m_changes = Gauge("fleetdeck_leader_changes_total", "Times this console became the leader.",
                                registry=registry, multiprocess_mode="sum") if registry is not None else None

    def leads(self) -> bool:
        """Whether this console runs the run-once jobs now (the jobs' gate)."""
        return self.is_leader

    def on_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    # -- blocking, on the leader thread (or at start) ----------------------------------------
    def try_acquire(self) -> bool:
        """Take the lock if free, or check that the held one is still ours; returns
        ``is_leader``. Never raises: an unreachable database means not leading."""
        try:
            held = self._check_postgres() if self.url.startswith("postgresql") else self._check_sqlite()
        except Exception as exc:  # noqa: BLE001 - any database failure ends leadership until it is back
            log.warning("leadership check failed: %s", exc)
            self._drop()
            held = False
        if held and not self.is_leader:
            self.changes += 1
            if self._m_changes is not None:
                self._m_changes.inc()
            log.info("this console now runs the run-once jobs (leader)")
        elif self.is_leader and not held:
            log.warning("this console no longer leads; another replica takes the run-once jobs")
        self._set_leader(held)
        return held

    def _set_leader(self, held: bool) -> None:
        self.is_leader = held
        if self._m_leader is not None:
            self._m_leader.set(float(held))

    def _check_postgres(self) -> bool:
        if self._conn is not None:
            self._conn.execute(text("SELECT 1"))  # raises when the connection (and the lock) is gone
            return True
        if self._engine is None:
            self._engine = create_engine(self.url, poolclass=NullPool, connect_args=_KEEPALIVES)
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = conn.execute(_TRY_LOCK).scalar()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _check_sqlite(self) -> bool:
        path = self.url.split("///", 1)[-1]
        if not path or path == ":memory:":
            return True
        if self._file is not None:
            return True
        # Created owner-only, as every file beside the database (a follower creates it too).
        fd = os.open(f"{path}.leader", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._file = os.fdopen(fd, "r+")  # held open while leading
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # ends the session: the server releases the lock
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._conn = None
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None

    # -- on the IOLoop ---------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="leadership")

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = self.is_leader
            now = await loop.run_in_executor(self._executor, self.try_acquire)
            if now != before:
                for listener in self._listeners:
                    listener(now)
            await asyncio.sleep(self.poll_s)

    def close(self) -> None:
        """Step down: the lock is released at once, for a replica taking over."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if not self._closed:  # idempotent: the lock is dropped on the thread that took it
            self._closed = True
            self._executor.submit(self._drop).result(timeout=10)
            self._executor.shutdown(wait=False)
        self._set_leader(False)
        if self._engine is not None:
            self._engine.dispose()
