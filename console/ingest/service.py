"""The ingest service: agent batches -> database transactions, with group commit.

Batches that wait for the writer thread are stored together in one transaction
(:meth:`IngestService.ingest`, :meth:`IngestService.store_group`), each answered only
after that commit. In it the batch id rows are inserted first with ON CONFLICT DO
NOTHING ... RETURNING: a batch whose row already existed is a replay and nothing else of
it is written, so a batch is stored exactly once however often an agent resends it. Host
rows (id, held clock skew) and series ids are cached per (host, name, labels) after
commit, so a steady agent costs one bulk INSERT of samples, sent through the driver's own
``executemany`` (SQLAlchemy's per-row parameter handling costs more than the INSERT
itself on SQLite), and its share of one host UPDATE, one batch-id INSERT and one read of
the rollup watermarks per group. Log records go through console.logs.store.LogStore,
which indexes them for search in the same transaction.

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

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.errors import InvalidInput
from console.ingest.batch import Batch, BatchDecoder, LogIn, canonical_labels
from console.logs.store import LogRow, LogStore
from console.storage.database import Database, driver_cursor, driver_errors
from console.storage.hot_samples import INSERT_SQLITE
from console.storage.partitions import LOG_TABLE, Partition, TimePartitioned, cover, partitions, width_ms
from console.storage.partitions import TABLES as PARTITIONED
from console.storage.models import Host, IngestRejection, RollupWatermark, Series
from console.tiers.service import HOUR_MS, MINUTE_MS, TIER_BY_NAME

SeriesKey = tuple[int, str, str]  # (host_id, name, labels_json)
# A batch that waited in an agent's spool carries the sent_at of when it was built, so it
# looks older than its agent's clock is; delay only ever pushes the offset down. The
# highest offset seen within this many seconds is kept as the host's skew.
SKEW_HOLD_SECONDS = 300.0
# A cached series id is used without a lookup only while the writer has seen a sample of
# it this recently: retention deletes a series only when its last sample is days old, so
# an id trusted this way cannot be one retention deleted (docs/metrics.md, "Series lifecycle").
SERIES_ID_TRUST_MS = 3_600_000
# The width of the windows ``last_ts`` moves by (bound_end): Prometheus' lookback delta,
# for which a series counts as present after its last sample. One minute cost a steady
# series an UPDATE row every 6 samples at 10 s (about a fifth of the SQLite writer's
# transaction); five, one every 30, and 5 % more samples/s with two workers (BENCHMARKS.md).
BOUND_WINDOW_MS = 300_000
_row_ts = itemgetter(1)  # the time of a sample row (series_id, ts, value)


def bound_end(series_id: int, ts: int) -> int:
    """The ``last_ts`` the ingest writer stores for a sample of ``series_id`` at ``ts``
    (Unix ms): the end of the five-minute window (:data:`BOUND_WINDOW_MS`) of that series
    holding ``ts``, so it runs ahead of the sample by under five minutes and changes once
    every five minutes at most. Each series' windows start at an offset of its own (its
    id times a prime, modulo the window): with windows aligned on the clock's minutes,
    every series of every agent crossed into a new window in the same ~10 s after each
    minute, and those batches carried one UPDATE row per series while the others carried
    none; on PostgreSQL (a row version and an entry in each of the series' four indexes
    per row) that burst made batches wait ~0.5 s behind it. Staggered, each batch of a
    steady agent updates about interval/300 of its series."""
    offset = series_id * 997 % BOUND_WINDOW_MS  # 997 is prime to 300,000: consecutive ids ~1 s apart
    return (ts - offset) // BOUND_WINDOW_MS * BOUND_WINDOW_MS + offset + BOUND_WINDOW_MS - 1


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
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one refused series (metric{labels})

    def as_json(self) -> dict:
        body: dict[str, Any] = {"accepted_samples": self.accepted_samples, "accepted_logs": self.accepted_logs,
                "duplicate": self.duplicate}
        if self.rejected:
            logs = sum(n for reason, n in self.rejected.items() if reason.startswith("log_"))
            body["rejected_samples"] = sum(self.rejected.values()) - logs
            if logs:
                body["rejected_logs"] = logs
            body["rejected"] = dict(self.rejected)
            if self.examples:
                body["rejected_examples"] = dict(self.examples)
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



def _all_outside(points: Sequence[tuple[int, float]], lo: int, hi: int) -> bool:
    """Whether a metric has samples and every one lies outside [lo, hi] (Unix ms): all
    refused for their time (too_old, too_new), so no series is made for them."""
    return bool(points) and not any(lo <= ts <= hi for ts, _ in points)

def settle(future: asyncio.Future, outcome: Any) -> None:
    """Give ``future`` its result, or its exception when ``outcome`` is one; a future
    cancelled meanwhile (its request went away) is left as it is."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@dataclass
class Prepared:
    """A batch's rows built before its transaction (:meth:`IngestService._prepare_rows`)
    with the cached ``host_id``, and what building them refused. ``outside``: the rows
    whose time lies outside their series' first/last sample times as this writer stored
    them, the only ones :meth:`IngestService._update_seen` needs to look at (empty:
    nothing to update; None: not known, it looks at every row)."""

    host_id: int
    rows: list[tuple[int, int, float]]
    rejected: Counter
    examples: dict[str, str]
    outside: list[tuple[int, int, float]] | None = None
    newest: int | None = None  # the newest sample's time (Unix ms) when known, else None


class StaleHostCache(Exception):
    """A cached host row was not found (deleted by another process): the caches are stale."""


@dataclass
class HostState:
    """A host row as the writer keeps it between batches (id and held clock skew), plus
    what the batches of the current group change (written by one UPDATE per group)."""

    id: int
    clock_skew_seconds: float | None
    clock_skew_at: float | None
    agent_version: str | None = None
    interval: float | None = None
    config_hash: str | None = None
    labels_json: str | None = None

    def touch(self, batch: Batch, now: float) -> None:
        """Apply ``batch`` (received at ``now``, Unix s): agent fields it carries replace
        the stored ones; the clock offset is held as :data:`SKEW_HOLD_SECONDS` says."""
        if batch.agent_version:
            self.agent_version = batch.agent_version
        if batch.interval:
            self.interval = batch.interval
        if batch.config_hash:
            self.config_hash = batch.config_hash
        if batch.labels_json != "{}":
            self.labels_json = batch.labels_json
        if batch.sent_at is not None:
            skew = float(batch.sent_at) - now
            if (self.clock_skew_at is None or self.clock_skew_seconds is None
                    or now - self.clock_skew_at > SKEW_HOLD_SECONDS or skew >= self.clock_skew_seconds):
                self.clock_skew_seconds, self.clock_skew_at = skew, now


class IngestService:
    """Stores batches. ``store`` is blocking and must run on the database writer thread
    (``await service.ingest(batch)`` arranges that)."""

    MAX_CACHED_SERIES = 1_000_000
    MAX_GROUP_BATCHES = 128  # batches stored in one transaction at most
    MAX_GROUP_ROWS = 100_000  # samples and log records in one transaction at most (or one batch)

    def __init__(self, db: Database, clock: Callable[[], float] = time.time,
                 config: ConsoleConfig | None = None) -> None:
        self._db = db
        self._clock = clock
        self._config = config or ConsoleConfig()
        self._series_ids: dict[SeriesKey, int] = {}
        # Committed (first_ts, last_ts) per series id as this writer last set them; last_ts
        # is the end of the series' five-minute window holding the newest sample (bound_end),
        # so it changes once in five minutes at most.
        self._seen: dict[int, tuple[int, int]] = {}
        self._logs = LogStore(db)
        self._decoder = BatchDecoder()
        self._hosts: dict[str, HostState] = {}  # committed host rows by name, for the writer
        # PostgreSQL: the time partitions of samples and log_records as last read (a stamp in
        # one of them needs no look at the catalog); emptied when a transaction fails.
        self._partitions: dict[str, list[Partition]] = {}
        self._queue: deque[tuple[Batch, asyncio.Future[IngestResult]]] = deque()
        self._yield_turn = self._config.workers > 1  # see writer_quiet
        self._turn_waiters: list[asyncio.Future[None]] = []
        self._drainer: asyncio.Future[None] | None = None
        # NULL keeps the stored value: a batch without agent fields changes only last_seen.
        self._update_hosts_sql = (
            "UPDATE hosts SET last_seen = ?, agent_version = coalesce(?, agent_version), "
            "interval_s = coalesce(?, interval_s), config_hash = coalesce(?, config_hash), "
            "labels = coalesce(?, labels), clock_skew_seconds = ?, clock_skew_at = ? WHERE id = ?")
        # LEAST/GREATEST (PostgreSQL) ignore a NULL; SQLite's min/max do not, hence coalesce.
        self._update_seen_sql = ("UPDATE series SET first_ts = min(coalesce(first_ts, ?), ?), "
                                 "last_ts = max(coalesce(last_ts, ?), ?) WHERE id = ?")
        if db.dialect == "postgresql":
            # One statement for the group: psycopg's executemany sends one UPDATE per row
            # (pipeline mode), ~15 us of client CPU each, which made the bounds update a
            # quarter of the PostgreSQL writer's CPU.
            self._update_seen_sql = ("UPDATE series SET first_ts = least(series.first_ts, v.first_ts), "
                                     "last_ts = greatest(series.last_ts, v.last_ts) "
                                     "FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) "
                                     "AS v(id, first_ts, last_ts) WHERE series.id = v.id")
            self._insert_samples = ("INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) "
                                    "ON CONFLICT DO NOTHING")
            self._update_hosts_sql = self._update_hosts_sql.replace("?", "%s")
        else:
            # The bucket is computed by SQLite from the time (console/storage/hot_samples.py).
            self._insert_samples = INSERT_SQLITE

    async def writer_quiet(self) -> None:
        """With several workers on one SQLite file (``workers`` > 1), wait while this
        process's writer holds the write turn; at once otherwise. Decoding and the writer
        share one GIL, so a decode during the turn halves the writer's pace (and the
        writer releases the GIL at every row it steps, each time waiting for the decode's
        switch interval) while the other workers wait for the turn; deferred, the decode
        runs while another worker writes. Call before :meth:`decode`."""
        if not self._yield_turn or not self._db.turn_held:
            return
        loop = asyncio.get_running_loop()
        if self._db.on_turn_released is None:
            def wake() -> None:  # on the writer thread
                loop.call_soon_threadsafe(self._turn_released)

            self._db.on_turn_released = wake
        future: asyncio.Future[None] = loop.create_future()
        self._turn_waiters.append(future)
        if self._db.turn_held:  # released meanwhile: its wake-up may have run already
            await future
        else:
            self._turn_released()

    def _turn_released(self) -> None:
        waiters, self._turn_waiters = self._turn_waiters, []
        for future in waiters:
            settle(future, None)

    def start(self) -> None:
        """Start the background work of the write path: the log group indexer
        (console/logs/groups.py). Without it log lines are grouped in the ingest
        transaction."""
        self._logs.start()

    def close(self) -> None:
        self._logs.close()

    def decode(self, body: bytes, content_encoding: str | None, max_bytes: int) -> Batch:
        """An ingest body (``Content-Encoding`` gzip or none) -> Batch, on the caller's
        thread (the IOLoop's); raises IngestError 400/413/415 (console/ingest/batch.py)."""
        return self._decoder.decode(body, content_encoding, max_bytes)

    async def ingest(self, batch: Batch) -> IngestResult:
        """Store ``batch`` and answer once the transaction holding it has committed.

        Batches that arrive while the writer is busy are stored together, in one transaction
        (group commit, :meth:`store_group`), up to :attr:`MAX_GROUP_BATCHES` batches or
        :attr:`MAX_GROUP_ROWS` samples and log records; no batch waits for others to come.
        An all-or-nothing batch (remote write) is stored alone. Raises what storing raised
        (IngestRejected, OperationalError...)."""
        if batch.all_or_nothing:
            return await self._db.on_writer(self._store_alone, batch, turn=False)
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        if self._drainer is None:
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        """Store the queued batches, a group at a time, until the queue is empty. Every
        batch's future gets its result or its exception. The group is taken when the
        writer thread starts on it (:meth:`_store_queued`), so it holds every batch that
        came while the writer was busy with anything."""
        try:
            while self._queue:
                group: list[tuple[Batch, asyncio.Future[IngestResult]]] = []
                try:
                    results = await self._db.on_writer(self._store_queued, group, turn=False)
                except Exception as exc:  # noqa: BLE001 - handed to the batches' requests
                    if len(group) == 1:
                        settle(group[0][1], exc)
                        continue
                    # One batch's failure must not fail the others: each is stored on its own.
                    for batch, future in group:
                        try:
                            settle(future, await self._db.on_writer(self.store, batch))
                        except Exception as single:  # noqa: BLE001
                            settle(future, single)
                    continue
                for (_, future), result in zip(group, results):
                    settle(future, result)
        finally:
            self._drainer = None

    def _store_queued(self, group: list[tuple[Batch, asyncio.Future[IngestResult]]]) -> list[IngestResult]:
        """On the writer thread: move the next group from the queue into ``group`` (the
        deque's append and popleft are atomic) and store it."""
        group.extend(self._take_group())
        batches = [batch for batch, _ in group]
        now = self._clock()
        # The rows of batches whose host and series ids are cached are built before taking
        # the write turn: with several console processes on one SQLite file, only one
        # writes at a time, so work done outside the turn overlaps the other's commit.
        prepared = self._prepare_rows(batches, now)
        with self._db.turn():
            return self.store_group(batches, prepared, now)

    def _store_alone(self, batch: Batch) -> IngestResult:
        """On the writer thread: :meth:`store` ``batch`` (all or nothing, in a transaction
        of its own), its rows built before taking the write turn when its host and series
        ids are cached, as :meth:`_store_queued` does for a group."""
        now = self._clock()
        prepared = self._prepare_rows([batch], now)
        with self._db.turn():
            try:
                return self.store_group([batch], prepared, now)[0]
            except IngestRejected as exc:
                # Nothing of the batch was stored; the refusal itself is counted for the host.
                self._db.run(self._count_refusal, batch, exc)
                raise

    def _take_group(self) -> list[tuple[Batch, asyncio.Future[IngestResult]]]:
        group = [self._queue.popleft()]
        rows = group[0][0].sample_count + len(group[0][0].logs)
        while self._queue and len(group) < self.MAX_GROUP_BATCHES:
            batch = self._queue[0][0]
            rows += batch.sample_count + len(batch.logs)
            if rows > self.MAX_GROUP_ROWS:
                break
            group.append(self._queue.popleft())
        return group

    def store(self, batch: Batch) -> IngestResult:
        """Store one batch in a transaction of its own (blocking, on the writer thread)."""
        try:
            return self.store_group([batch])[0]
        except IngestRejected as exc:
            # Nothing of the batch was stored; the refusal itself is counted for the host.
            self._db.run(self._count_refusal, batch, exc)
            raise

    def store_group(self, batches: list[Batch], prepared: dict[int, "Prepared"] | None = None,
                    now: float | None = None) -> list[IngestResult]:
        """Store ``batches`` in one transaction (blocking, on the writer thread); one result
        per batch, in order. ``prepared``: rows built before the transaction
        (:meth:`_prepare_rows`, at ``now``, Unix s). A cached host row that is gone
        (deleted by another process) empties the caches and the group is stored again."""
        if any(batch.logs for batch in batches):
            self._logs.before_insert()  # waits while the log search index lags too far
        for attempt in (1, 2):
            new_ids: dict[SeriesKey, int] = {}
            hosts: dict[str, HostState] = {}
            seen: dict[int, tuple[int, int]] = {}
            newest_log: list[int] = []
            try:
                results = self._db.run(self._store_group_tx, batches, new_ids, hosts, seen, prepared, now,
                                       newest_log)
            except BaseException as exc:
                self._partitions.clear()  # a partition made in the failed transaction is gone
                if not isinstance(exc, StaleHostCache):
                    raise
                if attempt == 2:
                    raise
                self._hosts.clear()
                self._series_ids.clear()
                prepared = None  # built with the stale ids
                continue
            break
        if newest_log:
            self._logs.committed(newest_log[0])  # the log indexer indexes them now
        # Only committed rows enter the caches.
        if len(self._series_ids) + len(new_ids) > self.MAX_CACHED_SERIES:
            self._series_ids.clear()
        self._series_ids.update(new_ids)
        if len(self._seen) + len(seen) > self.MAX_CACHED_SERIES:
            self._seen.clear()
        self._seen.update(seen)
        if len(self._hosts) + len(hosts) > self.MAX_CACHED_SERIES:
            self._hosts.clear()
        self._hosts.update(hosts)
        return results

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
        self._hosts.pop(name, None)
        return result

    def _store_group_tx(self, session: Session, batches: list[Batch], new_ids: dict[SeriesKey, int],
                        hosts: dict[str, HostState], seen: dict[int, tuple[int, int]],
                        prepared: dict[int, "Prepared"] | None = None, now: float | None = None,
                        newest_log: list[int] | None = None) -> list[IngestResult]:
        """The transaction of :meth:`store_group`: one UPDATE of the host rows, one INSERT of
        the batch ids (those it did not insert are replays, answered ``duplicate``), the
        samples of each batch, one INSERT of every log record, one look at the rollup
        watermarks. Fills ``new_ids`` and ``hosts`` for the caches, and ``newest_log`` with
        the newest log record id inserted (see LogStore.committed)."""
        now = self._clock() if now is None else now
        for batch in batches:
            state = hosts.get(batch.host)
            if state is None:
                cached = self._hosts.get(batch.host)
                state = hosts[batch.host] = (HostState(cached.id, cached.clock_skew_seconds, cached.clock_skew_at)
                                             if cached else self._host_row(session, batch, now))
            state.touch(batch, now)
        self._update_hosts(session, hosts.values(), now)
        fresh = self._claim_batch_ids(session, batches, hosts, now)
        results: list[IngestResult] = []
        # Older than the raw retention, a sample would be deleted by the next retention run.
        lo = int((now - min(self._config.sample_max_age, self._config.retention_raw_days * 86400)) * 1000)
        hi = int((now + self._config.sample_max_future) * 1000)
        samples: list[list[tuple[int, int, float]]] = []
        outside: dict[int, list[tuple[int, int, float]]] = {}  # batch index -> rows the bounds may not cover
        logs: list[LogRow] = []
        rejections: list[tuple[int, Counter, dict]] = []
        for i, (batch, is_fresh) in enumerate(zip(batches, fresh)):
            state = hosts[batch.host]
            if not is_fresh:
                results.append(IngestResult(0, 0, True, batch.host, batch.last_ts,
                                            clock_skew_seconds=state.clock_skew_seconds))
                samples.append([])
                continue
            rejected: Counter[str] = Counter()
            examples: dict[str, str] = {}
            pre = prepared.get(i) if prepared else None
            if pre is not None and pre.host_id == state.id:
                rows = pre.rows
                if pre.outside is not None:
                    outside[i] = pre.outside
                rejected.update(pre.rejected)
                examples.update(pre.examples)
            else:
                rows = self._sample_rows(session, state.id, batch, lo, hi, new_ids, rejected, examples)
            if batch.all_or_nothing:
                refused = {reason: n for reason, n in rejected.items() if reason != "non_finite"}
                if refused:
                    raise IngestRejected(refused, {reason: examples[reason] for reason in refused})
            samples.append(rows)
            if batch.logs and self._config.log_retention_days > 0:
                self._refuse_old_logs(batch.logs, now, rejected, examples)
            if batch.logs:
                self._clamp_future_logs(batch.logs, now)
                hid = state.id
                logs.extend((hid, r.ts, r.source, r.line, r.labels_json, r.level) for r in batch.logs)
            if rejected:
                rejections.append((state.id, rejected, examples))
            # A plain prepared batch's newest sample is known: Batch.last_ts would look again.
            last_ts = pre.newest if pre is not None and pre.newest is not None and not batch.logs else batch.last_ts
            results.append(IngestResult(0, len(batch.logs), False, batch.host, last_ts, dict(rejected),
                                        state.clock_skew_seconds, dict(examples)))
        oldest = min(map(_row_ts, chain.from_iterable(samples)), default=None)
        if self._db.dialect == "postgresql":
            width = width_ms(self._config, PARTITIONED["samples"])
            if oldest is not None and oldest < int(now * 1000) // width * width:
                # older than the current width, whose partition maintenance makes ahead
                self._cover(session, PARTITIONED["samples"], width, [r[1] for rows in samples for r in rows])
            if logs:
                self._cover(session, LOG_TABLE, width_ms(self._config, LOG_TABLE), [r[1] for r in logs])
        stored = self._insert_samples_of(session, samples)
        results = [replace(r, accepted_samples=n) if n else r for r, n in zip(results, stored)]
        if oldest is not None:
            self._reopen_rollups(session, oldest, now)
            self._update_seen(session, samples, seen, outside)
        if logs:
            # The group indexer groups them once committed (console/logs/groups.py).
            self._logs.insert(session, logs)
            if self._logs.newest_id and newest_log is not None:
                newest_log[:] = [self._logs.newest_id]
        for host_id, rejected, examples in rejections:
            self._count_rejections(session, host_id, rejected, examples, now)
        return results

    def _update_seen(self, session: Session, samples: list[list[tuple[int, int, float]]],
                     seen: dict[int, tuple[int, int]], outside: dict[int, list[tuple[int, int, float]]]
                     ) -> None:
        """Move the series' ``first_ts`` back and ``last_ts`` forward to cover the group's
        samples, in one UPDATE (SQLite: executemany; PostgreSQL: one statement joined with
        the bounds as arrays) of only the series whose bounds this writer has not already
        stored: ``last_ts`` is set to the end of the series' five-minute window holding the
        newest sample (:func:`bound_end`), so a steady series costs one row of it per
        five minutes, and the series of a batch do not all cost it in the same batch.
        ``outside``: for a batch (index in ``samples``) whose rows were built before the
        transaction, those outside the stored bounds (:class:`Prepared`), looked at
        instead of all of its rows: with each series' window at its own offset, most
        batches of a steady agent hold a few such rows, not none. Fills ``seen`` with the
        bounds written, for :attr:`_seen` after commit."""
        bounds: dict[int, list[int]] = {}
        for i, rows in enumerate(samples):
            for sid, ts, _ in outside.get(i, rows):
                b = bounds.get(sid)
                if b is None:
                    bounds[sid] = [ts, ts]
                elif ts < b[0]:
                    b[0] = ts
                elif ts > b[1]:
                    b[1] = ts
        params = []
        for sid, (first, last) in bounds.items():
            known = self._seen.get(sid)
            if known is not None and known[0] <= first and last <= known[1]:
                continue
            last = bound_end(sid, last)
            if known is not None:
                first, last = min(first, known[0]), max(last, known[1])
            seen[sid] = (first, last)
            params.append((first, first, last, last, sid))
        if not params:
            return
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, self._update_seen_sql):
                if self._db.dialect == "postgresql":
                    cursor.execute(self._update_seen_sql, ([p[4] for p in params], [p[0] for p in params],
                                                           [p[2] for p in params]))
                else:
                    cursor.executemany(self._update_seen_sql, params)
        finally:
            cursor.close()

    def _known_id(self, key: SeriesKey, fresh_from: int) -> int | None:
        """The cached id of series ``key`` if a sample of it was stored since
        ``fresh_from`` (Unix ms; see :data:`SERIES_ID_TRUST_MS`), else None (look it up)."""
        sid = self._series_ids.get(key)
        if sid is None:
            return None
        seen = self._seen.get(sid)
        return sid if seen is not None and seen[1] >= fresh_from else None

    def _host_row(self, session: Session, batch: Batch, now: float) -> HostState:
        """The host row of ``batch`` (created when new): its id and held clock skew."""
        host = session.execute(select(Host).where(Host.name == batch.host)).scalar_one_or_none()
        if host is None:
            host = Host(name=batch.host, first_seen=now, labels=batch.labels_json)
            session.add(host)
            session.flush()
        return HostState(host.id, host.clock_skew_seconds, host.clock_skew_at)

    def _update_hosts(self, session: Session, states: Iterable[HostState], now: float) -> None:
        """One UPDATE (executemany) of every host of the group. Raises StaleHostCache when
        a host row is gone."""
        params = [(now, s.agent_version, s.interval, s.config_hash, s.labels_json, s.clock_skew_seconds,
                   s.clock_skew_at, s.id) for s in states]
        sql = self._update_hosts_sql
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, sql):
                cursor.executemany(sql, params)
                matched = cursor.rowcount
        finally:
            cursor.close()
        if matched is not None and 0 <= matched < len(params):
            raise StaleHostCache()

    def _claim_batch_ids(self, session: Session, batches: list[Batch], hosts: dict[str, HostState],
                         now: float) -> list[bool]:
        """Insert the batch ids of the group in one statement; -> for each batch, whether it
        is new (False: a replay, or the same id earlier in the group). A batch without an
        id (a probe's) is always new."""
        first: dict[tuple[int, str], int] = {}
        for i, batch in enumerate(batches):
            if batch.batch_id:
                first.setdefault((hosts[batch.host].id, batch.batch_id), i)
        if not first:
            return [True] * len(batches)
        # Written out rather than built with SQLAlchemy's insert(): a VALUES list of another
        # length each group was compiled anew, ~4 % of the writer's time.
        mark = "(%s, %s, %s, %s, %s)" if self._db.dialect == "postgresql" else "(?, ?, ?, ?, ?)"
        sql = (f"INSERT INTO ingest_batches (host_id, batch_id, received_at, samples, logs) "
               f"VALUES {', '.join([mark] * len(first))} ON CONFLICT DO NOTHING RETURNING host_id, batch_id")
        params: list[object] = []
        for (host_id, batch_id), i in first.items():
            params += (host_id, batch_id, now, batches[i].sample_count, len(batches[i].logs))
        rows = session.connection().exec_driver_sql(sql, tuple(params))
        inserted = {first[(h, b)] for h, b in rows}
        return [not batch.batch_id or i in inserted for i, batch in enumerate(batches)]

    def _prepare_rows(self, batches: list[Batch], now: float) -> dict[int, "Prepared"]:
        """Index in ``batches`` -> the rows of each batch whose host row and series ids
        are all cached, built as :meth:`_sample_rows` does at ``now`` (Unix s) without the
        database; the others are left to the transaction."""
        lo = int((now - min(self._config.sample_max_age, self._config.retention_raw_days * 86400)) * 1000)
        hi = int((now + self._config.sample_max_future) * 1000)
        fresh_from = int(self._clock() * 1000) - SERIES_ID_TRUST_MS
        series_id, seen_of = self._series_ids.get, self._seen.get
        prepared: dict[int, Prepared] = {}
        for i, batch in enumerate(batches):
            host = self._hosts.get(batch.host)
            if host is None or not batch.metrics:
                continue
            # :meth:`_known_id` and :meth:`_rows_of` in one loop, for the steady sender
            # whose samples are all in the window (a few calls less per sample, ~0.3 us
            # of the writer's ~5 us); anything else goes through _rows_of.
            host_id, plain, newest = host.id, True, -1
            sids: list[int | None] = []
            rows: list[tuple[int, int, float]] = []
            append = rows.append
            beyond: list[tuple[int, int, float]] = []  # rows outside the stored bounds
            for m in batch.metrics:
                sid = series_id((host_id, m.name, m.labels_json))
                if sid is None:
                    break  # not cached: the transaction looks it up
                seen = seen_of(sid)
                if seen is None or seen[1] < fresh_from:
                    break  # not trusted (see _known_id)
                sids.append(sid)
                plain = plain and not m.non_finite
                first, last = seen
                for ts, value in m.points:
                    if lo <= ts <= hi:
                        append((sid, ts, value))
                        if not first <= ts <= last:
                            beyond.append((sid, ts, value))
                        if ts > newest:
                            newest = ts
                    else:
                        plain = False
            else:
                rejected: Counter[str] = Counter()
                examples: dict[str, str] = {}
                if not plain:
                    rows = self._rows_of(batch, sids, lo, hi, rejected, examples)
                # newest stays -1 when the series came without points (times are >= 0).
                prepared[i] = (Prepared(host_id, rows, rejected, examples, beyond, newest if newest >= 0 else None)
                               if plain else Prepared(host_id, rows, rejected, examples))
        return prepared

    def _sample_rows(self, session: Session, host_id: int, batch: Batch, lo: int, hi: int,
                     new_ids: dict[SeriesKey, int], rejected: Counter, examples: dict
                     ) -> list[tuple[int, int, float]]:
        """Rows (series_id, ts, value) of ``batch`` to insert: samples of series over the
        cap, outside [lo, hi] (Unix ms) or non-finite are counted in ``rejected``."""
        fresh_from = int(self._clock() * 1000) - SERIES_ID_TRUST_MS
        known = self._known_id
        sids = [known((host_id, m.name, m.labels_json), fresh_from) for m in batch.metrics]  # a steady sender's path
        if None in sids:
            ids = self._resolve_series(session, host_id, batch, new_ids, rejected, examples, fresh_from, lo, hi)
            sids = [ids.get((host_id, m.name, m.labels_json)) for m in batch.metrics]
        return self._rows_of(batch, sids, lo, hi, rejected, examples)

    @staticmethod
    def _rows_of(batch: Batch, sids: list[int | None], lo: int, hi: int, rejected: Counter, examples: dict
                 ) -> list[tuple[int, int, float]]:
        """The rows of ``batch`` given each metric's series id (None: over the series cap,
        already counted, or every sample outside [lo, hi]); non-finite values and samples
        outside [lo, hi] are counted."""
        rows: list[tuple[int, int, float]] = []
        for m, sid in zip(batch.metrics, sids):
            if m.non_finite:
                rejected["non_finite"] += m.non_finite
                examples["non_finite"] = f"{m.name}{m.labels_json}"
            kept: list[tuple[int, int, float]] = []
            if sid is not None:
                kept = [(sid, ts, value) for ts, value in m.points if lo <= ts <= hi]
            elif not _all_outside(m.points, lo, hi):
                continue  # counted as series_limit by _resolve_series
            if len(kept) != len(m.points):
                for ts, _ in m.points:
                    if ts < lo or ts > hi:
                        reason = "too_old" if ts < lo else "too_new"
                        rejected[reason] += 1
                        examples[reason] = f"{m.name}{m.labels_json} @ {ts}"
            rows.extend(kept)
        return rows

    def _insert_samples_of(self, session: Session, samples: list[list[tuple[int, int, float]]]) -> list[int]:
        """Insert each batch's rows; -> rows stored per batch (a (series, ts) already stored
        is skipped and not counted). SQLite: one executemany per batch. PostgreSQL: one
        COPY of the group and one INSERT ... SELECT; only when that skipped some row, it is
        redone batch by batch to count them."""
        counts = [0] * len(samples)
        if not any(samples):
            return counts
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, self._insert_samples):
                if self._db.dialect == "postgresql":
                    counts = self._copy_samples(cursor, samples)
                else:
                    for i, rows in enumerate(samples):
                        if rows:
                            cursor.executemany(self._insert_samples, rows)
                            # rowcount over executemany may be -1 (unknown); then every row counts.
                            counts[i] = len(rows) if cursor.rowcount is None or cursor.rowcount < 0 \
                                else cursor.rowcount
        finally:
            cursor.close()
        return counts

    def _cover(self, session: Session, spec: TimePartitioned, width_ms: int, times: list[int]) -> None:
        """PostgreSQL: make the partitions of ``spec`` that rows stamped ``times`` (Unix ms)
        need (console/storage/partitions.py ``cover``): maintenance makes the current and
        next widths' only, so a late sample, or a log line when none came for a while,
        needs one it did not make. Widths already seen in a partition need no query."""
        known = self._partitions.get(spec.table, [])
        starts = {t // width_ms * width_ms for t in times}
        if all(any(p.lo <= b and b + width_ms <= p.hi for p in known) for b in starts):
            return
        cover(session, spec, width_ms, times)
        self._partitions[spec.table] = partitions(session, spec.table)

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
        host = self._host_row(session, batch, now)
        host.touch(batch, now)  # the host was heard from, as when a batch is stored
        self._update_hosts(session, [host], now)
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
    def _copy_samples(cursor, samples: list[list[tuple[int, int, float]]]) -> list[int]:  # noqa: ANN001
        """PostgreSQL: COPY into a per-connection temporary table, then INSERT ... SELECT ON
        CONFLICT DO NOTHING (COPY alone cannot skip duplicates). -> rows inserted per batch."""
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS samples_in (series_id integer, ts bigint, "
                       "value double precision, batch integer) ON COMMIT DELETE ROWS")
        with cursor.copy("COPY samples_in (series_id, ts, value, batch) FROM STDIN") as copy:
            for i, rows in enumerate(samples):
                for sid, ts, value in rows:
                    copy.write_row((sid, ts, value, i))
        total = sum(len(rows) for rows in samples)
        cursor.execute("SAVEPOINT samples_in")
        cursor.execute("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value "
                       "FROM samples_in ON CONFLICT DO NOTHING")
        if cursor.rowcount == total:
            cursor.execute("RELEASE SAVEPOINT samples_in")
            return [len(rows) for rows in samples]
        # Some (series, ts) was stored already, or twice in the group: count batch by batch.
        cursor.execute("ROLLBACK TO SAVEPOINT samples_in")
        counts = []
        for i in range(len(samples)):
            cursor.execute("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value "
                           "FROM samples_in WHERE batch = %s ON CONFLICT DO NOTHING", (i,))
            counts.append(max(cursor.rowcount, 0))
        return counts

    def _reopen_rollups(self, session: Session, oldest_ts: int, now: float) -> None:
        """A sample in or before the window a tier is rolling up moves that tier's watermark
        back to the sample's bucket and bumps its generation, so the rollup job recomputes
        the bucket (rollups are recomputed from their source, never added to, so this
        cannot double count). Samples of the still-open minutes change nothing."""
        open_from = int((now - self._config.rollup_delay) * 1000)
        b1 = oldest_ts // MINUTE_MS * MINUTE_MS
        if b1 >= open_from:
            return  # the usual case (fresh samples): no need to read the watermarks
        table = RollupWatermark.__table__
        marks = {t: (d, g) for t, d, g in session.execute(
            select(table.c.tier, table.c.done_until, table.c.generation))}
        if not marks:
            return
        reopen = {}
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
                # The bounds held for this id may be of a deleted series whose id was
                # reused (retention, a retired host): the next UPDATE starts from the row.
                self._seen.pop(sid, None)

    def _resolve_series(self, session: Session, host_id: int, batch: Batch,
                        new_ids: dict[SeriesKey, int], rejected: Counter, examples: dict, fresh_from: int,
                        lo: int, hi: int) -> dict[SeriesKey, int]:
        """The ids of ``batch``'s series, new ones created up to the host's cap (the rest
        counted as ``series_limit``). A series whose every sample lies outside [lo, hi]
        (Unix ms) is neither looked up nor created: its samples are refused for their time
        (:meth:`_rows_of`), and a row made for it would hold a place under the cap, a stale
        spool replaying old batches keeping new series out, until retention deleted it."""
        wanted: dict[SeriesKey, str] = {}
        for m in batch.metrics:
            if _all_outside(m.points, lo, hi):
                continue
            wanted.setdefault((host_id, m.name, m.labels_json), m.type)
        ids: dict[SeriesKey, int] = {}
        missing: list[SeriesKey] = []
        known, created = self._known_id, new_ids.get
        for key in wanted:  # one lookup per series: the hot path of a steady sender
            sid = known(key, fresh_from)
            if sid is None:
                sid = created(key)  # made by an earlier batch of the same group
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
        # Only active series count: a sample within series_active_hours, or none yet.
        active_from = int((self._clock() - self._config.series_active_hours * 3600) * 1000)
        existing = session.execute(select(func.count()).select_from(table).where(
            table.c.host_id == host_id,
            or_(table.c.last_ts >= active_from, table.c.last_ts.is_(None)))).scalar_one()
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
