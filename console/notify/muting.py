"""What keeps an alert from notifying. Each muter answers, for a label set at a time,
the reasons it mutes it; the dispatcher leaves muted alerts out of notifications (they
notify once no reason is left, if still firing) and the alert history records the
reasons (``alert_history.muted_by``).

Reason strings are ``KIND:ID``: ``silence:<uuid>``, ``window:<name>``,
``deploy:<deploy id>`` (held during a deploy and its settle time),
``inhibited:<fingerprint of the inhibiting alert>``, ``time_interval:<name>``.
"""
from __future__ import annotations

from collections.abc import Mapping
from threading import Lock
from typing import Protocol


class Muter(Protocol):
    """Anything that can mute alerts. ``muted_by`` must be cheap (called for every alert
    on every dispatch round) and thread-safe (called from the dispatcher's and the
    alerting service's threads): keep state in memory, refreshed by the owner."""

    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """The reasons (``KIND:ID``) ``labels`` is muted at ``now`` (Unix seconds); empty if not."""
        ...


class Muting:
    """The console's muters, consulted in registration order. Owned by Services; each
    muter's owner registers it once at start."""

    def __init__(self) -> None:
        self._muters: list[Muter] = []
        self._lock = Lock()

    def register(self, muter: Muter) -> None:
        with self._lock:
            self._muters.append(muter)

    def muted_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Every muter's reasons for ``labels`` at ``now``, in registration order."""
        with self._lock:
            muters = list(self._muters)
        reasons: list[str] = []
        for muter in muters:
            reasons.extend(muter.muted_by(labels, now))
        return reasons
