"""The ingest service: one agent batch -> one database transaction.

The batch row (host, batch_id) is inserted first with ON CONFLICT DO NOTHING: when it
already exists the batch is a replay and nothing else is written, so a batch is stored
exactly once however often an agent resends it. Series ids are cached per
(host, name, labels) after commit, so a steady agent costs one bulk INSERT of samples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.ingest.batch import Batch
from console.storage.database import Database
from console.storage.models import Host, IngestBatch, LogRecord, Sample, Series

SeriesKey = tuple[int, str, str]  # (host_id, name, labels_json)


@dataclass(frozen=True)
class IngestResult:
    """What the console answers: counts accepted, and whether the batch was a replay."""

    accepted_samples: int
    accepted_logs: int
    duplicate: bool
    host: str
    last_ts: int | None  # newest sample or log timestamp in the batch, Unix ms

    def as_json(self) -> dict:
        return {"accepted_samples": self.accepted_samples, "accepted_logs": self.accepted_logs,
                "duplicate": self.duplicate}


class IngestService:
    """Stores batches. ``store`` is blocking and must run on the database writer thread
    (``await service.ingest(batch)`` arranges that)."""

    MAX_CACHED_SERIES = 1_000_000

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self._series_ids: dict[SeriesKey, int] = {}

    async def ingest(self, batch: Batch) -> IngestResult:
        return await self._db.on_writer(self.store, batch)

    def store(self, batch: Batch) -> IngestResult:
        new_ids: dict[SeriesKey, int] = {}
        result = self._db.run(self._store_tx, batch, new_ids)
        # Only ids of committed series enter the cache.
        if len(self._series_ids) + len(new_ids) > self.MAX_CACHED_SERIES:
            self._series_ids.clear()
        self._series_ids.update(new_ids)
        return result

    def _store_tx(self, session: Session, batch: Batch, new_ids: dict[SeriesKey, int]) -> IngestResult:
        now = self._clock()
        host = self._host(session, batch, now)
        fresh = session.execute(
            self._db.insert_ignore(IngestBatch.__table__),
            {"host_id": host.id, "batch_id": batch.batch_id, "received_at": now,
             "samples": batch.sample_count, "logs": len(batch.logs)},
        ).rowcount
        if not fresh:
            return IngestResult(0, 0, True, batch.host, batch.last_ts)
        ids = self._resolve_series(session, host.id, batch, new_ids)
        rows = [{"series_id": ids[(host.id, m.name, m.labels_json)], "ts": ts, "value": value}
                for m in batch.metrics for ts, value in m.points]
        samples = 0
        if rows:
            # Driver rowcount over executemany can be -1 (unknown); then every row counts.
            samples = session.execute(self._db.insert_ignore(Sample.__table__), rows).rowcount
            samples = len(rows) if samples < 0 else samples
        if batch.logs:
            session.execute(LogRecord.__table__.insert(), [
                {"host_id": host.id, "ts": r.ts, "source": r.source, "line": r.line,
                 "labels": r.labels_json, "level": r.level} for r in batch.logs])
        return IngestResult(samples, len(batch.logs), False, batch.host, batch.last_ts)

    def _host(self, session: Session, batch: Batch, now: float) -> Host:
        host = session.execute(select(Host).where(Host.name == batch.host)).scalar_one_or_none()
        if host is None:
            host = Host(name=batch.host, first_seen=now, labels=batch.labels_json)
            session.add(host)
        host.last_seen = now
        if batch.agent_version:
            host.agent_version = batch.agent_version
        if batch.interval:
            host.interval_s = batch.interval
        if batch.labels_json != "{}":
            host.labels = batch.labels_json
        session.flush()
        return host

    def _resolve_series(self, session: Session, host_id: int, batch: Batch,
                        new_ids: dict[SeriesKey, int]) -> dict[SeriesKey, int]:
        wanted = {(host_id, m.name, m.labels_json): m.type for m in batch.metrics}
        ids = {k: self._series_ids[k] for k in wanted if k in self._series_ids}
        missing = [k for k in wanted if k not in ids]
        if not missing:
            return ids
        table = Series.__table__
        session.execute(self._db.insert_ignore(table), [
            {"host_id": h, "name": n, "labels": lj, "type": wanted[(h, n, lj)]} for h, n, lj in missing])
        names = sorted({n for _, n, _ in missing})
        for start in range(0, len(names), 500):
            rows = session.execute(
                select(table.c.id, table.c.name, table.c.labels)
                .where(table.c.host_id == host_id, table.c.name.in_(names[start:start + 500])))
            for sid, name, labels in rows:
                key = (host_id, name, labels)
                if key in wanted:
                    ids[key] = sid
                    new_ids[key] = sid
        return ids
