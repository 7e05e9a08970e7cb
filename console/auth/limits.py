"""Failure counting for login and enrolment: a sliding window per key (a user name or a
client address). Used on the IOLoop thread only; one instance per service, no globals."""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

MAX_KEYS = 100_000  # beyond this, the oldest keys are forgotten (bounded memory under a spray)


class FailureLimiter:
    """At most ``max_failures`` failures per key within ``window_s`` seconds; then the key
    is refused until its oldest counted failure leaves the window."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until ``key`` may try again, or None when it may try now."""
        times = self._failures.get(key)
        if not times:
            return None
        now = self._clock()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < self.max_failures:
            return None
        return max(1, math.ceil(times[0] + self.window_s - now))

    def fail(self, key: str) -> None:
        """Count one failure of ``key``."""
        if key not in self._failures and len(self._failures) >= MAX_KEYS:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(self._clock())

    def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (after a success)."""
        self._failures.pop(key, None)
