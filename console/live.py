"""The live bus: in-process publish/subscribe of JSON-able frames by topic.

Topics are ``host:NAME`` (a batch from NAME was committed), ``logs:NAME`` and
``deploy:ID``. Publishing and callbacks happen on the IOLoop thread; a subscriber whose
callback raises is dropped (and the error logged) so one broken socket never stops the
others. The bus belongs to one console instance; there is no global registry.

Consoles sharing a PostgreSQL database relay their frames to each other
(console/cluster/relay.py): ``publish`` also hands the frame to the relay, and frames
other consoles published arrive through ``start``'s listener, so callers publish as if
they were alone.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from prometheus_client import Gauge

TOPIC_RE = re.compile(r"(host|logs|deploy):[A-Za-z0-9._-]{1,253}")
log = logging.getLogger(__name__)

Callback = Callable[[str, Any], None]


class Relay(Protocol):
    """Carries frames to the other consoles of the database (console/cluster/relay.py)."""

    def start(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[str, Any], object]) -> None: ...
    def send_frame(self, topic: str, data: Any) -> None: ...
    def announce(self, topics: list[str]) -> None: ...
    def watched_elsewhere(self, topic: str) -> bool: ...
    on_hello: Callable[[], None] | None
    def close(self) -> None: ...


class LiveBus:
    """``subscriptions``: a gauge kept at :meth:`subscriber_count` (``/metrics``)."""

    def __init__(self, relay: Relay | None = None, announce_s: float = 10.0,
                 subscriptions: Gauge | None = None) -> None:
        self._subscribers: dict[str, set[Callback]] = defaultdict(set)
        self.relay = relay
        self._announce_s = announce_s
        self._announcing: asyncio.Task | None = None
        self._gauge = subscriptions

    def start(self) -> None:
        """Start relaying (on the running loop): frames of other consoles are delivered
        here, and this console's topics are announced every ``announce_s``."""
        if self.relay is not None and self._announcing is None:
            self.relay.on_hello = self._hello
            self.relay.start(asyncio.get_running_loop(), self._deliver)
            self._announcing = asyncio.get_running_loop().create_task(self._announce(), name="live-announce")

    def _hello(self) -> None:  # another console started: tell it what is watched here
        if self.relay is not None:
            self.relay.announce(sorted(self._subscribers))

    async def _announce(self) -> None:
        while self.relay is not None:
            self.relay.announce(sorted(self._subscribers))
            await asyncio.sleep(self._announce_s)

    def close(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()
            self._announcing = None
        if self.relay is not None:
            self.relay.close()

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Deliver every later ``publish(topic, data)`` to ``callback(topic, data)``.
        Raises ValueError for a malformed topic."""
        if not TOPIC_RE.fullmatch(topic):
            raise ValueError(f"invalid topic {topic!r}")
        if topic not in self._subscribers and self.relay is not None:
            self.relay.announce([topic])  # the others build frames of this topic from now on
        self._subscribers[topic].add(callback)
        self._counted()

    def unsubscribe(self, topic: str, callback: Callback) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(callback)
            if not subscribers:
                del self._subscribers[topic]
            self._counted()

    def unsubscribe_all(self, callback: Callback) -> None:
        for topic in list(self._subscribers):
            self.unsubscribe(topic, callback)

    def publish(self, topic: str, data: Any) -> int:
        """Send ``data`` to the topic's subscribers, here and (through the relay) on the
        other consoles of the database; returns how many received it here. Call after the
        commit that made the frame true."""
        if self.relay is not None and self.relay.watched_elsewhere(topic):
            self.relay.send_frame(topic, data)
        return self._deliver(topic, data)

    def _deliver(self, topic: str, data: Any) -> int:
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
        """Whether ``publish(topic, ...)`` would reach anyone, here or on another console
        (so a costly frame can be skipped)."""
        return bool(self._subscribers.get(topic)) or (self.relay is not None and self.relay.watched_elsewhere(topic))

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def _counted(self) -> None:
        # Set as it changes, not when scraped: with several workers each one's count is
        # in the shared files, whichever worker answers /metrics.
        if self._gauge is not None:
            self._gauge.set(self.subscriber_count())


class Recheckable(Protocol):
    def hold(self) -> None:
        """Keep frames back until the next ``recheck``."""

    async def recheck(self) -> None:
        """Authenticate again with the credential the socket opened with; close if refused,
        else send the frames held back."""


class SocketRegistry:
    """The open live sockets of one console, rechecked whenever credentials are taken away.

    A change made by this process (a commit that bumped the revocation generation,
    console/auth/revocation.py) wakes the registry at once: every socket holds its frames
    back from that moment and is released only after its credential checks out again, so
    nothing is streamed after a revoke, logout or disable commits. Changes made by other
    processes on the same database (the CLI, other replicas) are seen by reading the
    generation every ``interval_s``. Used on the IOLoop thread, except the commit hook."""

    def __init__(self, db: Any, forget_tokens: Callable[[], None], interval_s: float = 0.5) -> None:
        from sqlalchemy import event  # storage imports stay out of the bus's users

        self._db = db
        self._forget_tokens = forget_tokens
        self._interval_s = interval_s
        self._sockets: set[Recheckable] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        event.listen(db.sessions, "after_commit", self._after_commit)

    def add(self, sock: Recheckable) -> None:
        self._sockets.add(sock)

    def discard(self, sock: Recheckable) -> None:
        self._sockets.discard(sock)

    def __len__(self) -> int:
        return len(self._sockets)

    def _after_commit(self, session: Any) -> None:  # on whichever thread committed
        from console.auth import revocation

        if session.info.pop(revocation.BUMPED, False) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        for sock in self._sockets:
            sock.hold()
        if self._wake is not None:
            self._wake.set()

    async def watch(self) -> None:
        from console.auth import revocation

        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        seen = await self._db.read(revocation.current)
        recheck_due = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            except asyncio.TimeoutError:
                pass
            recheck_due = recheck_due or self._wake.is_set()
            self._wake.clear()
            try:
                generation = await self._db.read(revocation.current)
            except Exception:  # the database is away: held sockets stay held until it answers
                log.warning("cannot read the revocation generation; live sockets not rechecked", exc_info=True)
                continue
            if generation == seen and not recheck_due:
                continue
            seen, recheck_due = generation, False
            self._forget_tokens()
            sockets = list(self._sockets)
            for sock in sockets:
                sock.hold()
            results = await asyncio.gather(*(sock.recheck() for sock in sockets), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):  # one socket's failure must not spare the others
                    log.error("live socket recheck failed: %r", result)
