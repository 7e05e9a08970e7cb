"""Delivery from the spool to the console: retry policy, dead letters, drain rate.

The rules are those of Prometheus remote write (``storage/remote/client.go``):

- a network error (no HTTP answer), a 5xx or a 429 is *recoverable*: the same
  batch (same bytes, same ``batch_id``) is sent again after a backoff;
- any other 4xx is *unrecoverable*: the batch is logged, counted and moved to
  the dead-letter file, and never sent again;
- the backoff is exponential with full jitter (AWS Architecture Blog,
  "Exponential Backoff And Jitter"): attempt ``n`` waits a uniform random
  time in ``[0, min(max_backoff, min_backoff * 2**n)]``. A ``Retry-After``
  header (429/503) is honoured instead: the wait is exactly what the console
  asked for (capped at :data:`MAX_RETRY_AFTER`).

Batches leave the spool strictly in order: a batch is removed only after the
console answered 2xx (``duplicate: true`` included) or after it was
dead-lettered. A backlog drains at most ``drain_rate`` batches per second so
that a fleet reconnecting at once does not flatten the console.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agents.client import PushError
from agents.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 3600.0  # seconds; a larger Retry-After is a console misconfiguration
DEAD_LETTER_MAX_BYTES = 64 * 1024 * 1024  # then the file is rotated to <name>.1


class BodySender(Protocol):
    """What delivery needs from a client (:class:`agents.client.IngestClient`)."""

    def push_body(self, body: bytes) -> dict[str, Any]: ...


def is_recoverable(exc: PushError) -> bool:
    """True for a network error, a 5xx, a 429 or a garbled 2xx (all safe to resend:
    the console stores a ``batch_id`` once); False for every other 4xx."""
    if exc.status is None or exc.status == 429 or exc.status >= 500:
        return True
    return 200 <= exc.status < 300  # invalid_response: maybe stored; a replay is a duplicate


def error_label(exc: PushError) -> str:
    """The ``code`` label of ``fleetdeck_agent_send_errors_total``: the HTTP status
    (``"429"``, ``"503"``, ``"400"``) or, without an answer, ``connection_failed``/``timeout``."""
    return str(exc.status) if exc.status is not None else exc.code


class RetryPolicy:
    """Backoff in seconds for attempt 0, 1, 2, ... (full jitter), or the ``Retry-After``."""

    def __init__(self, min_backoff: float = 0.5, max_backoff: float = 30.0,
                 rng: random.Random | None = None) -> None:
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), MAX_RETRY_AFTER)
        ceiling = min(self.max_backoff, self.min_backoff * (2 ** min(attempt, 32)))
        return self._rng.uniform(0.0, ceiling)


class DeadLetterFile:
    """Unrecoverable batches for inspection, one JSON object per line::

        {"failed_at": Unix s, "seq": int, "status": int|null, "code": str, "message": str,
         "batch": {...the ingest body...}}

    (``"batch_gzip_b64"`` instead of ``"batch"`` when the body does not decode.)
    The file is rotated to ``<path>.1`` past :data:`DEAD_LETTER_MAX_BYTES`.
    """

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock

    def write(self, record: SpoolRecord, exc: PushError) -> None:
        entry: dict[str, Any] = {"failed_at": self.clock(), "seq": record.seq, "status": exc.status,
                                 "code": exc.code, "message": exc.message}
        try:
            entry["batch"] = json.loads(gzip.decompress(record.payload))
        except (OSError, EOFError, ValueError):
            entry["batch_gzip_b64"] = base64.b64encode(record.payload).decode("ascii")
        line = json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n"
        try:
            if os.path.getsize(self.path) + len(line) > DEAD_LETTER_MAX_BYTES:
                os.replace(self.path, self.path + ".1")
        except FileNotFoundError:
            pass  # first dead letter: nothing to rotate
        with open(self.path, "ab") as fh:
            fh.write(line)


class Sender:
    """Sends spooled batches in order on its own thread (:meth:`run`), so collection
    keeps its cadence while the console is away.

    ``drain_rate``: at most this many sends per second (a token bucket of one).
    ``on_delivered(record, answer)`` is called after each 2xx (the console's JSON answer).
    Counters (read by the agent's self-metrics): ``errors`` by :func:`error_label`,
    ``dead_letters``, ``delivered``.
    """

    def __init__(self, spool: Spool, client: BodySender, policy: RetryPolicy, dead_letters: DeadLetterFile,
                 drain_rate: float = 5.0, on_delivered: Callable[[SpoolRecord, dict], None] | None = None) -> None:
        self.spool = spool
        self.client = client
        self.policy = policy
        self.dead_letters = dead_letters
        self.drain_rate = drain_rate
        self.on_delivered = on_delivered
        self.errors: dict[str, int] = {}
        self.dead_letters_total = 0
        self.delivered = 0
        self._lock = threading.Lock()
        self._failing: str | None = None  # error label being reported, to log changes only

    def error_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.errors)

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set (then return within about a second)."""
        attempt = 0
        next_send = time.monotonic()
        while not stop.is_set():
            record = self.spool.peek(timeout=1.0)
            if record is None:
                continue
            wait = next_send - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return
            next_send = max(next_send, time.monotonic()) + 1.0 / self.drain_rate
            delay = self.send_one(record, attempt)
            if delay is None:
                attempt = 0
                continue
            attempt += 1
            if stop.wait(delay):
                return

    def send_one(self, record: SpoolRecord, attempt: int = 0) -> float | None:
        """Try one batch once. Returns None when it left the spool (delivered or
        dead-lettered), else the seconds to wait before retrying it."""
        try:
            answer = self.client.push_body(record.payload)
        except PushError as exc:
            label = error_label(exc)
            with self._lock:
                self.errors[label] = self.errors.get(label, 0) + 1
            if not is_recoverable(exc):
                log.error("console refused batch %d with %s %s (%s); moved to the dead-letter file %s, "
                          "not retried", record.seq, exc.status, exc.code, exc.message, self.dead_letters.path)
                try:
                    self.dead_letters.write(record, exc)
                except OSError as write_error:
                    log.error("cannot write the dead-letter file %s: %s; batch %d discarded",
                              self.dead_letters.path, write_error, record.seq)
                self.dead_letters_total += 1
                self.spool.ack(record.seq)
                return None
            delay = self.policy.delay(attempt, exc.retry_after)
            status = exc.status if exc.status is not None else "no response"
            level = logging.WARNING if label != self._failing else logging.DEBUG  # report changes once
            log.log(level, "push of batch %d failed (%s %s: %s); retrying in %.2fs%s", record.seq, status,
                    exc.code, exc.message, delay, " (Retry-After)" if exc.retry_after is not None else "")
            self._failing = label
            return delay
        if self._failing is not None:
            log.info("console reachable again; draining %d queued batch(es)", self.spool.snapshot().queued)
            self._failing = None
        self.spool.ack(record.seq)
        self.delivered += 1
        if self.on_delivered is not None:
            self.on_delivered(record, answer)
        return None
