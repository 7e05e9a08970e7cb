"""The live bus: in-process publish/subscribe of JSON-able frames by topic.

Topics are ``host:NAME`` (a batch from NAME was committed), ``logs:NAME`` and
``deploy:ID``. Publishing and callbacks happen on the IOLoop thread; a subscriber whose
callback raises is dropped (and the error logged) so one broken socket never stops the
others. The bus belongs to one console instance; there is no global registry.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from typing import Any, Callable

TOPIC_RE = re.compile(r"(host|logs|deploy):[A-Za-z0-9._-]{1,253}")
log = logging.getLogger(__name__)

Callback = Callable[[str, Any], None]


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Callback]] = defaultdict(set)

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Deliver every later ``publish(topic, data)`` to ``callback(topic, data)``.
        Raises ValueError for a malformed topic."""
        if not TOPIC_RE.fullmatch(topic):
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
