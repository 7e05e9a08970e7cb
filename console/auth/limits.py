"""Failure counting for login and enrolment: a sliding window per key (a user name and
client address, or a client address), counted in the database (``login_failures``), so
every console sharing it counts the same failures: N consoles behind a load balancer
allow what one allows (docs/scaling.md). One instance per counter, no globals."""
from __future__ import annotations

import math
import time
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.storage.database import Database
from console.storage.models import LoginFailure

MAX_KEY = 320  # characters of a key stored (the column's width); longer keys are cut


class FailureLimiter:
    """At most ``max_failures`` failures per key within ``window_s`` seconds; then the key
    is refused until the oldest of its last ``max_failures`` failures leaves the window.
    ``prefix`` keeps the keys of several limiters apart in the one table. Times are the
    consoles' clocks (Unix seconds): keep them in sync, as for deploy leases.

    The methods are coroutines: a check reads the primary (never a read replica: another
    console's failure a moment ago must count), a failure or a reset writes through the
    database writer. Two consoles checking one key at the same moment may each allow one
    more try; the count itself is never split between them."""

    def __init__(self, db: Database, max_failures: int, window_s: float, prefix: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window_s = window_s
        self.prefix = prefix
        self._clock = clock

    def _key(self, key: str) -> str:
        return (self.prefix + key)[:MAX_KEY]

    async def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may try again, or None when it may try now."""
        now = self._clock()
        oldest = await self.db.read(self._oldest_counted, self._key(key), now)
        if oldest is None:
            return None
        return max(1, math.ceil(oldest + self.window_s - now))

    def _oldest_counted(self, session: Session, key: str, now: float) -> float | None:
        """The oldest of the newest ``max_failures`` failures within the window, when
        there are that many (the key is refused until it leaves the window), else None."""
        times = list(session.scalars(select(LoginFailure.at).where(
            LoginFailure.key == key, LoginFailure.at > now - self.window_s)
            .order_by(LoginFailure.at.desc()).limit(self.max_failures)))
        return times[-1] if len(times) >= self.max_failures else None

    async def fail(self, key: str) -> None:
        """Count one failure of ``key`` (and delete the failures that left the window)."""
        await self.db.write(self._fail, self._key(key), self._clock())

    def _fail(self, session: Session, key: str, now: float) -> None:
        session.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.window_s))
        session.add(LoginFailure(key=key, at=now))

    async def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (after a success)."""
        await self.db.write(self._reset, self._key(key))

    @staticmethod
    def _reset(session: Session, key: str) -> None:
        session.execute(delete(LoginFailure).where(LoginFailure.key == key))
