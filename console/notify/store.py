"""Active alerts by fingerprint, as Alertmanager's in-memory alert provider
(``provider/mem``): both this console's rules and API clients ``put`` alerts; the
dispatcher reads them. Alerts are not stored in the database: rules re-send theirs after
every evaluation and Prometheus re-sends its own, as with Alertmanager.

Merge rule (Alertmanager ``types.Alert.Merge``): an alert put again with the same
fingerprint while the stored one is still active (or their intervals overlap) keeps
the earliest ``starts_at`` and takes the newer ``ends_at``, annotations and URL; a put
of an alert whose interval does not overlap replaces it. (The API gives an alert
posted without ``endsAt`` ``now + resolve_timeout`` before putting it, as Alertmanager.)
Resolved alerts are kept ``retention_s`` after they resolved so a resolved notification
can be sent, then dropped by ``gc``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from threading import Lock

from console.notify.model import NotifyAlert

RESOLVED_RETENTION_S = 15 * 60


class AlertStore:
    """Thread-safe. ``subscribe(fn)`` calls ``fn(alerts)`` after each ``put`` with the
    stored (merged) alerts of that put, on the putting thread: keep ``fn`` short
    (e.g. schedule work on the subscriber's own loop)."""

    def __init__(self, retention_s: float = RESOLVED_RETENTION_S) -> None:
        self.retention_s = retention_s
        self._alerts: dict[str, NotifyAlert] = {}
        self._lock = Lock()
        self._subscribers: list[Callable[[list[NotifyAlert]], None]] = []

    def subscribe(self, fn: Callable[[list[NotifyAlert]], None]) -> None:
        self._subscribers.append(fn)

    def put(self, alerts: Iterable[NotifyAlert], now: float) -> list[NotifyAlert]:
        """Store ``alerts`` (merged with what is there); returns the stored versions."""
        stored: list[NotifyAlert] = []
        with self._lock:
            for alert in alerts:
                alert = replace(alert, labels=dict(alert.labels), annotations=dict(alert.annotations),
                                updated_at=now)
                fp = alert.fingerprint
                merge(self._alerts.get(fp), alert)
                self._alerts[fp] = alert
                stored.append(alert)
        for fn in list(self._subscribers):
            fn(stored)
        return stored

    def get(self, fp: str) -> NotifyAlert | None:
        with self._lock:
            return self._alerts.get(fp)

    def snapshot(self) -> list[NotifyAlert]:
        """Copies of every stored alert (firing and recently resolved)."""
        with self._lock:
            return [replace(a, labels=dict(a.labels), annotations=dict(a.annotations)) for a in self._alerts.values()]

    def gc(self, now: float) -> int:
        """Drop alerts resolved more than ``retention_s`` ago; returns how many."""
        with self._lock:
            gone = [fp for fp, a in self._alerts.items()
                    if a.ends_at is not None and a.ends_at + self.retention_s <= now]
            for fp in gone:
                del self._alerts[fp]
        return len(gone)


def merge(old: NotifyAlert | None, new: NotifyAlert) -> NotifyAlert:
    """``new`` as it is stored over ``old`` (same fingerprint, or None): it keeps the
    earlier ``starts_at`` when their intervals overlap (Alertmanager ``Alert.Merge``);
    changes and returns ``new``."""
    if old is not None and _overlaps(old, new):
        new.starts_at = min(old.starts_at, new.starts_at)
    return new


def _overlaps(old: NotifyAlert, new: NotifyAlert) -> bool:
    """Alertmanager merges two alerts of one fingerprint when their intervals touch."""
    old_end = float("inf") if old.ends_at is None else old.ends_at
    new_end = float("inf") if new.ends_at is None else new.ends_at
    return new.starts_at <= old_end and old.starts_at <= new_end
