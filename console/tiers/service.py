"""Rollups and retention of metrics tiers (docs/metrics.md).

Tiers: ``raw`` (table ``samples``), ``1m`` (``rollup_1m``, from raw) and ``1h``
(``rollup_1h``, from 1m). A rollup row holds min, max, sum and count of the samples in its
bucket and, for counters, the increase: the sum over consecutive sample pairs whose later
sample is in the bucket of ``v1 - v0``, or of ``v1`` where ``v1 < v0`` (a counter reset,
the Prometheus rule). The pair that straddles the bucket start counts, so increases of
adjacent buckets add up to the increase over both; the previous sample is looked for up to
5 minutes back (Prometheus' lookback delta).

Durability: each tier has a watermark ``done_until`` (Unix ms, exclusive) moved in the same
transaction as the last rows of a window. Rows are *recomputed* from their source and
upserted, never added to, so redoing a window after a crash or restart cannot double count,
and a window is never skipped. Work goes in short transactions (one window of buckets by
one chunk of series) on the database writer thread, so ingest batches queue behind at most
one of them. A late sample (older than a watermark) moves that watermark back to its
bucket, so its bucket is recomputed.

Cold blocks: raw samples older than ``sample_hot_window`` and already rolled up to 1m are
packed into one ``sample_blocks`` row per series and 2-hour block (console/storage/blocks.py),
by the hour (the second hour of a block is merged into the block its first made). The
``blocks`` watermark says up to where; one transaction deletes a chunk of series' due
rows (``DELETE ... RETURNING``, so a sample ingested meanwhile is either packed or left
hot, never lost) and writes their blocks, merged into any block already there (a sample
that arrived after its block was packed), so a run killed at any point is redone or
resumed with nothing lost or doubled. A 1m bucket recomputed over packed samples (a late
sample reopened it) reads blocks and hot rows together.

Cold 1m blocks: 1m rows the 1h tier has rolled up (before the ``1h`` watermark) and older
than ``sample_hot_window`` are packed into one ``rollup_1m_blocks`` row per series and UTC
day (console/storage/rollup_blocks.py), the same way: the ``blocks1m`` watermark says up to
where, one transaction per chunk of series deletes their due rows (``DELETE ...
RETURNING``) and merges them into their blocks.
A 1m bucket recomputed over a packed day (a late sample) is written as a row again, which
readers take over the block's value (rollup_blocks.load) and the next packing merges into
the block. The 1h tier and every reader of the 1m tier read blocks and rows together.

On PostgreSQL a time partition of ``samples`` or ``rollup_1m`` whose rows have all been
packed (and whose heap VACUUM gave back) is truncated, so its primary key's pages go back
to the file system too instead of staying until retention drops the partition.

Cross-series rollups (setting ``rollup_1m_host``): the 1m pass also folds each series' new rows into one
``rollup_1m_host`` row per metric, host and minute (sum, least and greatest of the series'
values for avg, min, max and increase), written in the transaction that moves the 1m
watermark, replacing that window's rows; so a killed run redoes them with the window, and
a late sample's recomputed window rewrites them. The ``1m_host`` watermark, set on the
first such window, says from which bucket on they are complete.

Retention deletes, per tier, everything older than its configured days (on PostgreSQL
first by dropping the time partitions wholly before the cutoff, console/storage/partitions.py), and never raw
samples the 1m tier has not rolled up yet, nor 1m rows the 1h tier still needs; a block
goes once its last sample is past raw retention, and the block straddling the cutoff loses
the samples before it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from console.config import ConsoleConfig
from console.query.series_math import bucket_stats
from console.query.service import sample_rows
from console.storage import blocks, rollup_blocks
from console.storage.database import Database
from console.storage.hot_samples import BUCKET_MS, bucket_of, hot_clause, hot_params
from console.storage.models import (Base, Rollup1h, Rollup1m, Rollup1mBlock, RollupHost1m, RollupWatermark,
                                    SampleBlock, Series)
from console.storage.partitions import BLOCK_1M_MS, METRIC_TABLES, drop_partitions_before, mirror
from console.storage.partitions import drop_emptied, truncate_emptied, width_ms
from console.storage.partitions import TABLES as PARTITIONED

log = logging.getLogger("fleetdeck.tiers")

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LOOKBACK_MS = 300_000  # how far back the sample before a bucket is looked for (Prometheus' 5 min)
BLOCK_MS = 2 * HOUR_MS  # width of a cold block: ~720 samples of a 10 s series, Prometheus' block width
# Raw samples are packed by the hour: a block's second hour is merged into the block its first
# hour made, so the hot rows span 1-2 hours past the hot window instead of 2-4 (their ~90 B a
# row on PostgreSQL), for one more encode of each block.
PACK_GRAIN_MS = HOUR_MS
PACK_CHUNK = 50  # series per packing transaction: ~36k samples at 10 s, as much as a 1m rollup step reads
# series per 1m packing transaction: each decodes, merges and encodes one day's block (~0.3 ms)
PACK_1M_CHUNK = 100


@dataclass(frozen=True)
class Tier:
    name: str
    width_ms: int
    table: str
    source: str
    window_buckets: int  # buckets per transaction
    series_chunk: int  # series per transaction


TIERS = (Tier("1m", MINUTE_MS, "rollup_1m", "samples", 10, 500),
         Tier("1h", HOUR_MS, "rollup_1h", "rollup_1m", 1, 250))
TIER_BY_NAME = {t.name: t for t in TIERS}

_FROM_RAW_SQL = """
SELECT x.series_id, x.bucket, MIN(x.value), MAX(x.value), SUM(x.value), COUNT(*),
       SUM(CASE WHEN x.prev IS NULL THEN 0 WHEN x.value >= x.prev THEN x.value - x.prev ELSE x.value END)
FROM (SELECT series_id, ts, value, (ts / 60000) * 60000 AS bucket,
             LAG(value) OVER (PARTITION BY series_id ORDER BY ts) AS prev
      FROM samples WHERE {chunk} AND ts >= :lookback AND ts < :hi) x
WHERE x.ts >= :lo
GROUP BY x.series_id, x.bucket
"""
_PACK_SQL = "DELETE FROM samples WHERE {chunk} AND ts < :hi RETURNING series_id, ts, value"
# A chunk of series is the next ids in order, all of them (``_rollup_tx``, ``_pack_windows``).
# On SQLite the hot rows are clustered by minute, then series (console/storage/hot_samples.py):
# per minute present, one seek to the chunk's first id and its rows in key order (the id
# list only filters: "+" keeps it from being used as 500 seeks); on PostgreSQL the id list.
_CHUNK = "series_id IN :ids"
_CHUNK_SQLITE = hot_clause("sqlite") + "series_id BETWEEN :first AND :last AND +series_id IN :ids"


def _raw_statements(dialect: str) -> tuple[TextClause, TextClause]:
    """The 1m rollup's read of hot rows and packing's delete of them, for ``dialect``."""
    chunk = _CHUNK_SQLITE if dialect == "sqlite" else _CHUNK
    return (text(_FROM_RAW_SQL.format(chunk=chunk)).bindparams(bindparam("ids", expanding=True)),
            text(_PACK_SQL.format(chunk=chunk)).bindparams(bindparam("ids", expanding=True)))


def _chunk_params(ids: list[int], lo_ms: int | None, hi_ms: int) -> dict:
    """Parameters of a chunk's statement on samples with ``lo_ms <= ts <= hi_ms``."""
    return {"ids": ids, "first": min(ids), "last": max(ids), **hot_params(lo_ms, hi_ms)}


_PACKED = text("SELECT series_id, start_ts, data FROM sample_blocks WHERE series_id IN :ids "
               "AND start_ts >= :lo AND start_ts < :hi").bindparams(bindparam("ids", expanding=True))
_OVERLAPPING = text("SELECT DISTINCT series_id FROM sample_blocks WHERE series_id IN :ids "
                    "AND start_ts < :hi AND end_ts >= :lo").bindparams(bindparam("ids", expanding=True))

_PACK_1M = text("DELETE FROM rollup_1m WHERE series_id IN :ids AND ts < :hi "
                "RETURNING series_id, ts, min, max, sum, count, increase").bindparams(bindparam("ids", expanding=True))
_PACKED_1M = text("SELECT series_id, start_ts, data FROM rollup_1m_blocks WHERE series_id IN :ids "
                  "AND start_ts >= :lo AND start_ts < :hi").bindparams(bindparam("ids", expanding=True))

_FROM_1M = text("""
SELECT series_id, (ts / 3600000) * 3600000 AS bucket, MIN(min), MAX(max), SUM(sum), SUM(count), SUM(increase)
FROM rollup_1m WHERE series_id IN :ids AND ts >= :lo AND ts < :hi
GROUP BY series_id, (ts / 3600000) * 3600000
""").bindparams(bindparam("ids", expanding=True))


@dataclass
class _Cursor:
    """Progress through one window across transactions (in memory; a restart redoes the window)."""

    lo: int
    generation: int
    after_id: int = 0
    rows: int = 0
    # 1m: per (metric, host_id, bucket) the cross-series aggregates of the chunks done so far.
    hosts: dict[tuple[str, int, int], list] = field(default_factory=dict)


# rollup_1m_host columns after (name, ts, host_id), in the order of _add_to_host's row.
HOST_COLUMNS = ("series", "avg_sum", "avg_min", "avg_max", "min_sum", "min_min", "min_max",
                "max_sum", "max_min", "max_max", "counters", "inc_sum", "inc_min", "inc_max", "samples")


def _add_to_host(row: list | None, mn: float, mx: float, sm: float, n: int, inc: float | None) -> list:
    """Fold one series' 1m bucket into its (metric, host, bucket) row of HOST_COLUMNS:
    the series' value for avg (``sum / count``, the query's expression), min, max and
    increase, each summed, least and greatest; and the samples (``n``) summed."""
    avg = sm / n
    if row is None:
        row = [0, 0.0, avg, avg, 0.0, mn, mn, 0.0, mx, mx, 0, None, None, None, 0]
    row[0] += 1
    row[14] += n
    for i, v in ((1, avg), (4, mn), (7, mx)):
        row[i] += v
        row[i + 1] = min(row[i + 1], v)
        row[i + 2] = max(row[i + 2], v)
    if inc is not None:
        row[10] += 1
        row[11] = inc if row[11] is None else row[11] + inc
        row[12] = inc if row[12] is None else min(row[12], inc)
        row[13] = inc if row[13] is None else max(row[13], inc)
    return row


class RollupService:
    """Runs the rollup and retention jobs. ``rollup_step``/``retention_step`` are blocking,
    one transaction each, and must run on the database writer thread; ``start()`` schedules
    them on the running asyncio loop every ``rollup_interval`` seconds."""

    def __init__(self, db: Database, config: ConsoleConfig, clock: Callable[[], float] = time.time,
                 leads: Callable[[], bool] = lambda: True) -> None:
        self._leads = leads  # only the leader of several consoles on one database runs the job
        self._db = db
        self._config = config
        self._clock = clock
        self._cursors: dict[str, _Cursor] = {}
        self._retention_after: dict[str, int] = {}
        self._task: asyncio.Task | None = None
        self._from_raw, self._pack_rows = _raw_statements(db.dialect)
        self.failures = 0  # runs that raised (logged); exported for the ops page

    # -- scheduling ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the periodic job on the running loop (no-op when ``rollup_interval`` is 0)."""
        if self._config.rollup_interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="rollups")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass  # the cancellation we asked for
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                if self._leads():
                    await self.run_once()
            except Exception:  # the job must outlive one bad run; it is retried next interval
                self.failures += 1
                log.exception("rollup/retention run failed")
            await asyncio.sleep(self._config.rollup_interval)

    async def run_once(self) -> None:
        """Roll up every tier as far as due, pack cold blocks, then apply retention; each
        step is one writer job."""
        for tier in TIERS:
            while await self._db.on_writer(self.rollup_step, tier.name):
                await asyncio.sleep(0)
        while await self._db.on_writer(self.pack_step):
            await asyncio.sleep(0)
        while await self._db.on_writer(self.pack_1m_step):
            await asyncio.sleep(0)
        await self._db.on_writer(self.drop_partitions)
        await self._db.on_writer(self.free_packed_partitions)
        while await self._db.on_writer(self.retention_step):
            await asyncio.sleep(0)

    def run_all(self) -> None:
        """Blocking ``run_once`` for tests and the CLI; call it where no other writer runs."""
        for tier in TIERS:
            while self.rollup_step(tier.name):
                pass
        while self.pack_step():
            pass
        while self.pack_1m_step():
            pass
        self.drop_partitions()
        self.free_packed_partitions()
        while self.retention_step():
            pass

    # -- rollups ---------------------------------------------------------------------------
    def rollup_step(self, tier_name: str) -> bool:
        """One transaction of rollup work for ``tier_name`` ("1m" | "1h"). Returns True
        while more work is due now."""
        if tier_name == "1m":
            self.make_partitions("rollup_1m")
        return self._db.run(self._rollup_tx, TIER_BY_NAME[tier_name])

    def watermarks(self, session: Session) -> dict[str, int]:
        """``{tier: done_until}`` in Unix ms, for tiers that have started."""
        return {t: d for t, d in session.execute(select(RollupWatermark.tier, RollupWatermark.done_until))}

    def _due_until(self, session: Session, tier: Tier) -> int | None:
        if tier.name == "1m":
            now_ms = int(self._clock() * 1000)
            return (now_ms - int(self._config.rollup_delay * 1000)) // tier.width_ms * tier.width_ms
        source = session.get(RollupWatermark, "1m")
        return None if source is None else source.done_until // tier.width_ms * tier.width_ms

    def _first_ts(self, session: Session, table: str, at_least: int) -> int | None:
        """The first time (Unix ms) stored in ``table`` at or after ``at_least``; for hot
        samples on SQLite, a lower bound in the same minute (the start of the first minute
        holding one, or ``at_least``): callers round it down to a minute or more."""
        if table == "samples" and self._db.dialect == "sqlite":
            # Clustered by minute (console/storage/hot_samples.py): one seek for the first
            # minute stored; a minute that ``at_least`` cuts is looked into.
            cut = bucket_of(at_least)
            if at_least != cut * BUCKET_MS and session.execute(text(
                    "SELECT 1 FROM samples WHERE bucket = :b AND ts >= :t LIMIT 1"), {"b": cut, "t": at_least}).first():
                return at_least
            first = session.execute(text("SELECT MIN(bucket) FROM samples WHERE bucket >= :b"),
                                    {"b": cut if at_least == cut * BUCKET_MS else cut + 1}).scalar()
            return None if first is None else max(at_least, first * BUCKET_MS)
        # One index seek per series: the tables are clustered on (series_id, ts), not ts.
        return session.execute(text(
            f"SELECT MIN((SELECT MIN(x.ts) FROM {table} x WHERE x.series_id = s.id AND x.ts >= :t)) "
            "FROM series s"), {"t": at_least}).scalar()

    def _rollup_tx(self, session: Session, tier: Tier) -> bool:
        if tier.name == "1m" and not self._config.rollup_1m_host:
            # Cross-series rollups off: the rows left are no longer complete (retention
            # deletes them in time), and turning them on again starts a new complete stretch.
            stale = session.get(RollupWatermark, "1m_host")
            if stale is not None:
                session.delete(stale)
        upto = self._due_until(session, tier)
        if upto is None:
            return False
        mark = session.get(RollupWatermark, tier.name)
        if mark is None:
            first = self._first_ts(session, tier.source, 0)
            if first is None:
                return False
            mark = RollupWatermark(tier=tier.name, done_until=first // tier.width_ms * tier.width_ms,
                                   generation=0, updated_at=self._clock())
            session.add(mark)
            session.flush()
        lo = mark.done_until
        if lo >= upto:
            return False
        hi = min(upto, lo + tier.width_ms * tier.window_buckets)
        cursor = self._cursors.get(tier.name)
        if cursor is None or cursor.lo != lo or cursor.generation != mark.generation:
            cursor = self._cursors[tier.name] = _Cursor(lo, mark.generation)
        chunk = session.execute(select(Series.id, Series.type, Series.name, Series.host_id)
                                .where(Series.id > cursor.after_id).order_by(Series.id).limit(tier.series_chunk)).all()
        if chunk:
            values = self._roll(session, tier, {sid: kind for sid, kind, _, _ in chunk}, lo, hi)
            cursor.rows += len(values)
            if tier.name == "1m" and self._config.rollup_1m_host:
                self._fold_hosts(cursor, {sid: (name, host) for sid, _, name, host in chunk}, values)
            cursor.after_id = chunk[-1][0]
        if len(chunk) == tier.series_chunk:
            return True  # more series in this window
        if tier.name == "1m":
            self._write_hosts(session, cursor, lo, hi)
        if cursor.rows == 0:
            # Nothing in this window: jump to the bucket of the next source row, if due.
            following = self._first_ts(session, tier.source, hi)
            hi = upto if following is None else max(hi, min(upto, following // tier.width_ms * tier.width_ms))
        mark.done_until = hi
        mark.updated_at = self._clock()
        del self._cursors[tier.name]
        return hi < upto

    @staticmethod
    def _fold_hosts(cursor: _Cursor, owners: dict[int, tuple[str, int]], values: list[dict]) -> None:
        for v in values:
            name, host_id = owners[v["series_id"]]
            key = (name, host_id, v["ts"])
            cursor.hosts[key] = _add_to_host(cursor.hosts.get(key), v["min"], v["max"], v["sum"], v["count"],
                                             v["increase"])

    def _write_hosts(self, session: Session, cursor: _Cursor, lo: int, hi: int) -> None:
        """Replace the ``rollup_1m_host`` rows of ``[lo, hi)`` with those folded from every
        series' 1m rows of the window, in the transaction that moves the 1m watermark (so a
        crash redoes the window and these rows with it)."""
        host_mark = session.get(RollupWatermark, "1m_host")
        if not self._config.rollup_1m_host:
            return
        table = RollupHost1m.__table__
        session.execute(table.delete().where(table.c.ts >= lo, table.c.ts < hi))
        if cursor.hosts:
            session.execute(table.insert(), [{"name": name, "host_id": host_id, "ts": ts, **dict(zip(HOST_COLUMNS, row))}
                                             for (name, host_id, ts), row in cursor.hosts.items()])
        if host_mark is None:
            # Complete from this window on; rolled up earlier, buckets are read per series.
            session.add(RollupWatermark(tier="1m_host", done_until=lo, generation=0, updated_at=self._clock()))

    def _roll(self, session: Session, tier: Tier, types: dict[int, str], lo: int, hi: int) -> list[dict]:
        ids = list(types)
        if tier.name == "1m":
            found = session.execute(self._from_raw, {"lookback": lo - LOOKBACK_MS, "lo": lo, "hi": hi,
                                                     **_chunk_params(ids, lo - LOOKBACK_MS, hi - 1)}).all()
            rows = self._with_blocks(session, ids, list(found), lo, hi)
        else:
            rows = self._from_1m(session, ids, lo, hi)
        values = [{"series_id": sid, "ts": bucket, "min": mn, "max": mx, "sum": sm, "count": n,
                   "increase": float(inc) if types.get(sid) == "counter" and inc is not None else None}
                  for sid, bucket, mn, mx, sm, n, inc in rows]
        if values:
            table = (Rollup1m if tier.name == "1m" else Rollup1h).__table__
            insert = (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)
            session.execute(insert.on_conflict_do_update(
                index_elements=[table.c.series_id, table.c.ts],
                set_={c: insert.excluded[c] for c in ("min", "max", "sum", "count", "increase")}), values)
        return values

    @staticmethod
    def _from_1m(session: Session, ids: list[int], lo: int, hi: int) -> list:
        """1h rollups of ``[lo, hi)`` from the 1m tier: in SQL from rows, and for series
        with packed days in the window from their blocks and rows together (rows winning)."""
        rows: list = list(session.execute(_FROM_1M, {"ids": ids, "lo": lo, "hi": hi}).all())
        cold = rollup_blocks.read_blocks(session, ids, lo, hi)
        if not cold:
            return rows
        packed = {sid for sid, *_ in cold}
        out = [r for r in rows if r[0] not in packed]
        for sid, found in rollup_blocks.load(session, sorted(packed), lo, hi, cold).items():
            out.extend((sid, *row) for row in rollup_blocks.bucket_rows(found, HOUR_MS))
        return out

    def _with_blocks(self, session: Session, ids: list[int], rows: list, lo: int, hi: int) -> list:
        """``rows`` (1m rollups of ``[lo, hi)`` from hot rows) with those of series that have
        packed samples in the window recomputed from blocks and hot rows together, the same
        way as ``_FROM_RAW_SQL``: the previous sample within the lookback gives the first increase."""
        packed = set(session.execute(_OVERLAPPING, {"ids": ids, "lo": lo - LOOKBACK_MS, "hi": hi}).scalars())
        if not packed:
            return rows
        out = [r for r in rows if r[0] not in packed]
        points, _ = sample_rows(session, sorted(packed), lo - LOOKBACK_MS, hi - 1, 2**62)
        for sid, series in points.items():
            before = [v for ts, v in series if ts < lo]
            after = [(ts, v) for ts, v in series if ts >= lo]
            out.extend((sid, *row) for row in bucket_stats(after, MINUTE_MS, before[-1] if before else None))
        return out

    # -- cold blocks -----------------------------------------------------------------------
    def pack_step(self) -> bool:
        """One transaction of packing: one chunk of series' raw samples before the current
        block window's end into blocks. Returns True while more packing is due now."""
        self.make_partitions("sample_blocks")
        return self._db.run(self._pack_tx)

    def _pack_until(self, session: Session) -> int | None:
        """Raw samples before this Unix ms (a whole hour) are due: older than the hot window
        and rolled up to 1m (so rollups read hot rows only, save for late samples). The
        first hour of a block makes it, the second is merged into it."""
        one_m = session.get(RollupWatermark, "1m")
        if one_m is None:
            return None
        now_ms = int(self._clock() * 1000)
        until = min(now_ms - int(self._config.sample_hot_window * 1000), one_m.done_until - LOOKBACK_MS)
        return until // PACK_GRAIN_MS * PACK_GRAIN_MS

    def _pack_tx(self, session: Session) -> bool:
        return self._pack_windows(session, "blocks", "samples", self._pack_until(session), PACK_GRAIN_MS, BLOCK_MS,
                                  PACK_CHUNK, self._pack, lambda s, mark: True)

    def _pack_windows(self, session: Session, name: str, source: str, upto: int | None, grain_ms: int,
                      block_ms: int, chunk_size: int, pack: Callable[[Session, list[int], int], int],
                      look_back: Callable[[Session, RollupWatermark], bool]) -> bool:
        """One transaction of packing ``source`` rows before ``upto`` (Unix ms, None: nothing
        due) into blocks of ``block_ms``, one chunk of ``chunk_size`` series by ``pack``,
        under the watermark ``name`` (moved in steps of ``grain_ms``, at most to the end of
        the current block); once caught up, rows before the mark are looked for when
        ``look_back`` says some may have come. Returns True while more packing is due now."""
        if upto is None:
            return False
        mark = session.get(RollupWatermark, name)
        if mark is None:
            first = self._first_ts(session, source, 0)
            if first is None:
                return False
            mark = RollupWatermark(tier=name, done_until=first // grain_ms * grain_ms, generation=0,
                                   updated_at=self._clock())
            session.add(mark)
            session.flush()
        lo = mark.done_until
        if lo >= upto:
            # Caught up. Rows that arrived late for windows already packed (an agent's spool
            # after an outage; 1m buckets recomputed for it) move the mark back to them, once.
            if not look_back(session, mark):
                return False
            first = self._first_ts(session, source, 0)
            if first is None or first // grain_ms * grain_ms >= lo:
                return False
            mark.done_until = first // grain_ms * grain_ms
            return True
        hi = min(upto, (lo // block_ms + 1) * block_ms)
        cursor = self._cursors.get(name)
        if cursor is None or cursor.lo != lo:
            cursor = self._cursors[name] = _Cursor(lo, mark.generation)
        chunk = list(session.execute(select(Series.id).where(Series.id > cursor.after_id)
                                     .order_by(Series.id).limit(chunk_size)).scalars())
        if chunk:
            cursor.rows += pack(session, chunk, hi)
            cursor.after_id = chunk[-1]
        if len(chunk) == chunk_size:
            return True
        if cursor.rows == 0:
            following = self._first_ts(session, source, hi)
            hi = upto if following is None else max(hi, min(upto, following // grain_ms * grain_ms))
        mark.done_until = hi
        mark.updated_at = self._clock()
        del self._cursors[name]
        return hi < upto

    def _pack(self, session: Session, ids: list[int], hi: int) -> int:
        """Move the raw samples of ``ids`` before ``hi`` into their blocks; returns the
        samples moved. A sample already in a block keeps the block's value."""
        taken = session.execute(self._pack_rows, {"hi": hi, **_chunk_params(ids, None, hi - 1)}).all()
        if not taken:
            return 0
        windows: dict[tuple[int, int], dict[int, float]] = {}
        for sid, ts, value in taken:
            windows.setdefault((sid, ts // BLOCK_MS * BLOCK_MS), {})[ts] = value
        lowest = min(start for _, start in windows)
        for sid, start, data in session.execute(_PACKED, {"ids": ids, "lo": lowest, "hi": hi}):
            if (sid, start) in windows:
                windows[sid, start].update(blocks.decode(bytes(data)))
        values = []
        for (sid, start), samples in windows.items():
            ts = sorted(samples)
            values.append({"series_id": sid, "start_ts": start, "end_ts": ts[-1], "count": len(ts),
                           "data": blocks.encode(ts, [samples[t] for t in ts])})
        table = SampleBlock.__table__
        insert = (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)
        session.execute(insert.on_conflict_do_update(
            index_elements=[table.c.series_id, table.c.start_ts],
            set_={c: insert.excluded[c] for c in ("end_ts", "count", "data")}), values)
        return len(taken)

    # -- cold 1m blocks --------------------------------------------------------------------
    def pack_1m_step(self) -> bool:
        """One transaction of 1m packing: one chunk of series' 1m rows before the 1h
        watermark (and the end of the current day) into their day's block. Returns True
        while more packing is due now."""
        self.make_partitions("rollup_1m_blocks")
        return self._db.run(self._pack_1m_tx)

    def _pack_1m_tx(self, session: Session) -> bool:
        return self._pack_windows(session, "blocks1m", "rollup_1m", self._pack_1m_until(session), HOUR_MS,
                                  BLOCK_1M_MS, PACK_1M_CHUNK, self._pack_1m, self._recomputed_1m)

    def _pack_1m_until(self, session: Session) -> int | None:
        """1m rows before this Unix ms are due: read by the 1h tier (before its watermark)
        and older than the hot window, so reads of the last hours (a dashboard's default)
        find rows and decode no block."""
        one_h = session.get(RollupWatermark, "1h")
        if one_h is None:
            return None
        hot_from = int(self._clock() * 1000) - int(self._config.sample_hot_window * 1000)
        return min(one_h.done_until, hot_from // HOUR_MS * HOUR_MS)

    @staticmethod
    def _recomputed_1m(session: Session, mark: RollupWatermark) -> bool:
        """Whether 1m buckets before the ``blocks1m`` mark may have been written as rows
        again since it last looked: a late sample bumped the 1m tier's generation, and the
        1m tier has rolled up past the mark since (so those rows are written). The mark's
        own ``generation`` keeps the 1m generation last looked at, so the per-series scan
        for such rows runs once per reopening, not at every run of the job."""
        one_m = session.get(RollupWatermark, "1m")
        if one_m is None or one_m.generation == mark.generation or one_m.done_until < mark.done_until:
            return False
        mark.generation = one_m.generation
        return True

    def _pack_1m(self, session: Session, ids: list[int], hi: int) -> int:
        """Move the 1m rows of ``ids`` before ``hi`` into their days' blocks; returns the
        rows moved. A row replaces the block's value of its bucket (it was recomputed)."""
        taken = session.execute(_PACK_1M, {"ids": ids, "hi": hi}).all()
        if not taken:
            return 0
        days: dict[tuple[int, int], list[tuple]] = {}
        for sid, *row in taken:
            days.setdefault((sid, row[0] // BLOCK_1M_MS * BLOCK_1M_MS), []).append(tuple(row))
        lowest = min(start for _, start in days)
        stored = {(sid, start): bytes(data) for sid, start, data in session.execute(
            _PACKED_1M, {"ids": ids, "lo": lowest, "hi": hi}) if (sid, start) in days}
        values = []
        for (sid, start), rows in days.items():
            fresh = rollup_blocks.from_tuples(sorted(rows, key=lambda r: r[0]))
            old = stored.get((sid, start))
            merged = fresh if old is None else rollup_blocks.merge(rollup_blocks.decode(old), fresh)
            values.append({"series_id": sid, "start_ts": start, "end_ts": int(merged.ts[-1]), "count": len(merged),
                           "data": rollup_blocks.encode(merged)})
        table = Rollup1mBlock.__table__
        insert = (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)
        session.execute(insert.on_conflict_do_update(
            index_elements=[table.c.series_id, table.c.start_ts],
            set_={c: insert.excluded[c] for c in ("end_ts", "count", "data")}), values)
        return len(taken)

    # -- retention -------------------------------------------------------------------------
    def cutoffs(self, session: Session) -> dict[str, int | None]:
        """Per tier, the Unix ms before which rows are deleted now (None: nothing yet).
        Raw waits for the 1m tier, 1m for the 1h tier."""
        now_ms = int(self._clock() * 1000)
        marks = self.watermarks(session)
        c = self._config
        raw = now_ms - int(c.retention_raw_days * DAY_MS)
        one_m = now_ms - int(c.retention_1m_days * DAY_MS)
        samples = min(raw, marks["1m"] - LOOKBACK_MS) if "1m" in marks else None
        minutes = min(one_m, marks["1h"]) if "1h" in marks else None
        return {"samples": samples, "sample_blocks": samples, "rollup_1m": minutes, "rollup_1m_blocks": minutes,
                "rollup_1h": now_ms - int(c.retention_1h_days * DAY_MS)}

    def make_partitions(self, target: str) -> list[str]:
        """PostgreSQL: make the partitions of ``target`` (``rollup_1m``, ``sample_blocks`` or
        ``rollup_1m_blocks``) that the step about to write it may need: one for each range
        the table it is made from (``samples``, ``samples``, ``rollup_1m``) has one for
        (console/storage/partitions.py ``mirror``), so only for days with data; returns
        their names. A transaction of its own before the step's, on the writer thread; a
        no-op on SQLite. A lock not granted within the lock timeout leaves them to the next
        step (meanwhile the rows go to the default partition, which maintenance empties)."""
        if self._db.dialect != "postgresql":
            return []
        try:
            made = self._db.run(mirror, width_ms(self._config, PARTITIONED[target]), target)
        except sa_exc.OperationalError as exc:
            log.warning("making partitions of %s for the rollup job waits for the next step: %s", target,
                        str(exc.orig or exc).splitlines()[0][:200])
            return []
        if made:
            log.info("created partitions of %s for the rollup job: %s", target, ", ".join(made))
        return made

    def drop_partitions(self) -> list[str]:
        """PostgreSQL: detach and drop the partitions of ``samples``, ``sample_blocks``,
        ``rollup_1m`` and ``rollup_1m_blocks`` wholly before their retention cutoff, one transaction each (the rows
        of the partition straddling a cutoff are left to :meth:`retention_step`); returns
        their names. Blocking, on the writer thread; a no-op on SQLite."""
        if self._db.dialect != "postgresql":
            return []
        cutoffs = self._db.run(self.cutoffs)
        return [d.partition.name for spec in METRIC_TABLES
                for d in drop_partitions_before(self._db, spec, cutoffs[spec.table])]

    def free_packed_partitions(self) -> list[str]:
        """PostgreSQL: drop the partitions of ``samples`` before the current one whose rows
        have all been packed into blocks (VACUUM gave their heap back), then truncate those of
        ``samples`` and ``rollup_1m`` emptied so but still there (a busy table, the current
        partition: their primary key's pages would stay until retention drops them);
        returns their names. Blocking, on the writer thread; a no-op on SQLite."""
        spec = PARTITIONED["samples"]
        width = width_ms(self._config, spec)
        dropped = drop_emptied(self._db, spec, int(self._clock() * 1000) // width * width)
        return dropped + [name for table in ("samples", "rollup_1m")
                          for name in truncate_emptied(self._db, PARTITIONED[table])]

    def retention_step(self) -> bool:
        """Delete due rows of one chunk of series in one table, in one transaction.
        Returns True while the current pass over tables and series is unfinished."""
        return self._db.run(self._retention_tx)

    def _expire_blocks(self, session: Session, ids: list[int], cutoff: int) -> None:
        """Delete the blocks of ``ids`` wholly before ``cutoff`` (Unix ms) and cut the samples
        before it out of the one block that straddles it, so raw retention is to the sample."""
        table = SampleBlock.__table__
        session.execute(table.delete().where(table.c.series_id.in_(ids), table.c.end_ts < cutoff))
        straddling = session.execute(select(table.c.series_id, table.c.start_ts, table.c.data).where(
            table.c.series_id.in_(ids), table.c.start_ts < cutoff)).all()
        for sid, start, data in straddling:
            t, v = blocks.decode_arrays(bytes(data))
            keep = t >= cutoff
            if not keep.all():
                session.execute(table.update().where(table.c.series_id == sid, table.c.start_ts == start).values(
                    count=int(keep.sum()), data=blocks.encode(t[keep], v[keep])))

    @staticmethod
    def _expire_1m_blocks(session: Session, ids: list[int], cutoff: int) -> None:
        """As :meth:`_expire_blocks` for 1m blocks: those wholly before ``cutoff`` go, the
        one straddling it loses the buckets before it, so 1m retention is to the minute."""
        table = Rollup1mBlock.__table__
        session.execute(table.delete().where(table.c.series_id.in_(ids), table.c.end_ts < cutoff))
        straddling = session.execute(select(table.c.series_id, table.c.start_ts, table.c.data).where(
            table.c.series_id.in_(ids), table.c.start_ts < cutoff)).all()
        for sid, start, data in straddling:
            rows = rollup_blocks.decode(bytes(data))
            keep = rows.ts >= cutoff
            if not keep.all():
                session.execute(table.update().where(table.c.series_id == sid, table.c.start_ts == start).values(
                    count=int(keep.sum()), data=rollup_blocks.encode(rows.take(keep))))

    def _retention_tx(self, session: Session) -> bool:
        cutoffs = self.cutoffs(session)
        tables = ("samples", "sample_blocks", "rollup_1m", "rollup_1m_blocks", "rollup_1h")
        for table in tables:
            if table not in self._retention_after:
                continue
            break
        else:
            self._retention_after = {t: 0 for t in tables}
            table = tables[0]
        after = self._retention_after[table]
        ids = list(session.execute(select(Series.id).where(Series.id > after).order_by(Series.id).limit(500))
                   .scalars())
        cutoff = cutoffs[table]
        if ids and cutoff is not None:
            if table == "sample_blocks":
                self._expire_blocks(session, ids, cutoff)
            elif table == "rollup_1m_blocks":
                self._expire_1m_blocks(session, ids, cutoff)
            elif table == "samples":
                session.execute(text(f"DELETE FROM samples WHERE {hot_clause(self._db.dialect)}series_id IN :ids "
                                     "AND ts < :cutoff").bindparams(bindparam("ids", expanding=True)),
                                {"ids": ids, "cutoff": cutoff, **hot_params(None, cutoff - 1)})
            else:
                rows = Base.metadata.tables[table]
                session.execute(delete(rows).where(rows.c.series_id.in_(ids), rows.c.ts < cutoff))
        if len(ids) == 500:
            self._retention_after[table] = ids[-1]
            return True
        del self._retention_after[table]
        if self._retention_after:
            return True
        self._retention_after = {}
        if cutoffs["rollup_1m"] is not None:  # the cross-series 1m rows go with the per-series ones
            host_rows = RollupHost1m.__table__
            session.execute(delete(host_rows).where(host_rows.c.ts < cutoffs["rollup_1m"]))
        self._delete_empty_series(session)
        return False

    def _delete_empty_series(self, session: Session) -> None:
        """At the end of a retention pass: delete the series with no sample left in any tier
        (raw rows, cold blocks, rollups and their blocks) whose last sample (``last_ts``) is older than the
        raw retention and at least two hours old, or that never stored one. The ingest
        writer trusts a cached series id only for an hour after that series' last sample
        (console/ingest/service.py), so none still uses an id deleted here."""
        now_ms = int(self._clock() * 1000)
        quiet_before = now_ms - max(int(self._config.retention_raw_days * DAY_MS), 2 * HOUR_MS)
        session.execute(text(
            "DELETE FROM series WHERE (last_ts IS NULL OR last_ts < :quiet_before) "
            f"AND NOT EXISTS (SELECT 1 FROM samples WHERE {hot_clause(self._db.dialect)}series_id = series.id) "
            "AND NOT EXISTS (SELECT 1 FROM sample_blocks WHERE series_id = series.id) "
            "AND NOT EXISTS (SELECT 1 FROM rollup_1m WHERE series_id = series.id) "
            "AND NOT EXISTS (SELECT 1 FROM rollup_1m_blocks WHERE series_id = series.id) "
            "AND NOT EXISTS (SELECT 1 FROM rollup_1h WHERE series_id = series.id)"), {"quiet_before": quiet_before,
                                                                          **hot_params()})
