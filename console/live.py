"""The live bus: in-process publish/subscribe of JSON-able frames by topic.

Topics are ``host:NAME`` (a batch from NAME was committed), ``logs:NAME`` and
``deploy:ID``. Publishing and callbacks happen on the IOLoop thread; a subscriber whose
callback raises is dropped (and the error logged) so one broken socket never stops the
others. The bus belongs to one console instance; there is no global registry.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from typing import Any, Callable, Protocol

TOPIC_RE = re.compile(r"^(host|logs|deploy):[A-Za-z0-9._-]{1,253}$")
log = logging.getLogger(__name__)

Callback = Callable[[str, Any], None]


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Callback]] = defaultdict(set)

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Deliver every later ``publish(topic, data)`` to ``callback(topic, data)``.
        Raises ValueError for a malformed topic."""
        if not TOPIC_RE.match(topic):
            raise ValueError(f"invalid topic {topic!r}")
        self._subscribers[topic].add(callback)

    def unsubscribe(self, topic: str, callback: Callback) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(callback)
            if not subscribers:
                del self._subscribers[topic]

    def unsubscribe_all(self, callback: Callback) -> None:
        for topic in list(self._subscribers):
            self.unsubscribe(topic, callback)

    def publish(self, topic: str, data: Any) -> int:
        """Send ``data`` to the topic's subscribers; returns how many received it."""
        delivered = 0
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(topic, data)
                delivered += 1
            except Exception:  # a broken subscriber must not break ingest
                log.exception("live subscriber failed on %s; dropping it", topic)
                self.unsubscribe(topic, callback)
        return delivered

    def has_subscribers(self, topic: str) -> bool:
        """Whether ``publish(topic, ...)`` would reach anyone (so a costly frame can be skipped)."""
        return bool(self._subscribers.get(topic))

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


class Recheckable(Protocol):
    async def recheck(self) -> None:
        """Authenticate again with the credential the socket opened with; close if refused."""


class SocketRegistry:
    """The open live sockets of one console. ``watch()`` (started with the services) reads
    the revocation generation (console/auth/revocation.py) every ``interval_s`` and, when
    it moved (a token revoked, a user disabled or demoted, a logout, in this process or
    any other on the same database), drops the cached token lookups and has every socket
    recheck its principal, so a revoked credential stops streaming within a second.
    Used on the IOLoop thread only."""

    def __init__(self, db: Any, forget_tokens: Callable[[], None], interval_s: float = 0.5) -> None:
        self._db = db
        self._forget_tokens = forget_tokens
        self._interval_s = interval_s
        self._sockets: set[Recheckable] = set()

    def add(self, sock: Recheckable) -> None:
        self._sockets.add(sock)

    def discard(self, sock: Recheckable) -> None:
        self._sockets.discard(sock)

    def __len__(self) -> int:
        return len(self._sockets)

    async def watch(self) -> None:
        from console.auth import revocation  # storage imports stay out of the bus's users

        seen = await self._db.read(revocation.current)
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                generation = await self._db.read(revocation.current)
            except Exception:  # the database is away: try again next interval
                log.warning("cannot read the revocation generation; live sockets not rechecked", exc_info=True)
                continue
            if generation == seen:
                continue
            seen = generation
            self._forget_tokens()
            for sock in list(self._sockets):
                try:
                    await sock.recheck()
                except Exception:  # one socket's failure must not spare the others
                    log.exception("live socket recheck failed")
