"""Ingest backpressure: token buckets per agent host (batches/s, samples/s, log lines/s)
and a bound on in-flight writes.

All answer "not now" with the seconds an agent should wait, which the handler
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

    def take(self, now: float, count: float = 1.0) -> float:
        """Take ``count`` tokens: 0.0 when granted, else the seconds until they are."""
        wait = self.wait(now, count)
        if not wait:
            self.tokens -= count
        return wait

    def wait(self, now: float, count: float) -> float:
        """Seconds until ``count`` tokens may be taken (0.0: now). More than the burst may
        be taken from a full bucket, which then owes the difference: a batch larger than
        the burst is let through once the host has been quiet long enough."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        need = min(count, self.burst)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate


class IngestAdmission:
    """Admission control of ``POST /api/v1/ingest``.

    ``rate``: batches per second per host (0 disables the limit); ``burst``:
    bucket size, batches; ``max_inflight``: ingest requests that may wait for
    the database at once (0: no bound). ``samples_rate`` / ``samples_burst`` and
    ``lines_rate`` / ``lines_burst``: samples and log lines per second per host, and
    their bucket sizes (rate 0: no limit). ``max_hosts`` bounds the buckets kept
    (least recently used are forgotten, which only refills them).
    """

    def __init__(self, rate: float, burst: float, max_inflight: int, max_hosts: int = 100_000,
                 clock: Callable[[], float] = time.monotonic, samples_rate: float = 0.0,
                 samples_burst: float = 1.0, lines_rate: float = 0.0, lines_burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.max_inflight = max_inflight
        self.max_hosts = max_hosts
        self.clock = clock
        self.inflight = 0
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.volume = {"samples": (samples_rate, max(1.0, samples_burst)), "lines": (lines_rate, max(1.0, lines_burst))}
        self._volume_buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def volume_wait(self, host: str, samples: int, lines: int) -> tuple[float, str]:
        """(0.0, "") when ``host`` may send a batch of ``samples`` samples and ``lines``
        log lines now, and takes them from its buckets; else (seconds to wait, the
        limit: "samples" or "lines"), taking nothing."""
        now = self.clock()
        wanted = [(kind, count) for kind, count in (("samples", samples), ("lines", lines))
                  if count and self.volume[kind][0] > 0]
        buckets = [(self._bucket(host, kind, now), count) for kind, count in wanted]
        for (kind, _), (bucket, count) in zip(wanted, buckets):
            wait = bucket.wait(now, count)
            if wait:
                return wait, kind
        for bucket, count in buckets:
            bucket.tokens -= count
        return 0.0, ""

    def _bucket(self, host: str, kind: str, now: float) -> TokenBucket:
        key = (host, kind)
        bucket = self._volume_buckets.get(key)
        if bucket is None:
            rate, burst = self.volume[kind]
            bucket = self._volume_buckets[key] = TokenBucket(rate, burst, now)
            if len(self._volume_buckets) > 2 * self.max_hosts:
                self._volume_buckets.popitem(last=False)
        else:
            self._volume_buckets.move_to_end(key)
        return bucket

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
