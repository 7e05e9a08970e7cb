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

Retention deletes, per tier, everything older than its configured days, and never raw
samples the 1m tier has not rolled up yet, nor 1m rows the 1h tier still needs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.storage.database import Database
from console.storage.models import Rollup1h, Rollup1m, RollupWatermark, Series

log = logging.getLogger("fleetdeck.tiers")

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LOOKBACK_MS = 300_000  # how far back the sample before a bucket is looked for (Prometheus' 5 min)


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

_FROM_RAW = text("""
SELECT x.series_id, x.bucket, MIN(x.value), MAX(x.value), SUM(x.value), COUNT(*),
       SUM(CASE WHEN x.prev IS NULL THEN 0 WHEN x.value >= x.prev THEN x.value - x.prev ELSE x.value END)
FROM (SELECT series_id, ts, value, (ts / 60000) * 60000 AS bucket,
             LAG(value) OVER (PARTITION BY series_id ORDER BY ts) AS prev
      FROM samples WHERE series_id IN :ids AND ts >= :lookback AND ts < :hi) x
WHERE x.ts >= :lo
GROUP BY x.series_id, x.bucket
""").bindparams(bindparam("ids", expanding=True))

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
        """Roll up every tier as far as due, then apply retention; each step is one writer job."""
        for tier in TIERS:
            while await self._db.on_writer(self.rollup_step, tier.name):
                await asyncio.sleep(0)
        while await self._db.on_writer(self.retention_step):
            await asyncio.sleep(0)

    def run_all(self) -> None:
        """Blocking ``run_once`` for tests and the CLI; call it where no other writer runs."""
        for tier in TIERS:
            while self.rollup_step(tier.name):
                pass
        while self.retention_step():
            pass

    # -- rollups ---------------------------------------------------------------------------
    def rollup_step(self, tier_name: str) -> bool:
        """One transaction of rollup work for ``tier_name`` ("1m" | "1h"). Returns True
        while more work is due now."""
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
        # One index seek per series: the tables are clustered on (series_id, ts), not ts.
        return session.execute(text(
            f"SELECT MIN((SELECT MIN(x.ts) FROM {table} x WHERE x.series_id = s.id AND x.ts >= :t)) "
            "FROM series s"), {"t": at_least}).scalar()

    def _rollup_tx(self, session: Session, tier: Tier) -> bool:
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
        chunk = session.execute(select(Series.id, Series.type).where(Series.id > cursor.after_id)
                                .order_by(Series.id).limit(tier.series_chunk)).all()
        if chunk:
            cursor.rows += self._roll(session, tier, dict(chunk), lo, hi)
            cursor.after_id = chunk[-1][0]
        if len(chunk) == tier.series_chunk:
            return True  # more series in this window
        if cursor.rows == 0:
            # Nothing in this window: jump to the bucket of the next source row, if due.
            following = self._first_ts(session, tier.source, hi)
            hi = upto if following is None else max(hi, min(upto, following // tier.width_ms * tier.width_ms))
        mark.done_until = hi
        mark.updated_at = self._clock()
        del self._cursors[tier.name]
        return hi < upto

    def _roll(self, session: Session, tier: Tier, types: dict[int, str], lo: int, hi: int) -> int:
        ids = list(types)
        if tier.name == "1m":
            rows = session.execute(_FROM_RAW, {"ids": ids, "lookback": lo - LOOKBACK_MS, "lo": lo, "hi": hi})
        else:
            rows = session.execute(_FROM_1M, {"ids": ids, "lo": lo, "hi": hi})
        values = [{"series_id": sid, "ts": bucket, "min": mn, "max": mx, "sum": sm, "count": n,
                   "increase": float(inc) if types.get(sid) == "counter" and inc is not None else None}
                  for sid, bucket, mn, mx, sm, n, inc in rows]
        if values:
            table = (Rollup1m if tier.name == "1m" else Rollup1h).__table__
            insert = (postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert)(table)
            session.execute(insert.on_conflict_do_update(
                index_elements=[table.c.series_id, table.c.ts],
                set_={c: insert.excluded[c] for c in ("min", "max", "sum", "count", "increase")}), values)
        return len(values)

    # -- retention -------------------------------------------------------------------------
    def cutoffs(self, session: Session) -> dict[str, int | None]:
        """Per tier, the Unix ms before which rows are deleted now (None: nothing yet).
        Raw waits for the 1m tier, 1m for the 1h tier."""
        now_ms = int(self._clock() * 1000)
        marks = self.watermarks(session)
        c = self._config
        raw = now_ms - int(c.retention_raw_days * DAY_MS)
        one_m = now_ms - int(c.retention_1m_days * DAY_MS)
        return {"samples": min(raw, marks["1m"] - LOOKBACK_MS) if "1m" in marks else None,
                "rollup_1m": min(one_m, marks["1h"]) if "1h" in marks else None,
                "rollup_1h": now_ms - int(c.retention_1h_days * DAY_MS)}

    def retention_step(self) -> bool:
        """Delete due rows of one chunk of series in one table, in one transaction.
        Returns True while the current pass over tables and series is unfinished."""
        return self._db.run(self._retention_tx)

    def _retention_tx(self, session: Session) -> bool:
        cutoffs = self.cutoffs(session)
        tables = ("samples", "rollup_1m", "rollup_1h")
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
            session.execute(text(f"DELETE FROM {table} WHERE series_id IN :ids AND ts < :cutoff")
                            .bindparams(bindparam("ids", expanding=True)), {"ids": ids, "cutoff": cutoff})
        if len(ids) == 500:
            self._retention_after[table] = ids[-1]
            return True
        del self._retention_after[table]
        if self._retention_after:
            return True
        self._retention_after = {}
        return False
