"""The ingest service: one agent batch -> one database transaction.

The batch row (host, batch_id) is inserted first with ON CONFLICT DO NOTHING: when it
already exists the batch is a replay and nothing else is written, so a batch is stored
exactly once however often an agent resends it. Series ids are cached per
(host, name, labels) after commit, so a steady agent costs one bulk INSERT of samples,
sent through the driver's own ``executemany`` (SQLAlchemy's per-row parameter handling
costs more than the INSERT itself on SQLite). Log records go through
console.logs.store.LogStore, which indexes them for search in the same transaction.

Samples that cannot be stored are rejected one by one, never the whole batch: outside the
time window (``too_old``: older than ``sample_max_age`` or the raw retention; ``too_new``), of a new series over the host's series cap
(``series_limit``), or sent as "NaN"/"Inf" (``non_finite``). Each is counted per host and
reason in ``ingest_rejections`` in the same transaction, and reported in the answer.
Log records older than the log retention (``log_retention_days``) are refused one by one
(``log_too_old``), since retention would delete them within minutes of an answer that
counted them as accepted; one stamped too far ahead is stored at the receive time
(:meth:`IngestService._clamp_future_logs`).

Each batch's ``sent_at`` is compared with the console's clock; the host keeps the offset
(``hosts.clock_skew_seconds``), shown by ``/api/v1/hosts`` and ``/metrics`` and flagged
beyond ``clock_skew_max_seconds``.

A remote write batch (``Batch.all_or_nothing``, console/ingest/remote_write.py) takes the
same path with two differences: it has no batch id (no replay row; a resent sample is a
duplicate ``(series_id, ts)`` and ignored), and a sample outside the time window or of a
new series over the cap fails the whole batch: the transaction is rolled back, the
rejections are counted in a transaction of their own, and :class:`IngestRejected` raised
(the sender is told 400, as Prometheus' own receiver answers an out-of-bounds sample).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.errors import InvalidInput
from console.ingest.batch import Batch, BatchDecoder, LogIn, canonical_labels
from console.logs.store import LogStore
from console.storage.database import Database, driver_cursor, driver_errors, execute_dml
from console.storage.models import Host, IngestBatch, IngestRejection, RollupWatermark, Series
from console.tiers.service import HOUR_MS, MINUTE_MS, TIER_BY_NAME

SeriesKey = tuple[int, str, str]  # (host_id, name, labels_json)
# A batch that waited in an agent's spool carries the sent_at of when it was built, so it
# looks older than its agent's clock is; delay only ever pushes the offset down. The
# highest offset seen within this many seconds is kept as the host's skew.
SKEW_HOLD_SECONDS = 300.0


@dataclass(frozen=True)
class IngestResult:
    """What the console answers: counts accepted, and whether the batch was a replay.
    ``rejected`` maps a reason to the number of samples (or, for ``log_*`` reasons, log
    records) not stored for it. ``clock_skew_seconds`` is the host's held clock offset
    (agent minus console, s; None when no batch carried ``sent_at``); not in the answer."""

    accepted_samples: int
    accepted_logs: int
    duplicate: bool
    host: str
    last_ts: int | None  # newest sample or log timestamp in the batch, Unix ms
    rejected: dict[str, int] = field(default_factory=dict)
    clock_skew_seconds: float | None = None

    def as_json(self) -> dict:
        body: dict[str, Any] = {"accepted_samples": self.accepted_samples, "accepted_logs": self.accepted_logs,
                "duplicate": self.duplicate}
        if self.rejected:
            logs = sum(n for reason, n in self.rejected.items() if reason.startswith("log_"))
            body["rejected_samples"] = sum(self.rejected.values()) - logs
            if logs:
                body["rejected_logs"] = logs
            body["rejected"] = dict(self.rejected)
        return body


class IngestRejected(InvalidInput):
    """An all-or-nothing batch was not stored (400 ``samples_rejected``): ``rejected`` maps a
    reason (too_old, too_new, series_limit) to the number of samples refused for it,
    ``examples`` a reason to one refused series (and timestamp); both are the ``details``."""

    default_code = "samples_rejected"

    def __init__(self, rejected: dict[str, int], examples: dict[str, str]) -> None:
        counts = ", ".join(f"{count} {reason}" for reason, count in sorted(rejected.items()))
        super().__init__(f"nothing stored: samples refused ({counts})", {"rejected": rejected, "examples": examples})
        self.rejected = rejected
        self.examples = examples


class IngestService:
    """Stores batches. ``store`` is blocking and must run on the database writer thread
    (``await service.ingest(batch)`` arranges that)."""

    MAX_CACHED_SERIES = 1_000_000

    def __init__(self, db: Database, clock: Callable[[], float] = time.time,
                 config: ConsoleConfig | None = None) -> None:
        self._db = db
        self._clock = clock
        self._config = config or ConsoleConfig()
        self._series_ids: dict[SeriesKey, int] = {}
        self._logs = LogStore(db.dialect)
        self._decoder = BatchDecoder()
        if db.dialect == "postgresql":
            self._insert_samples = ("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) "
                                    "ON CONFLICT DO NOTHING")
        else:
            self._insert_samples = "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?, ?, ?)"

    def decode(self, body: bytes, content_encoding: str | None, max_bytes: int) -> Batch:
        """An ingest body (``Content-Encoding`` gzip or none) -> Batch, on the caller's
        thread (the IOLoop's); raises IngestError 400/413/415 (console/ingest/batch.py)."""
        return self._decoder.decode(body, content_encoding, max_bytes)

    async def ingest(self, batch: Batch) -> IngestResult:
        return await self._db.on_writer(self.store, batch)

    def store(self, batch: Batch) -> IngestResult:
        new_ids: dict[SeriesKey, int] = {}
        try:
            result = self._db.run(self._store_tx, batch, new_ids)
        except IngestRejected as exc:
            # Nothing of the batch was stored; the refusal itself is counted for the host.
            self._db.run(self._count_refusal, batch, exc)
            raise
        # Only ids of committed series enter the cache.
        if len(self._series_ids) + len(new_ids) > self.MAX_CACHED_SERIES:
            self._series_ids.clear()
        self._series_ids.update(new_ids)
        return result

    async def aretire_host(self, audit, tokens, actor: str, source: str, name: str) -> dict:  # noqa: ANN001
        """:meth:`retire_host` on the database writer."""
        return await self._db.on_writer(self.retire_host, audit, tokens, actor, source, name)

    def retire_host(self, audit, tokens, actor: str, source: str, name: str) -> dict:  # noqa: ANN001
        """Delete host ``name`` and its data (console/fleet/retire.py), then drop the token
        lookup cache (``tokens``: TokenService; its agent tokens were revoked) and the host's
        cached series ids, on the writer thread like ``store``: a batch queued behind it
        cannot reuse a cached id of a deleted series (SQLite may give a new host the old
        id). Raises HostNotFound."""
        from console.fleet.retire import retire_host

        result = self._db.run(retire_host, audit, self._clock(), actor, source, name)
        tokens.forget()
        self._series_ids = {k: v for k, v in self._series_ids.items() if k[0] != result["host_id"]}
        return result

    def _store_tx(self, session: Session, batch: Batch, new_ids: dict[SeriesKey, int]) -> IngestResult:
        now = self._clock()
        host = self._host(session, batch, now)
        if batch.batch_id:
            fresh = execute_dml(
                session, self._db.insert_ignore(IngestBatch.__table__),
                {"host_id": host.id, "batch_id": batch.batch_id, "received_at": now,
                 "samples": batch.sample_count, "logs": len(batch.logs)},
            ).rowcount
            if not fresh:
                return IngestResult(0, 0, True, batch.host, batch.last_ts, clock_skew_seconds=host.clock_skew_seconds)
        rejected: Counter[str] = Counter()
        examples: dict[str, str] = {}
        ids = self._resolve_series(session, host.id, batch, new_ids, rejected, examples)
        # Older than the raw retention, a sample would be deleted by the next retention run.
        lo = int((now - min(self._config.sample_max_age, self._config.retention_raw_days * 86400)) * 1000)
        hi = int((now + self._config.sample_max_future) * 1000)
        rows: list[tuple[int, int, float]] = []
        host_id = host.id  # an ORM attribute: read once, not per series
        for m in batch.metrics:
            if m.non_finite:
                rejected["non_finite"] += m.non_finite
                examples["non_finite"] = f"{m.name}{m.labels_json}"
            sid = ids.get((host_id, m.name, m.labels_json))
            if sid is None:
                continue  # counted as series_limit by _resolve_series
            kept = [(sid, ts, value) for ts, value in m.points if lo <= ts <= hi]
            if len(kept) != len(m.points):
                for ts, _ in m.points:
                    if ts < lo or ts > hi:
                        reason = "too_old" if ts < lo else "too_new"
                        rejected[reason] += 1
                        examples[reason] = f"{m.name}{m.labels_json} @ {ts}"
            rows.extend(kept)
        if batch.all_or_nothing:
            refused = {reason: n for reason, n in rejected.items() if reason != "non_finite"}
            if refused:
                raise IngestRejected(refused, {reason: examples[reason] for reason in refused})
        samples = 0
        if rows:
            cursor = driver_cursor(session)
            try:
                with driver_errors(session, self._insert_samples):
                    if self._db.dialect == "postgresql":
                        samples = self._copy_samples(cursor, rows)
                    else:
                        cursor.executemany(self._insert_samples, rows)
                        samples = cursor.rowcount
            finally:
                cursor.close()
            # rowcount over executemany may be -1 (unknown); then every row counts.
            samples = len(rows) if samples is None or samples < 0 else samples
            self._reopen_rollups(session, min(r[1] for r in rows), now)
        if batch.logs and self._config.log_retention_days > 0:
            self._refuse_old_logs(batch.logs, now, rejected, examples)
        if batch.logs:
            self._clamp_future_logs(batch.logs, now)
            # LogStore indexes the records for search in this same transaction.
            hid = host.id
            self._logs.insert(session, [(hid, r.ts, r.source, r.line, r.labels_json, r.level)
                                        for r in batch.logs])
        if rejected:
            self._count_rejections(session, host.id, rejected, examples, now)
        return IngestResult(samples, len(batch.logs), False, batch.host, batch.last_ts, dict(rejected),
                            host.clock_skew_seconds)

    def _refuse_old_logs(self, logs: list[LogIn], now: float, rejected: Counter, examples: dict) -> None:
        """Remove from ``logs`` (in place, so the live frame shows only what was stored) the
        records stamped before the log retention cutoff, counted as ``log_too_old``."""
        cutoff = int((now - self._config.log_retention_days * 86400) * 1000)
        kept = [r for r in logs if r.ts >= cutoff]
        if len(kept) != len(logs):
            oldest = min(logs, key=lambda r: r.ts)
            rejected["log_too_old"] += len(logs) - len(kept)
            examples["log_too_old"] = f"{oldest.source} @ {oldest.ts}"
            logs[:] = kept

    def _count_refusal(self, session: Session, batch: Batch, exc: IngestRejected) -> None:
        now = self._clock()
        host = self._host(session, batch, now)
        self._count_rejections(session, host.id, Counter(exc.rejected), exc.examples, now)

    def _clamp_future_logs(self, logs: list[LogIn], now: float) -> None:
        """Log records stamped more than ``sample_max_future`` seconds ahead of the
        console's clock (an agent with a skewed clock) are stored at the receive time, with
        the stamp they came with, Unix ms, in the ``original_ts`` label: kept, but not
        listed above every real line until retention (Splunk's MAX_DAYS_HENCE does the
        like). Changes ``logs`` in place, so the live frame shows what was stored."""
        hi = int((now + self._config.sample_max_future) * 1000)
        received = int(now * 1000)
        for record in logs:
            if record.ts > hi:
                labels = orjson.loads(record.labels_json)
                labels["original_ts"] = str(record.ts)
                record.ts, record.labels_json = received, canonical_labels(labels)

    @staticmethod
    def _copy_samples(cursor, rows: list[tuple[int, int, float]]) -> int:  # noqa: ANN001 - psycopg cursor
        """PostgreSQL: COPY into a per-connection temporary table, then one INSERT ... SELECT
        ON CONFLICT DO NOTHING (COPY alone cannot skip duplicates). Returns rows inserted."""
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS samples_in (series_id integer, ts bigint, "
                       "value double precision) ON COMMIT DELETE ROWS")
        with cursor.copy("COPY samples_in (series_id, ts, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value "
                       "FROM samples_in ON CONFLICT DO NOTHING")
        return cursor.rowcount

    def _reopen_rollups(self, session: Session, oldest_ts: int, now: float) -> None:
        """A sample in or before the window a tier is rolling up moves that tier's watermark
        back to the sample's bucket and bumps its generation, so the rollup job recomputes
        the bucket (rollups are recomputed from their source, never added to, so this
        cannot double count). Samples of the still-open minutes change nothing."""
        table = RollupWatermark.__table__
        marks = {t: (d, g) for t, d, g in session.execute(
            select(table.c.tier, table.c.done_until, table.c.generation))}
        if not marks:
            return
        open_from = int((now - self._config.rollup_delay) * 1000)
        reopen = {}
        b1 = oldest_ts // MINUTE_MS * MINUTE_MS
        if "1m" in marks and b1 < min(marks["1m"][0] + MINUTE_MS * TIER_BY_NAME["1m"].window_buckets, open_from):
            reopen["1m"] = b1
            bh = oldest_ts // HOUR_MS * HOUR_MS
            if "1h" in marks and bh < marks["1h"][0] + HOUR_MS * TIER_BY_NAME["1h"].window_buckets:
                reopen["1h"] = bh
        for tier, bucket in reopen.items():
            done, generation = marks[tier]
            session.execute(update(table).where(table.c.tier == tier)
                            .values(done_until=min(done, bucket), generation=generation + 1))

    def _count_rejections(self, session: Session, host_id: int, rejected: Counter, examples: dict,
                          now: float) -> None:
        table = IngestRejection.__table__
        insert = (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)
        for reason, count in rejected.items():
            stmt = insert.values(host_id=host_id, reason=reason, count=count, last_at=now,
                                 last_example=examples.get(reason, "")[:1024])
            session.execute(stmt.on_conflict_do_update(
                index_elements=[table.c.host_id, table.c.reason],
                set_={"count": table.c.count + stmt.excluded.count, "last_at": stmt.excluded.last_at,
                      "last_example": stmt.excluded.last_example}))

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
        if batch.config_hash:
            host.config_hash = batch.config_hash
        if batch.labels_json != "{}":
            host.labels = batch.labels_json
        if batch.sent_at is not None:
            skew = float(batch.sent_at) - now
            if (host.clock_skew_at is None or host.clock_skew_seconds is None
                    or now - host.clock_skew_at > SKEW_HOLD_SECONDS or skew >= host.clock_skew_seconds):
                host.clock_skew_seconds, host.clock_skew_at = skew, now
        session.flush()
        return host

    def _lookup_series(self, session: Session, host_id: int, keys: list[SeriesKey], wanted: dict,
                       ids: dict[SeriesKey, int], new_ids: dict[SeriesKey, int]) -> None:
        """Fill ``ids`` (and ``new_ids``) with the stored ids of those series ``keys`` of
        ``host_id`` that exist, found on the series' unique index (host_id, name, labels):
        SQLite by one point lookup per key (its row-value ``IN`` reads every series of the
        host), PostgreSQL by a join with the keys as two arrays, 5,000 per statement.
        Selecting by name alone would read every series of a name: thousands for one
        histogram or one remote-written metric."""
        cursor = driver_cursor(session)
        found: list[tuple[int, str, str]] = []
        try:
            if self._db.dialect == "postgresql":
                sql = ("SELECT s.id, s.name, s.labels FROM series s JOIN unnest(%s::text[], %s::text[]) "
                       "AS k(name, labels) ON s.name = k.name AND s.labels = k.labels WHERE s.host_id = %s")
                with driver_errors(session, sql):
                    for start in range(0, len(keys), 5000):
                        chunk = keys[start:start + 5000]
                        cursor.execute(sql, ([k[1] for k in chunk], [k[2] for k in chunk], host_id))
                        found.extend(cursor.fetchall())
            else:
                sql = "SELECT id FROM series WHERE host_id = ? AND name = ? AND labels = ?"
                with driver_errors(session, sql):
                    for _, name, labels in keys:
                        row = cursor.execute(sql, (host_id, name, labels)).fetchone()
                        if row is not None:
                            found.append((row[0], name, labels))
        finally:
            cursor.close()
        for sid, name, labels in found:
            key = (host_id, name, labels)
            if key in wanted:
                ids[key] = sid
                new_ids[key] = sid

    def _resolve_series(self, session: Session, host_id: int, batch: Batch,
                        new_ids: dict[SeriesKey, int], rejected: Counter, examples: dict
                        ) -> dict[SeriesKey, int]:
        wanted: dict[SeriesKey, str] = {}
        for m in batch.metrics:
            wanted.setdefault((host_id, m.name, m.labels_json), m.type)
        ids: dict[SeriesKey, int] = {}
        missing: list[SeriesKey] = []
        cached = self._series_ids.get
        for key in wanted:  # one lookup per series: the hot path of a steady sender
            sid = cached(key)
            if sid is None:
                missing.append(key)
            else:
                ids[key] = sid
        if not missing:
            return ids
        table = Series.__table__
        # Which of the missing series exist already (ids not cached yet)?
        self._lookup_series(session, host_id, missing, wanted, ids, new_ids)
        missing = [k for k in missing if k not in ids]
        if not missing:
            return ids
        existing = session.execute(select(func.count()).select_from(table)
                                   .where(table.c.host_id == host_id)).scalar_one()
        room = max(0, self._config.max_series_per_host - existing)
        over = missing[room:]
        if over:
            points: Counter[SeriesKey] = Counter()
            for m in batch.metrics:
                points[(host_id, m.name, m.labels_json)] += len(m.points)
            rejected["series_limit"] += sum(points[k] for k in over)
            examples["series_limit"] = f"{over[-1][1]}{over[-1][2]}"
        create = missing[:room]
        if create:
            session.execute(self._db.insert_ignore(table), [
                {"host_id": h, "name": n, "labels": lj, "type": wanted[(h, n, lj)]} for h, n, lj in create])
            self._lookup_series(session, host_id, create, wanted, ids, new_ids)
        return ids
