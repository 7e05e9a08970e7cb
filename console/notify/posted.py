"""Alerts posted to ``/alertmanager/api/v2/alerts``, shared by the consoles of one
database (docs/scaling.md).

A post is merged into the ``posted_alerts`` table by fingerprint (the merge rule of
console/notify/store.py, Alertmanager's ``Alert.Merge``) in one transaction, then put
into this console's alert store, and the other consoles are told (console/cluster/shared.py,
name ``alerts``): each re-reads the table and puts the alerts that changed into its own
store. Every console therefore lists the same posted alerts, and the leader's dispatcher,
the only one that groups and notifies (console/notify/dispatch.py), gets every alert
whichever console received its post; a console that becomes leader has them already.

Rows are kept until their alert has been resolved for the store's retention (15 min),
then deleted by the next post.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from threading import Lock

import orjson
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from console.cluster.shared import SharedState
from console.notify.model import NotifyAlert
from console.notify.store import AlertStore, merge
from console.storage.database import Database
from console.storage.models import PostedAlert


MAX_VERSIONS = 100_000  # fingerprints remembered before those the store dropped are forgotten


def _json(value: dict) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _alert(row: PostedAlert) -> NotifyAlert:
    return NotifyAlert(labels=orjson.loads(row.labels), annotations=orjson.loads(row.annotations),
                       starts_at=row.starts_at, ends_at=row.ends_at, generator_url=row.generator_url,
                       updated_at=row.updated_at, source="api")


class PostedAlerts:
    """``post`` stores alerts (from the API handler); ``reread`` brings the table into the
    store (on a notice from another console, and periodically)."""

    def __init__(self, db: Database, store: AlertStore, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.shared: SharedState | None = None  # set by Services
        # fingerprint -> the row version (updated_at, starts_at, ends_at) last put into the store
        self._versions: dict[str, tuple] = {}
        self._lock = Lock()

    async def post(self, alerts: list[NotifyAlert], now: float) -> None:
        """Merge ``alerts`` into the table (one transaction), then into this console's
        store; the other consoles re-read the table."""
        stored = await self.db.write(self._merge, alerts, now, self.store.retention_s)
        self._put(stored)
        if self.shared is not None:
            self.shared.changed("alerts")

    @staticmethod
    def _merge(session: Session, alerts: list[NotifyAlert], now: float, retention_s: float) -> list[NotifyAlert]:
        batch: dict[str, NotifyAlert] = {}
        for alert in alerts:  # in order: a later alert of one fingerprint merges with the earlier
            fp = alert.fingerprint
            batch[fp] = merge(batch.get(fp), NotifyAlert(dict(alert.labels), dict(alert.annotations),
                                                        alert.starts_at, alert.ends_at, alert.generator_url,
                                                        now, "api"))
        # Rows of these fingerprints are locked (PostgreSQL) so two consoles merging the
        # same alert at once merge one after the other; SQLite serialises the writers.
        rows = {row.fingerprint: row for row in session.scalars(
            select(PostedAlert).where(PostedAlert.fingerprint.in_(list(batch))).with_for_update())}
        for fp, alert in batch.items():
            row = rows.get(fp)
            if row is not None:
                merge(_alert(row), alert)
            else:
                row = PostedAlert(fingerprint=fp)
                session.add(row)
            row.labels, row.annotations = _json(alert.labels), _json(alert.annotations)
            row.starts_at, row.ends_at, row.generator_url, row.updated_at = (
                alert.starts_at, alert.ends_at, alert.generator_url, now)
        session.execute(delete(PostedAlert).where(PostedAlert.ends_at <= now - retention_s))
        return list(batch.values())

    async def reread(self) -> int:
        """Put the alerts whose rows changed since this console last put them into the
        store; returns how many."""
        rows = await self.db.read(self._current, self.clock() - self.store.retention_s)
        with self._lock:
            changed = [a for a in rows if self._versions.get(a.fingerprint) != (a.updated_at, a.starts_at, a.ends_at)]
        self._put(changed)
        return len(changed)

    @staticmethod
    def _current(session: Session, resolved_after: float) -> list[NotifyAlert]:
        return [_alert(row) for row in session.scalars(select(PostedAlert).where(
            or_(PostedAlert.ends_at.is_(None), PostedAlert.ends_at > resolved_after)))]

    def _put(self, alerts: list[NotifyAlert]) -> None:
        # Each alert is put at the time its post was received, so the dispatcher's
        # group_wait runs from the post on every console.
        for alert in sorted(alerts, key=lambda a: a.updated_at):
            self.store.put([alert], alert.updated_at)
            with self._lock:
                self._versions[alert.fingerprint] = (alert.updated_at, alert.starts_at, alert.ends_at)
        if len(self._versions) > MAX_VERSIONS:
            with self._lock:  # forget fingerprints the store dropped (resolved past retention)
                self._versions = {fp: v for fp, v in self._versions.items() if self.store.get(fp) is not None}
