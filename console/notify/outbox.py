"""The outbox: every notification is a row of ``notifications`` before anything is sent,
so a restart loses none and a crash between sending and recording sends at most once
more. The same rows are the notification log (``GET /api/v1/notifications``) and the
dispatcher's memory of what each group last notified (Alertmanager's ``nflog``).

A row is one message to one integration of one receiver (Alertmanager retries and logs
per integration): ``integration`` is ``TYPE[INDEX]`` as Alertmanager names them
(``webhook[0]``, ``email[1]``, ``dingtalk[0]``). ``payload`` is the JSON of
Alertmanager's webhook version-4 message, which every receiver renders from::

    {"version": "4", "groupKey": str, "truncatedAlerts": int, "status": "firing"|"resolved",
     "receiver": str, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
     "externalURL": str,
     "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt" (RFC 3339),
                 "generatorURL", "fingerprint"}]}

``dedup_key`` is unique: the dispatcher derives it from what it decided to send (group,
receiver, integration, the alerts' fingerprints and states, the interval), so the same
decision taken twice (a restart in between) enqueues once.

Status: ``pending`` (to send at ``next_attempt_at``), ``sent``, ``failed`` (a 4xx other
than 429, or retries exhausted; ``last_error`` and ``answer`` say why).
"""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from console.storage.models import Notification

PENDING, SENT, FAILED = "pending", "sent", "failed"
ANSWER_CAP = 4096  # bytes of a receiver's answer kept in the log


def enqueue(session: Session, *, receiver: str, integration: str, group_key: str, dedup_key: str,
            payload: str, now: float) -> bool:
    """Add one pending notification unless ``dedup_key`` is already there; True if added.
    Call on the database writer (``Database.write``)."""
    return bool(enqueue_many(session, [{"receiver": receiver, "integration": integration, "group_key": group_key,
                                        "dedup_key": dedup_key, "payload": payload}], now))


def enqueue_many(session: Session, rows: list[dict], now: float) -> int:
    """``enqueue`` for many rows (dicts of receiver, integration, group_key, dedup_key,
    payload) in one statement, compiled once; returns how many were added."""
    if not rows:
        return 0
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = [{**row, "created_at": now, "status": PENDING, "attempts": 0, "next_attempt_at": now} for row in rows]
    # Core executemany on the session's connection: one compiled statement for all rows.
    return session.connection().execute(dialect_insert(Notification.__table__).on_conflict_do_nothing(),
                                        values).rowcount
