"""Stored maintenance windows, their API operations and the muter that consults them.

Threading: writes go through the database writer (``Database.write``); reads are
answered from memory (a window's occurrences are computed, never stored): the compiled
windows live in memory, replaced whole under a lock after every change (and re-read when
another console of the database changed them: console/cluster/shared.py, name
``windows``), so
``muted_by`` (called by the dispatcher and the alerting service on their threads for
every alert) reads a snapshot and bisects each window's cached occurrences.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from threading import Lock
from typing import Any, Callable

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.cluster.shared import SharedState
from console.errors import Conflict, NotFound
from console.i18n import tx
from console.maintenance.windows import Window
from console.storage.database import Database, execute_dml
from console.storage.models import Host, MaintenanceWindow

log = logging.getLogger("fleetdeck.maintenance")

MAX_NEXT = 100  # occurrences one ``next`` request lists
MAX_SPANS = 2000  # occurrences one chart request lists per window
HOSTS_REFRESH_S = 30.0  # how often the hosts' ``environment`` agent labels are re-read


def _row_to_window(row: MaintenanceWindow) -> Window:
    return Window.build(row.name, row.dtstart, row.duration_s, row.rrule, row.timezone,
                        orjson.loads(row.matchers), orjson.loads(row.hosts), orjson.loads(row.apps),
                        orjson.loads(row.environments), row.until, row.comment, row.created_by, row.created_at)


class MaintenanceService:
    """Windows by name. ``app_hosts``: app name -> the hosts it deploys to (from the
    ``apps:`` section). A ``Muter`` (console/notify/muting.py): reasons ``window:<name>``."""

    def __init__(self, db: Database, audit: AuditService, app_hosts: Mapping[str, frozenset],
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.audit = audit
        self.app_hosts = dict(app_hosts)
        self.clock = clock
        self._lock = Lock()
        self._windows: dict[str, Window] = {}
        self._host_env: dict[str, str] = {}
        self._task: asyncio.Task | None = None
        # Tells the other consoles of the database about a change; set by Services.
        self.shared: SharedState | None = None
        self._writing: asyncio.Lock | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self, session: Session) -> int:
        """Read every stored window and the hosts' environments; returns the window count.
        A stored window that no longer validates (a time zone removed from the system's
        tz database) is logged and left out."""
        windows = {}
        for row in session.scalars(select(MaintenanceWindow)):
            try:
                windows[row.name] = _row_to_window(row)
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
                log.error("maintenance window %s not loaded: %s", row.name, exc)
        envs = self._read_envs(session)
        with self._lock:
            self._windows, self._host_env = windows, envs
        return len(windows)

    async def reread(self) -> int:
        """Read the windows again (another console changed them); returns how many.
        Serialised with this console's own changes, so a re-read never undoes one in memory."""
        async with self._guard():
            return await self.db.read(self.load)

    def _guard(self) -> asyncio.Lock:
        if self._writing is None:
            self._writing = asyncio.Lock()
        return self._writing

    def _changed(self) -> None:
        if self.shared is not None:
            self.shared.changed("windows")

    @staticmethod
    def _read_envs(session: Session) -> dict[str, str]:
        envs = {}
        for name, labels in session.execute(select(Host.name, Host.labels)):
            env = orjson.loads(labels or "{}").get("environment")
            if isinstance(env, str):
                envs[name] = env
        return envs

    def start(self) -> None:
        """Load the windows and keep the hosts' environments fresh (on the running loop)."""
        self.db.run(self.load)
        self._task = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(HOSTS_REFRESH_S)
            try:
                envs = await self.db.read(self._read_envs)
                with self._lock:
                    self._host_env = envs
            except Exception:  # a database outage: logged, the next round retries
                log.exception("maintenance: reading host environments failed")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- muting ------------------------------------------------------------------------------
    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """``window:<name>`` for each window open at ``now`` whose scope covers ``labels``."""
        with self._lock:
            windows, envs = list(self._windows.values()), self._host_env
        return [f"window:{w.name}" for w in windows
                if w.open_at(now) is not None and w.covers(labels, self.app_hosts, envs)]

    # -- API ---------------------------------------------------------------------------------
    async def create(self, doc: Any, actor: str, source: str) -> dict:
        """Store a new window from the validated body (console/schemas.py NewWindow).
        Raises InvalidInput (400) for a bad rule, zone, time or matcher, Conflict (409)
        for a name in use."""
        now = self.clock()
        window = Window.build(doc.name, doc.dtstart, doc.duration, doc.rrule, doc.timezone, doc.matchers, doc.hosts,
                              doc.apps, doc.environments, doc.until, doc.comment, actor, now)
        async with self._guard():
            await self.db.write(self._insert, window, actor, source)
            with self._lock:
                self._windows = {**self._windows, window.name: window}
        self._changed()
        return window.public(now)

    def _insert(self, session: Session, w: Window, actor: str, source: str) -> None:
        if session.execute(select(MaintenanceWindow.id).where(MaintenanceWindow.name == w.name)).first():
            raise Conflict(tx("a maintenance window named {name} exists; delete it first", name=repr(w.name)), {"name": w.name})
        session.add(MaintenanceWindow(
            name=w.name, dtstart=w.dtstart.isoformat(), duration_s=w.duration_s, rrule=w.rrule, timezone=w.timezone,
            matchers=orjson.dumps(w.matchers).decode(), hosts=orjson.dumps(w.hosts).decode(),
            apps=orjson.dumps(w.apps).decode(), environments=orjson.dumps(w.environments).decode(), until=w.until,
            comment=w.comment, created_by=actor, created_at=w.created_at))
        self.audit.record(session, actor, "maintenance.create", w.name,
                          {"rrule": w.rrule, "timezone": w.timezone, "dtstart": w.dtstart.isoformat()}, source)

    async def delete(self, name: str, actor: str, source: str) -> dict:
        """Delete window ``name``; raises NotFound (404)."""
        async with self._guard():
            await self.db.write(self._delete, name, actor, source)
            with self._lock:
                self._windows = {k: w for k, w in self._windows.items() if k != name}
        self._changed()
        return {"name": name, "deleted": True}

    def _delete(self, session: Session, name: str, actor: str, source: str) -> None:
        if not execute_dml(session, delete(MaintenanceWindow).where(MaintenanceWindow.name == name)).rowcount:
            raise NotFound(tx("no maintenance window {name}", name=repr(name)), {"name": name})
        self.audit.record(session, actor, "maintenance.delete", name, {}, source)

    def _get(self, name: str) -> Window:
        with self._lock:
            window = self._windows.get(name)
        if window is None:
            raise NotFound(tx("no maintenance window {name}", name=repr(name)), {"name": name})
        return window

    async def get(self, name: str, count: int) -> dict:
        """One window with its next ``count`` occurrences (the one open now first), each
        ``{"start", "end"}`` Unix seconds and ``start_local``/``end_local`` in its zone."""
        window, now = self._get(name), self.clock()
        out = window.public(now)
        out["occurrences"] = [{"start": s, "end": e, "start_local": window.local(s), "end_local": window.local(e)}
                              for s, e in window.next_occurrences(now, min(count, MAX_NEXT))]
        return out

    async def list(self, host: str | None = None, start: float | None = None, end: float | None = None) -> list[dict]:
        """Every window by name. With ``host``, only windows whose hosts, apps or
        environment can cover that host (matchers are not consulted: they apply to alert
        labels); with ``start`` and ``end`` each window carries ``occurrences`` in that
        range (``[{"start", "end"}]``, for charts)."""
        now = self.clock()
        with self._lock:
            windows, envs = sorted(self._windows.values(), key=lambda w: w.name), self._host_env
        out = []
        for w in windows:
            if host is not None and not self._may_cover_host(w, host, envs):
                continue
            entry = w.public(now)
            if start is not None and end is not None:
                entry["occurrences"] = [{"start": s, "end": e} for s, e in w.occurrences(start, end, MAX_SPANS)]
            out.append(entry)
        return out

    def _may_cover_host(self, w: Window, host: str, envs: Mapping[str, str]) -> bool:
        if w.hosts and host not in w.hosts:
            return False
        if w.apps and not any(host in self.app_hosts.get(app, ()) for app in w.apps):
            return False
        if w.environments and envs.get(host) not in w.environments:
            return False
        # Matchers on other labels (alertname, severity) may cover some of the host's alerts.
        return all(test(host) for name, test in w._tests if name in ("host", "instance"))
