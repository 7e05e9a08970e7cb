"""State every console keeps in memory but the database owns: silences, maintenance
windows and alerts posted to the Alertmanager API (docs/scaling.md).

The console that changes such state writes it to the database, updates its own memory,
then calls ``changed(name)``: the relay (console/cluster/relay.py: PostgreSQL
``NOTIFY``, or datagrams between processes on one SQLite file) tells every other console,
which re-reads that state from the database at once (milliseconds). Relaying is best
effort, so each console also re-reads everything every ``REFRESH_S``: a message lost
while a console's listener reconnected delays the change by at most that.

Threading: the re-reads are coroutines run on the IOLoop (each reads through the
database read pool); a notice for a state whose re-read is running makes it run once
more after it, so the last change is always read.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Protocol

log = logging.getLogger("fleetdeck.cluster.shared")

REFRESH_S = 10.0

Reread = Callable[[], Awaitable[object]]


class ChangeRelay(Protocol):
    on_changed: Callable[[str], None] | None

    def changed(self, name: str) -> None: ...


class SharedState:
    """``watch(name, reread)`` registers how to re-read state ``name``; ``changed(name)``
    (after the commit) makes the other consoles re-read it. ``relay`` None: the console
    is alone on its database (SQLite in memory), nothing is sent, the periodic re-read
    still runs."""

    def __init__(self, relay: ChangeRelay | None, refresh_s: float = REFRESH_S) -> None:
        self.relay = relay
        self.refresh_s = refresh_s
        self._rereads: dict[str, Reread] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._task: asyncio.Task | None = None
        if relay is not None:
            relay.on_changed = self.received

    def watch(self, name: str, reread: Reread) -> None:
        self._rereads[name] = reread

    def changed(self, name: str) -> None:
        """Tell the other consoles that ``name`` changed (never blocks, never raises)."""
        if self.relay is not None:
            self.relay.changed(name)

    def received(self, name: str) -> None:
        """Another console changed ``name``: re-read it (on the IOLoop)."""
        if name not in self._rereads:
            return
        if name in self._running:
            self._again.add(name)
            return
        self._running[name] = asyncio.ensure_future(self._reread(name))

    async def _reread(self, name: str) -> None:
        try:
            while True:
                self._again.discard(name)
                try:
                    await self._rereads[name]()
                except Exception:  # noqa: BLE001 - a database outage: the periodic re-read retries
                    log.exception("re-reading shared state %s failed", name)
                if name not in self._again:
                    return
        finally:
            self._running.pop(name, None)

    def start(self) -> None:
        """Re-read every watched state now and every ``refresh_s`` (on the running loop)."""
        for name in list(self._rereads):
            self.received(name)
        self._task = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            for name in list(self._rereads):
                self.received(name)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._running.values()):
            task.cancel()
