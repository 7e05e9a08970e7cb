"""Delivery from the spool to the console: retry policy, dead letters, drain rate.

The rules are those of Prometheus remote write (``storage/remote/client.go``):

- a network error (no HTTP answer), a 5xx, a 408 or a 429 is *recoverable*: the
  same batch (same bytes, same ``batch_id``) is sent again after a backoff;
- 401 and 403 say the agent's *token* is refused, not the batch: sending stops,
  the spool keeps every batch (within its bounds), the same batch is tried again
  after a long capped backoff (``auth_retry_min_backoff`` doubling up to
  ``auth_retry_max_backoff``, equal jitter) and, when the token came from the
  token file, as soon as that file holds a different token. Nothing is
  dead-lettered for it;
- any other 4xx (400, 413, 422: the console refused the *content*) is
  *unrecoverable*: the batch is logged, counted and moved to the dead-letter
  file (``fleetdeck-agent dead-letter list|replay``), and never sent again by the
  sender;
- failures are logged at WARNING: the first of a run, every change of cause, and
  then at most once per :data:`WARNING_INTERVAL` with the count since the last
  warning (DEBUG in between);
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
import contextlib
import gzip
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from agents.client import PushError
from agents.spool import Spool, SpoolRecord

log = logging.getLogger(__name__)

WARNING_INTERVAL = 60.0  # seconds between warnings of one continuing failure
AUTH_STATUSES = (401, 403)
MAX_RETRY_AFTER = 3600.0  # seconds; a larger Retry-After is a console misconfiguration
DEAD_LETTER_MAX_BYTES = 64 * 1024 * 1024  # then the file is rotated to <name>.1


class BodySender(Protocol):
    """What delivery needs from a client (:class:`agents.client.IngestClient`): ``token``
    is the agent token it sends, replaced when the token file holds a new one."""

    token: str

    def push_body(self, body: bytes) -> dict[str, Any]: ...


def is_recoverable(exc: PushError) -> bool:
    """True for a network error, a 5xx, a 408, a 429, a 401/403 (the token, not the
    batch, was refused) or a garbled 2xx (all safe to resend: the console stores a
    ``batch_id`` once); False for every other 4xx (the content was refused)."""
    if exc.status is None or exc.status in (408, 429) + AUTH_STATUSES or exc.status >= 500:
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

    def long_delay(self, attempt: int) -> float:
        """Backoff with equal jitter: uniform in ``[c/2, c]`` for ``c = min(max_backoff,
        min_backoff * 2**attempt)``, so a refused token never retries in a tight loop."""
        ceiling = min(self.max_backoff, self.min_backoff * (2 ** min(attempt, 32)))
        return self._rng.uniform(ceiling / 2, ceiling)


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
        with self.locked():
            try:
                if os.path.getsize(self.path) + len(line) > DEAD_LETTER_MAX_BYTES:
                    os.replace(self.path, self.path + ".1")
            except FileNotFoundError:
                pass  # first dead letter: nothing to rotate
            with open(self.path, "ab") as fh:
                fh.write(line)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``<path>.lock`` (flock): the agent appending and ``dead-letter replay``
        rewriting the file never interleave."""
        import fcntl  # POSIX only, like the agent

        with open(self.path + ".lock", "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def files(self) -> list[str]:
        """The dead-letter files that exist, oldest first (``<path>.1``, then ``<path>``)."""
        return [p for p in (self.path + ".1", self.path) if os.path.exists(p)]

    def entries(self) -> list[tuple[str, int, dict[str, Any]]]:
        """``(file, line number from 1, entry)`` of every dead letter, oldest first; lines
        that do not parse (a write cut by a crash) are skipped with a warning."""
        out = []
        for path in self.files():
            with open(path, "rb") as fh:
                for number, raw in enumerate(fh, 1):
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        log.warning("%s line %d is not JSON; skipped", path, number)
                        continue
                    if isinstance(entry, dict):
                        out.append((path, number, entry))
        return out

    @staticmethod
    def body(entry: dict[str, Any]) -> bytes:
        """The ingest body to send again for ``entry`` (same ``batch_id``)."""
        if "batch_gzip_b64" in entry:
            return base64.b64decode(entry["batch_gzip_b64"])
        return gzip.compress(json.dumps(entry["batch"], separators=(",", ":")).encode("utf-8"), 6)

    def rewrite(self, keep: list[tuple[str, int, dict[str, Any]]]) -> None:
        """Replace the files by ``keep`` (call under :meth:`locked`): written to a
        temporary file and renamed, so a crash leaves the old or the new content."""
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as fh:
            for _, _, entry in keep:
                fh.write(json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path + ".1")


class Sender:
    """Sends spooled batches in order on its own thread (:meth:`run`), so collection
    keeps its cadence while the console is away.

    ``drain_rate``: at most this many sends per second (a token bucket of one).
    ``on_delivered(record, answer)`` is called after each 2xx (the console's JSON answer).
    ``warning_interval``: seconds between warnings of one continuing failure.
    ``auth_policy``: backoff while the token is refused (401/403); ``token_source``
    returns the current token from where it is configured (the token file), read
    again before each retry of a refused token (None: the token cannot change).
    Counters (read by the agent's self-metrics): ``errors`` by :func:`error_label`,
    ``dead_letters_total``, ``delivered``; ``auth_rejected`` is True while the
    console refuses the token; ``died`` holds the exception that ended :meth:`run`.
    """

    def __init__(self, spool: Spool, client: BodySender, policy: RetryPolicy, dead_letters: DeadLetterFile,
                 drain_rate: float = 5.0, on_delivered: Callable[[SpoolRecord, dict], None] | None = None,
                 auth_policy: RetryPolicy | None = None, token_source: Callable[[], str] | None = None,
                 warning_interval: float = WARNING_INTERVAL) -> None:
        self.spool = spool
        self.client = client
        self.policy = policy
        self.auth_policy = auth_policy or RetryPolicy(30.0, 600.0)
        self.token_source = token_source
        self.warning_interval = warning_interval
        self.dead_letters = dead_letters
        self.drain_rate = drain_rate
        self.on_delivered = on_delivered
        self.errors: dict[str, int] = {}
        self.dead_letters_total = 0
        self.delivered = 0
        self.auth_rejected = False
        self.died: BaseException | None = None
        self._lock = threading.Lock()
        self._failing: str | None = None  # error label being reported, to log changes
        self._warned_at = 0.0  # monotonic time of the last warning of this failure
        self._unreported = 0  # failures since that warning

    def error_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.errors)

    def run(self, stop: threading.Event) -> None:
        """Send until ``stop`` is set (then return within about a second). An unexpected
        error ends the loop: it is logged, kept in ``died``, and ``stop`` is set so the
        agent exits with a failure status instead of running without a sender."""
        try:
            self._run(stop)
        except Exception as exc:  # noqa: BLE001 - any error must end the agent, not just this thread
            self.died = exc
            log.critical("the sender thread died: %s; stopping the agent", exc, exc_info=True)
            stop.set()
            self.spool.wake()

    def _run(self, stop: threading.Event) -> None:
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
            if delay > 0 and stop.wait(delay):
                return

    def _report(self, label: str, message: str, *args: Any) -> None:
        """WARNING for the first failure of a run and each change of cause, then at most
        every ``warning_interval`` seconds (with the count since); DEBUG otherwise."""
        now = time.monotonic()
        self._unreported += 1
        if label != self._failing or now - self._warned_at >= self.warning_interval:
            suffix = f" ({self._unreported} failed attempt(s) since the last warning)" if label == self._failing else ""
            log.warning(message + suffix, *args)
            self._warned_at, self._unreported = now, 0
        else:
            log.debug(message, *args)
        self._failing = label

    def send_one(self, record: SpoolRecord, attempt: int = 0) -> float | None:
        """Try one batch once. Returns None when it left the spool (delivered or
        dead-lettered), else the seconds to wait before retrying it."""
        try:
            answer = self.client.push_body(record.payload)
        except PushError as exc:
            label = error_label(exc)
            with self._lock:
                self.errors[label] = self.errors.get(label, 0) + 1
            if exc.status in AUTH_STATUSES:
                return self._token_refused(record, exc, label, attempt)
            if not is_recoverable(exc):
                log.error("console refused batch %d with %s %s (%s); moved to the dead-letter file %s "
                          "(`fleetdeck-agent dead-letter list|replay`)", record.seq, exc.status, exc.code,
                          exc.message, self.dead_letters.path)
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
            self._report(label, "push of batch %d failed (%s %s: %s); retrying in %.2fs%s", record.seq, status,
                         exc.code, exc.message, delay, " (Retry-After)" if exc.retry_after is not None else "")
            return delay
        if self._failing is not None:
            log.warning("console accepts batches again; draining %d queued batch(es)", self.spool.snapshot().queued)
            self._failing, self._unreported = None, 0
        self.auth_rejected = False
        self.spool.ack(record.seq)
        self.delivered += 1
        if self.on_delivered is not None:
            self.on_delivered(record, answer)
        return None

    def _token_refused(self, record: SpoolRecord, exc: PushError, label: str, attempt: int) -> float:
        """401/403: keep the batch (and the whole spool), wait long, or retry at once
        when the token file now holds another token."""
        self.auth_rejected = True
        if self.token_source is not None:
            try:
                token = self.token_source()
            except (OSError, ValueError) as read_error:
                log.warning("cannot read the agent token again: %s", read_error)
                token = ""
            if token and token != getattr(self.client, "token", token):
                self.client.token = token
                log.warning("the agent token changed; sending again")
                return 0.0
        delay = self.auth_policy.long_delay(attempt)
        self._report(label, "console refused the agent token (%s %s: %s); sending paused, %d batch(es) kept "
                     "in the spool; retrying in %.0fs", exc.status, exc.code, exc.message,
                     self.spool.snapshot().queued, delay)
        return delay
