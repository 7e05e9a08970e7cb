"""Ingest backpressure: a token bucket per agent host and a bound on in-flight writes.

Both answer "not now" with the seconds an agent should wait, which the handler
sends as ``429`` + ``Retry-After``; agents retry a 429 (docs/agent.md). Used on
the IOLoop thread only, so there is no locking.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class IngestAdmission:
    """Admission control of ``POST /api/v1/ingest``.

    ``rate``: batches per second per host (0 disables the limit); ``burst``:
    bucket size, batches; ``max_inflight``: ingest requests that may wait for
    the database at once (0: no bound). ``max_hosts`` bounds the buckets kept
    (least recently used are forgotten, which only refills them).
    """

    def __init__(self, rate: float, burst: float, max_inflight: int, max_hosts: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_inflight = max_inflight
        self.max_hosts = max_hosts
        self.clock = clock
        self.inflight = 0
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def rate_wait(self, host: str) -> float:
        """0.0 when ``host`` may send a batch now, else seconds to wait (> 0)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_hosts:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(host)
        return bucket.take(now)

    def try_enter(self) -> bool:
        """Claim an in-flight write slot; False when all are taken. Pair with :meth:`leave`."""
        if self.max_inflight and self.inflight >= self.max_inflight:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` delta-seconds: a whole number, at least 1 (RFC 9110 10.2.3)."""
    return str(max(1, math.ceil(seconds)))
