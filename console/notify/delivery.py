"""The delivery worker: sends the outbox (console/notify/outbox.py) to the receivers.

Each round is one transaction on the database writer that records the attempts finished
since the last round and claims the due ``pending`` rows there is room for (at most one
row per receiver integration and group at a time, so a group's firing and resolved
messages arrive in order); each claimed row is sent on the worker's own thread pool,
never on the IOLoop. An attempt's outcome:

- delivered: ``sent``, with the receiver's status and answer;
- a timeout, connection error, 5xx, 429 or SMTP 4xx: still ``pending``, retried after
  ``backoff_initial`` doubling up to ``backoff_max`` seconds, or after the Retry-After the
  receiver gave (up to ``retry_after_max``), until the row is ``give_up_after`` seconds
  old, then ``failed``;
- any other answer (a 4xx other than 429, a vendor error code, a missing secret): ``failed``
  at once, with the answer.

A claim moves the row's ``next_attempt_at`` a lease (the attempt's timeout plus a
margin) ahead before sending. Closing the console waits for the sends in flight and
records them, and hands back rows claimed but not yet sent; if the process dies between
sending and recording, the lease expires and the row is sent once more. Each row is
therefore delivered at least once and, short of a crash, exactly once.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import import_module
from threading import Lock
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.errors import InvalidInput, NotFound
from console.i18n import tx
from console.notify.outbox import ANSWER_CAP, FAILED, PENDING, SENT, enqueue
from console.notify.receivers.base import Attempt, PermanentError, SendContext
from console.notify.receivers.config import RECEIVER_CONFIGS, DeliveryConfig, receiver_integrations
from console.secrets import SecretError, SecretService
from console.storage.database import Database
from console.storage.models import Notification

log = logging.getLogger(__name__)
# A claimed row is due again this long after its attempt's timeout (the timeout bounds each
# network operation; an SMTP send is several).
LEASE_MARGIN_S = 30.0
CLOSE_WAIT_S = 30.0  # how long close() waits for sends in flight
FAILED_WINDOW_S = 3600  # fleetdeck_notifications_failed is 1 this long after the last failure
FAILED_STEP_S = 60


@dataclass
class Claimed:
    """A row claimed for one attempt (``attempts`` counts this one)."""

    id: int
    receiver: str
    integration: str
    group_key: str
    payload: str
    created_at: float
    attempts: int


class DeliveryWorker:
    """``start()`` on the IOLoop; ``wake()`` after enqueueing (it also polls every
    ``poll_interval``); ``close()`` from any thread once the loop stopped or is stopping.
    ``notifications()`` returns the loaded ``alerting.notifications`` (read at every send,
    so a reload applies to what is still queued)."""

    def __init__(self, db: Database, notifications: Callable[[], Any], secrets: SecretService,
                 config: DeliveryConfig, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time, audit: AuditService | None = None,
                 leads: Callable[[], bool] = lambda: True) -> None:
        self.db = db
        # Claims are a select then an update: of several consoles on one database only the
        # leader claims, so no row is sent twice (docs/scaling.md).
        self._leads = leads
        self.audit = audit
        self.notifications = notifications
        self.secrets = secrets
        self.config = config
        self.clock = clock
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="notify")
        self._inflight: dict[int, tuple[Claimed, Future]] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._done: list[tuple[Claimed, Attempt]] = []  # finished, not yet recorded (IOLoop only)
        # Claimed and not yet recorded, by id: written on the writer thread, read by close().
        self._claimed: dict[int, Claimed] = {}
        self._claim_lock = Lock()
        self._closed = False
        registry = registry or CollectorRegistry()
        self.sent = Counter("fleetdeck_notifications_sent_total", "Notifications delivered, by receiver and "
                            "integration.", ["receiver", "integration"], registry=registry)
        self.failed = Counter("fleetdeck_notifications_failed_total", "Notifications given up (an answer not "
                              "worth retrying, or retries exhausted), by receiver and integration.",
                              ["receiver", "integration"], registry=registry)
        self.retried = Counter("fleetdeck_notification_retries_total", "Failed attempts that will be retried, by "
                               "receiver and integration.", ["receiver", "integration"], registry=registry)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll; from any thread (the
        dispatcher calls it after enqueueing)."""
        if self._wake is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the console is stopping
            self._loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        """Stop claiming, wait for the sends in flight and record them, and hand back the
        rows claimed but never sent (a round cut short by the loop stopping), so a
        restart sends them at once rather than after their lease."""
        with self._claim_lock:
            self._closed = True
            unsent = [row for row_id, row in self._claimed.items() if row_id not in self._inflight]
        if self._task is not None and not self._task.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        deadline = time.monotonic() + CLOSE_WAIT_S
        for claimed, future in list(self._inflight.values()):
            try:
                attempt = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - whatever the send raised is recorded as its failure
                attempt = Attempt(ok=False, error=f"send failed: {exc}", retry=True)
            self.db.run(self._record, claimed, attempt)
            self._inflight.pop(claimed.id, None)
        if unsent:
            self.db.run(self._unclaim, unsent, self.clock())
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        """Each round is one writer transaction that records the attempts finished since
        the last round and claims as many due rows as there is room for (one commit for
        many sends). An idle round looks on a reader first: it must not touch the writer
        (whose success also clears a storage failure /readyz reports)."""
        assert self._wake is not None
        claimed: list[Claimed] = []
        while not self._closed:
            done, self._done = self._done, []
            finished = {row.id for row, _ in done}
            room = self.config.concurrency - len(self._inflight) + len(finished)
            # Groups with a message in flight wait, so a group's messages arrive in order.
            busy = {(c.receiver, c.integration, c.group_key) for c, _ in self._inflight.values()
                    if c.id not in finished}
            now = self.clock()
            try:
                # After a claim more rows are likely due: claim again without looking first.
                claim = room > 0 and self._leads() and bool(claimed or done or await self.db.read(_any_due, now))
                claimed = await self.db.write(self._round, now, done, room if claim else 0, busy) \
                    if claim or done else []
            except Exception:  # noqa: BLE001 - the database is unavailable: leases make the rows due again
                log.exception("recording or claiming notifications failed")
                claimed = []
            # (Cancelled, the rows stay in flight: close() records them.)
            with self._claim_lock:
                for row_id in finished:
                    self._inflight.pop(row_id, None)
                    self._claimed.pop(row_id, None)
                if self._closed:  # close() hands back what this round claimed
                    return
                for row in claimed:
                    future = self._pool.submit(self._send, row)
                    self._inflight[row.id] = (row, future)
                    asyncio.ensure_future(self._finish(row, future))
            if self._done or claimed and len(self._inflight) < self.config.concurrency:
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    async def _finish(self, row: Claimed, future: Future) -> None:
        try:
            attempt = await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 - recorded as the attempt's failure
            attempt = Attempt(ok=False, error=f"send failed: {exc}", retry=True)
        if self._closed:
            return  # close() records it
        self._done.append((row, attempt))
        self.wake()

    # -- the log and test messages (API) --------------------------------------------------------
    async def log(self, receiver: str | None, status: str | None, since: float, until: float, limit: int,
                  before: int | None) -> dict:
        """Notifications created in ``[since, until]`` (Unix s), newest first:
        ``{"notifications": [entry], "next": id to pass as ``before`` or None}``; an entry
        is :func:`log_entry`."""
        def read(session: Session) -> dict:
            stmt = select(Notification).where(Notification.created_at >= since, Notification.created_at <= until)
            if receiver:
                stmt = stmt.where(Notification.receiver == receiver)
            if status:
                stmt = stmt.where(Notification.status == status)
            if before is not None:
                stmt = stmt.where(Notification.id < before)
            rows = list(session.execute(stmt.order_by(Notification.id.desc()).limit(limit + 1)).scalars())
            more = len(rows) > limit
            rows = rows[:limit]
            return {"notifications": [log_entry(r) for r in rows], "next": rows[-1].id if more and rows else None}
        return await self.db.read(read)

    async def send_test(self, receiver: str, external_url: str, actor: str, source: str) -> list[dict]:
        """Queue a test message (one firing alert ``FleetdeckTestNotification``) to every
        integration of ``receiver`` (audited as ``notification.test`` by ``actor`` from
        ``source``) and wait until each is sent or failed, or its first attempt failed;
        returns their log entries (``status`` still ``pending`` when a retry is due).
        Raises NotFound for an unknown receiver, InvalidInput for one without integrations."""
        try:
            integrations = receiver_integrations(self.notifications(), receiver)
        except KeyError:
            raise NotFound(tx("no receiver named {receiver} in alerting.notifications", receiver=repr(receiver)),
                           {"receiver": receiver},
                           code="unknown_receiver") from None
        if not integrations:
            raise InvalidInput(tx("receiver {receiver} has no integrations", receiver=repr(receiver)), {"receiver": receiver},
                               code="no_integrations")
        now = self.clock()
        payload = json.dumps(test_payload(receiver, external_url, now))
        run = uuid.uuid4().hex
        keys = [f"test:{run}:{i.name}" for i in integrations]

        def add(session: Session) -> None:
            for integration, key in zip(integrations, keys):
                enqueue(session, receiver=receiver, integration=integration.name, group_key=f"test:{run}",
                        dedup_key=key, payload=payload, now=now)
            if self.audit is not None:
                self.audit.record(session, actor, "notification.test", f"receiver:{receiver}",
                                  {"integrations": [i.name for i in integrations]}, source)
        await self.db.write(add)
        self.wake()
        deadline = time.monotonic() + self.config.timeout + 5
        while True:
            rows = await self.db.read(lambda s: list(s.execute(
                select(Notification).where(Notification.dedup_key.in_(keys)).order_by(Notification.id)).scalars()))
            # Done when each row is sent or failed, or its first attempt failed and a retry is due.
            if all(r.status != PENDING or r.last_error is not None for r in rows) or time.monotonic() > deadline:
                return [log_entry(r) for r in rows]
            await asyncio.sleep(0.1)

    # -- database (writer thread) -------------------------------------------------------------
    def _round(self, session: Session, now: float, done: list[tuple[Claimed, Attempt]], room: int,
               busy: set[tuple[str, str, str]]) -> list[Claimed]:
        if done:
            self._record_all(session, done)
        with self._claim_lock:  # close() sees every claim, or this round claims nothing
            if room <= 0 or self._closed:
                return []
            claimed = self._claim(session, now, room, busy)
            self._claimed.update((row.id, row) for row in claimed)
            return claimed

    def _unclaim(self, session: Session, rows: list[Claimed], now: float) -> None:
        """Undo the claim of rows never sent: their attempt uncounted, due now."""
        table = Notification.__table__
        session.connection().execute(
            update(table).where(table.c.id == bindparam("row_id"), table.c.status == PENDING,
                                table.c.attempts == bindparam("row_attempts"))
            .values(attempts=table.c.attempts - 1, next_attempt_at=now),
            [{"row_id": row.id, "row_attempts": row.attempts} for row in rows])

    def _claim(self, session: Session, now: float, room: int, busy: set[tuple[str, str, str]]) -> list[Claimed]:
        """Up to ``room`` due rows, oldest first, none of a (receiver, integration, group)
        in ``busy`` (in flight); each gets its attempt counted and its lease. Two
        statements whatever the number of rows (a claim is on every send's path)."""
        n = Notification
        due = session.execute(
            select(n.id, n.receiver, n.integration, n.group_key, n.created_at, n.attempts)
            .where(n.status == PENDING, n.next_attempt_at <= now)
            .order_by(n.next_attempt_at, n.id).limit(room * 4)).all()
        chosen = []
        for row in due:
            key = (row.receiver, row.integration, row.group_key)
            if key in busy:
                continue
            busy.add(key)
            chosen.append(row)
            if len(chosen) >= room:
                break
        if not chosen:
            return []
        table = n.__table__
        payloads: dict[int, str] = dict(session.connection().execute(
            update(table).where(table.c.id.in_([row.id for row in chosen]))
            .values(attempts=table.c.attempts + 1, last_attempt_at=now,
                    next_attempt_at=now + self.config.timeout + LEASE_MARGIN_S)
            .returning(table.c.id, table.c.payload)).all())
        return [Claimed(row.id, row.receiver, row.integration, row.group_key, payloads[row.id], row.created_at,
                        row.attempts + 1) for row in chosen]

    def _record(self, session: Session, row: Claimed, attempt: Attempt) -> None:
        self._record_all(session, [(row, attempt)])

    def _record_all(self, session: Session, batch: list[tuple[Claimed, Attempt]]) -> None:
        """Store the outcomes in one statement run for each row (an executemany), each
        unless its row moved on (another attempt claimed it since)."""
        now = self.clock()
        table = Notification.__table__
        stmt = update(table).where(table.c.id == bindparam("row_id"), table.c.status == PENDING,
                                   table.c.attempts == bindparam("row_attempts")).values(
            status=bindparam("new_status"), sent_at=bindparam("new_sent_at"),
            next_attempt_at=bindparam("new_next_attempt_at"), last_status=bindparam("new_last_status"),
            answer=bindparam("new_answer"), last_error=bindparam("new_last_error"))
        session.connection().execute(stmt, [self._outcome(row, attempt, now) for row, attempt in batch])

    def _outcome(self, row: Claimed, attempt: Attempt, now: float) -> dict[str, Any]:
        """The row's new columns after ``attempt`` (and the counters it moves)."""
        labels = (row.receiver, row.integration)
        out: dict[str, Any] = {"row_id": row.id, "row_attempts": row.attempts, "new_status": PENDING,
                               "new_sent_at": None, "new_next_attempt_at": now, "new_last_status": attempt.status,
                               "new_answer": attempt.answer[:ANSWER_CAP] or None, "new_last_error": attempt.error}
        if attempt.ok:
            out.update(new_status=SENT, new_sent_at=now, new_last_error=None)
            self.sent.labels(*labels).inc()
        elif attempt.retry and now - row.created_at < self.config.give_up_after:
            backoff = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (row.attempts - 1))
            if attempt.retry_after is not None:
                backoff = max(backoff, min(attempt.retry_after, self.config.retry_after_max))
            out.update(new_next_attempt_at=now + backoff)
            self.retried.labels(*labels).inc()
        else:
            if attempt.retry:
                out["new_last_error"] = f"gave up after {row.attempts} attempts: {attempt.error}"
            out.update(new_status=FAILED)
            self.failed.labels(*labels).inc()
        return out

    # -- sending (worker threads) --------------------------------------------------------------
    def _send(self, row: Claimed) -> Attempt:
        try:
            kind = row.integration.partition("[")[0]
            if kind not in RECEIVER_CONFIGS:
                raise PermanentError(f"unknown integration type {kind!r}")
            try:
                integrations = receiver_integrations(self.notifications(), row.receiver)
            except KeyError:
                raise PermanentError(f"receiver {row.receiver!r} is not configured") from None
            integration = next((i for i in integrations if i.name == row.integration), None)
            if integration is None:
                raise PermanentError(f"receiver {row.receiver!r} has no integration {row.integration}")
            payload = json.loads(row.payload)
            if not integration.config.send_resolved:
                # As Alertmanager: resolved alerts are left out, and a message of nothing
                # but resolved alerts is not sent.
                firing = [a for a in payload.get("alerts") or () if a.get("status") == "firing"]
                if not firing:
                    return Attempt(ok=True, answer="not sent: only resolved alerts and send_resolved is false")
                payload = {**payload, "alerts": firing}
            ctx = SendContext(integration, payload, self._secret, self.config.timeout, self.clock)
            return import_module(f"console.notify.receivers.{kind}").send(ctx)
        except PermanentError as exc:
            return Attempt(ok=False, error=str(exc))

    def _secret(self, name: str) -> str:
        # Read here, on the send's own thread, at each attempt: a secret rotated or added
        # after a failure is used by the next attempt, and the IOLoop is not involved.
        try:
            return self.db.run(self.secrets.reveal, name)
        except SecretError as exc:
            raise PermanentError(f"secret {name!r}: {exc}") from None


def _any_due(session: Session, now: float) -> bool:
    return session.execute(select(Notification.id).where(
        Notification.status == PENDING, Notification.next_attempt_at <= now).limit(1)).first() is not None


def log_entry(row: Notification) -> dict:
    """One notification as the log shows it: the row's fields (times in Unix seconds)
    plus, from its payload, ``alert_status`` (firing or resolved), ``alerts`` (how many)
    and ``alertnames``; not the payload itself."""
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = {}
    alerts = payload.get("alerts") or []
    return {"id": row.id, "created_at": row.created_at, "receiver": row.receiver, "integration": row.integration,
            "group_key": row.group_key, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at if row.status == PENDING else None,
            "last_attempt_at": row.last_attempt_at, "last_status": row.last_status, "last_error": row.last_error,
            "answer": row.answer, "sent_at": row.sent_at, "alert_status": payload.get("status"),
            "alerts": len(alerts), "group_labels": payload.get("groupLabels") or {},
            "alertnames": sorted({a.get("labels", {}).get("alertname", "") for a in alerts} - {""})}


def test_payload(receiver: str, external_url: str, now: float) -> dict:
    """The version-4 payload of a test message: one firing alert."""
    from console.notify.model import fingerprint
    from console.notify.render import TEST_ALERTNAME

    labels = {"alertname": TEST_ALERTNAME, "severity": "info", "instance": "fleetdeck"}
    starts = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {"status": "firing", "labels": labels,
             "annotations": {"summary": f"A test message from Fleetdeck to receiver {receiver}."},
             "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": f"{external_url}/notifications",
             "fingerprint": fingerprint(labels)}
    return {"receiver": receiver, "status": "firing", "alerts": [alert], "groupLabels": {"alertname": TEST_ALERTNAME},
            "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": external_url,
            "version": "4", "groupKey": f'{{}}:{{alertname="{TEST_ALERTNAME}"}}', "truncatedAlerts": 0}


def failed_series(session: Session, now_ms: int) -> list:
    """``fleetdeck_notifications_failed{receiver, integration}`` = 1 from the first to an
    hour after the last notification of that integration that failed within the last
    hour, a sample a minute (VirtualSource series for the shipped ``NotificationsFailing``
    rule; the table survives restarts where counters do not)."""
    from console.alerting.service import _grid
    from console.promql.storage import VirtualSeries
    from console.promql.values import NAME, make_labels

    since = now_ms / 1000 - FAILED_WINDOW_S
    out = []
    rows = session.execute(
        select(Notification.receiver, Notification.integration, func.min(Notification.last_attempt_at),
               func.max(Notification.last_attempt_at))
        .where(Notification.status == FAILED, Notification.last_attempt_at >= since)
        .group_by(Notification.receiver, Notification.integration))
    for receiver, integration, first, last in rows:
        if first is None or last is None:  # the WHERE clause leaves none; narrowed for the checker
            continue
        lo, end = round(first * 1000), round(last * 1000) + FAILED_WINDOW_S * 1000

        def points(mint: int, maxt: int, lo=lo, hi=min(end - 1, now_ms)) -> tuple[list, list]:
            ts = _grid(lo, hi, FAILED_STEP_S * 1000, mint, maxt)
            return ts, [1.0] * len(ts)
        labels = make_labels({NAME: "fleetdeck_notifications_failed", "receiver": receiver,
                              "integration": integration})
        out.append(VirtualSeries(labels, points, end))
    return out
