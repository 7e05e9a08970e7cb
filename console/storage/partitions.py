"""Time partitioning on PostgreSQL: ``samples``, ``sample_blocks``, ``rollup_1m``,
``rollup_1m_blocks`` and ``log_records`` are RANGE-partitioned by their time column (Unix ms), so retention drops
whole partitions instead of deleting rows (docs/scaling.md, "Time partitions").

A partition holds ``[lo, hi)`` of the table's time column and is named after ``lo`` in
UTC, ``samples_p20261129_0000``; bounds are multiples of the configured width (a width
changed later starts at the next free bound, so ranges never overlap). Each table also has
a ``<table>_default`` partition, the safety net for a row no range covers: an insert never
fails for want of a partition. :class:`PartitionMaintenance` creates the current and next
partitions ahead of time, and moves rows found in a default partition into partitions made
for them (logging a warning and counting them in ``fleetdeck_partition_default_rows``);
older ones are made only when a row needs one (:func:`cover` in ingest, :func:`mirror` in
the rollup job), so a day with no data has no partition. The retention jobs
(console/tiers, console/logs) detach and drop the partitions wholly past their cutoff and
delete rows as before in the one that straddles it.

``samples`` holds only the hot rows (an hour or two: older ones are packed into blocks),
so its partitions are an hour wide (``samples_partition_hours``) and the rollup job drops
each one packing emptied (:func:`drop_emptied`): a day-wide partition kept the pages of
the most rows it held that day, and its primary key's pages until truncated.

SQLite has no partitioning; every function here is a no-op there
(https://www.postgresql.org/docs/15/ddl-partitioning.html).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import column, delete, func, insert, literal_column, select, text
from sqlalchemy import table as table_clause
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.storage.database import Database

log = logging.getLogger("fleetdeck.partitions")

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BLOCK_MS = 2 * HOUR_MS  # a cold block's width (console/tiers/service.py): its samples reach this far past start_ts
BLOCK_1M_MS = DAY_MS  # a cold 1m rollup block's width (console/tiers/service.py)
MAINTENANCE_INTERVAL_S = 600.0  # partitions are made at least two widths (>= 2 h) ahead, so 10 min is ample
LOCK_TIMEOUT = "3s"  # DDL on a partitioned table waits at most this long for running queries, then retries later


@dataclass(frozen=True)
class TimePartitioned:
    """A partitioned table: ``column`` is its partition key (Unix ms); its rows may hold data
    up to ``reach_ms`` past the key (a cold block's samples), so a partition is dropped only
    once ``hi + reach_ms`` is past the cutoff."""

    table: str
    column: str
    reach_ms: int = 0


METRIC_TABLES = (TimePartitioned("samples", "ts"), TimePartitioned("sample_blocks", "start_ts", BLOCK_MS),
                 TimePartitioned("rollup_1m", "ts"), TimePartitioned("rollup_1m_blocks", "start_ts", BLOCK_1M_MS))
LOG_TABLE = TimePartitioned("log_records", "ts")
TABLES = {t.table: t for t in (*METRIC_TABLES, LOG_TABLE)}

# pg_get_expr of a range partition's bound: FOR VALUES FROM ('1764374400000') TO ('1764460800000')
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lo: int  # Unix ms, inclusive
    hi: int  # Unix ms, exclusive


def partition_name(table: str, lo_ms: int) -> str:
    """``<table>_pYYYYMMDD_HHMM`` of the partition starting at ``lo_ms`` (UTC)."""
    start = dt.datetime.fromtimestamp(lo_ms / 1000, dt.timezone.utc)
    return f"{table}_p{start:%Y%m%d_%H%M}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partitioned(session: Session, table: str) -> bool:
    """Whether ``table`` (in the current schema) is a partitioned table; False on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    kind = session.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}).scalar()
    return kind == "p"


def partitions(session: Session, table: str) -> list[Partition]:
    """The range partitions of ``table``, oldest first (the default partition left out)."""
    rows = session.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"), {"t": table}).all()
    found = []
    for name, bound in rows:
        m = _BOUND.search(bound or "")
        if m:
            found.append(Partition(name, int(m.group(1)), int(m.group(2))))
    return sorted(found, key=lambda p: p.lo)


def _free_ranges(lo: int, hi: int, taken: Iterable[Partition]) -> list[tuple[int, int]]:
    """``[lo, hi)`` less the ranges already ``taken``."""
    pieces = [(lo, hi)]
    for p in taken:
        pieces = [r for a, b in pieces for r in ((a, min(b, p.lo)), (max(a, p.hi), b)) if r[0] < r[1]]
    return pieces


def _lock(session: Session) -> None:
    # One maintainer per schema at a time (several consoles start together), and DDL that
    # waits for running queries gives up after LOCK_TIMEOUT rather than queue ingest behind it.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('fleetdeck.partitions:' || current_schema()))"))
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def create_default(session: Session, table: str) -> None:
    session.execute(text(f'CREATE TABLE IF NOT EXISTS "{default_name(table)}" PARTITION OF "{table}" DEFAULT'))


def ensure_partitions(session: Session, spec: TimePartitioned, width_ms: int, lo_ms: int, hi_ms: int) -> list[str]:
    """Create the partitions of ``width_ms`` that cover ``[lo_ms, hi_ms)`` where none is yet,
    moving any rows of their ranges out of the default partition into them; returns the
    names created. Idempotent."""
    start = lo_ms // width_ms * width_ms
    wanted = [(b, b + width_ms) for b in range(start, hi_ms, width_ms)]
    taken, created = partitions(session, spec.table), []
    for a, b in wanted:
        for lo, hi in _free_ranges(a, b, taken):
            created.append(_create(session, spec, lo, hi))
            taken.append(Partition(created[-1], lo, hi))
    return created


def _create(session: Session, spec: TimePartitioned, lo: int, hi: int) -> str:
    """Create the partition ``[lo, hi)``; rows of that range in the default partition (which
    PostgreSQL refuses to leave there) move into it in the same transaction."""
    name, default = partition_name(spec.table, lo), columns_of(session, default_name(spec.table))
    due = (default.c[spec.column] >= lo, default.c[spec.column] < hi)
    waiting = session.execute(select(func.count()).select_from(default).where(*due)).scalar_one()
    if waiting:
        moving = table_clause("partition_move", *(column(c.name) for c in default.c))
        session.execute(text(f'CREATE TEMPORARY TABLE partition_move (LIKE "{spec.table}") ON COMMIT DROP'))
        moved = delete(default).where(*due).returning(*default.c).cte("moved")
        session.execute(insert(moving).from_select(list(default.c.keys()), select(*moved.c)))
    session.execute(text(f'CREATE TABLE "{name}" PARTITION OF "{spec.table}" FOR VALUES FROM ({lo:d}) TO ({hi:d})'))
    if waiting:
        parent = table_clause(spec.table, *(column(c.name) for c in default.c))
        session.execute(insert(parent).from_select(list(default.c.keys()), select(*moving.c)))
        session.execute(text("DROP TABLE partition_move"))
    return name


def columns_of(session: Session, name: str) -> TableClause:
    """``name`` as a lightweight table with its columns (catalog order), for DML whose table
    is only known at run time (SQLAlchemy quotes the identifiers)."""
    names = session.execute(text("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                                 "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"), {"t": name}).scalars()
    return table_clause(name, *(column(n) for n in names))


def copy_rows(session: Session, source: str, target: str) -> None:
    """``INSERT INTO target SELECT * FROM source`` of two tables with the same columns."""
    src = columns_of(session, source)
    dst = table_clause(target, *(column(c.name) for c in src.c))
    session.execute(insert(dst).from_select(list(src.c.keys()), select(*src.c)))


def default_rows(session: Session, spec: TimePartitioned) -> tuple[int, int | None, int | None]:
    """``(rows, oldest, newest)`` in the default partition (times Unix ms)."""
    default = columns_of(session, default_name(spec.table))
    key = default.c[spec.column]
    n, lo, hi = session.execute(select(func.count(), func.min(key), func.max(key)).select_from(default)).one()
    return int(n), lo, hi


@dataclass(frozen=True)
class Dropped:
    partition: Partition
    rows: int  # the rows it held


def drop_one_before(session: Session, spec: TimePartitioned, cutoff_ms: int) -> Dropped | None:
    """Detach and drop the oldest partition whose rows are all older than ``cutoff_ms``
    (``hi + reach_ms <= cutoff_ms``), counting its rows first; returns it, or None when
    there is none."""
    for p in partitions(session, spec.table):
        if p.hi + spec.reach_ms <= cutoff_ms:
            _lock(session)
            session.execute(text(f'ALTER TABLE "{spec.table}" DETACH PARTITION "{p.name}"'))
            rows = session.execute(select(func.count()).select_from(table_clause(p.name))).scalar_one()
            session.execute(text(f'DROP TABLE "{p.name}"'))
            return Dropped(p, int(rows))
        break
    return None


def drop_partitions_before(db: Database, spec: TimePartitioned, cutoff_ms: int | None) -> list[Dropped]:
    """Drop, one transaction each, every partition of ``spec`` wholly before ``cutoff_ms``
    (None: nothing is due). Blocking: run it on the writer thread. A partition whose lock
    is not granted within LOCK_TIMEOUT (a long query reads it) is left for the next run."""
    dropped: list[Dropped] = []
    if cutoff_ms is None or db.dialect != "postgresql":
        return dropped
    while True:
        try:
            gone = db.run(lambda s: drop_one_before(s, spec, cutoff_ms) if is_partitioned(s, spec.table) else None)
        except sa_exc.OperationalError as exc:
            log.warning("dropping an old partition of %s waits for the next run: %s", spec.table,
                        str(exc.orig or exc).splitlines()[0][:200])
            return dropped
        if gone is None:
            return dropped
        log.info("retention dropped partition %s of %s (%d rows before %d ms)", gone.partition.name, spec.table,
                 gone.rows, gone.partition.hi)
        dropped.append(gone)


# Partitions with no heap page left whose indexes hold more than their metapage (8 KiB each):
# VACUUM gives the pages of an emptied heap back to the file system but keeps a b-tree
# index's pages for reuse (https://www.postgresql.org/docs/15/routine-vacuuming.html,
# "Recovering Disk Space"; REINDEX, "an index has become bloated"), so a day of samples
# packed into blocks kept its primary key's pages, ~30 B a sample, until raw retention.
_EMPTIED = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass(:t) AND pg_relation_size(c.oid) = 0 "
    "AND pg_indexes_size(c.oid) > 8192 * (SELECT COUNT(*) FROM pg_index x WHERE x.indrelid = c.oid) "
    "ORDER BY c.relname")


def truncate_if_empty(session: Session, name: str) -> bool:
    """TRUNCATE the partition ``name`` if it holds no row; returns whether it did. Its lock
    is taken first, NOWAIT: a partition being read or written raises OperationalError at
    once instead of queueing readers behind the lock, and a row inserted before the lock
    is seen by the check."""
    session.execute(text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE NOWAIT'))
    if session.execute(select(literal_column("1")).select_from(table_clause(name)).limit(1)).first() is not None:
        return False
    session.execute(text(f'TRUNCATE "{name}"'))
    return True


# The longest an hourly drop of an emptied partition may hold up ingest: DETACH needs the
# parent's ACCESS EXCLUSIVE lock, which every insert and read of the table conflicts with,
# and a lock request waiting in the queue holds back the requests behind it.
DROP_LOCK_TIMEOUT = "200ms"


def drop_if_empty(session: Session, spec: TimePartitioned, name: str) -> bool:
    """Detach and drop the partition ``name`` of ``spec`` if it holds no row; returns
    whether it did. Under the schema's advisory lock (partition DDL), the parent's lock
    (``ONLY``: not its other partitions) and the partition's are waited for at most
    DROP_LOCK_TIMEOUT each, then OperationalError (a query reading the table, an ingest
    transaction writing it); a row inserted before the locks is seen by the check."""
    _lock(session)
    session.execute(text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
    session.execute(text(f'LOCK TABLE ONLY "{spec.table}" IN ACCESS EXCLUSIVE MODE'))
    session.execute(text(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE'))
    if session.execute(select(literal_column("1")).select_from(table_clause(name)).limit(1)).first() is not None:
        return False
    session.execute(text(f'ALTER TABLE "{spec.table}" DETACH PARTITION "{name}"'))
    session.execute(text(f'DROP TABLE "{name}"'))
    return True


# Which of the partitions :names have no heap page (the ones not there are left out).
_HEAP_EMPTY = text("SELECT n FROM unnest(CAST(:names AS text[])) AS n "
                   "WHERE to_regclass(n) IS NOT NULL AND pg_relation_size(to_regclass(n)) = 0")


def drop_emptied(db: Database, spec: TimePartitioned, before_ms: int) -> list[str]:
    """Detach and drop, one transaction each, the partitions of ``spec`` wholly before
    ``before_ms`` (Unix ms: ``hi <= before_ms``) whose heap VACUUM gave back (no page: every
    row packed into blocks and deleted); returns their names. Unlike a truncated partition,
    a dropped one keeps no index metapage and costs no planning; a late row for its range
    gets a new one (:func:`cover`). Blocking: run it on the writer thread. Stops at the
    first lock not granted (the table is busy) and leaves the rest for the next run. A
    no-op on SQLite."""
    if db.dialect != "postgresql":
        return []

    def emptied(session: Session) -> list[str]:
        past = [p.name for p in partitions(session, spec.table) if p.hi <= before_ms]
        if not past:
            return []
        # One statement for all of them: a week of hourly partitions is 168 names.
        empty = set(session.execute(_HEAP_EMPTY, {"names": past}).scalars())
        return [name for name in past if name in empty]

    done: list[str] = []
    for name in db.run(emptied):
        try:
            if db.run(drop_if_empty, spec, name):
                done.append(name)
        except sa_exc.OperationalError as exc:
            log.info("dropping emptied partition %s waits for the next run: %s", name,
                     str(exc.orig or exc).splitlines()[0][:200])
            break
    return done


def truncate_emptied(db: Database, spec: TimePartitioned) -> list[str]:
    """Truncate, one transaction each, the partitions of ``spec`` that hold no row but whose
    indexes kept their size (the rows were moved into blocks, and VACUUM gave the heap
    back); returns their names. Blocking: run it on the writer thread. A partition in use
    is left for the next run. A no-op on SQLite."""
    if db.dialect != "postgresql":
        return []
    done = []
    for name in db.run(lambda s: list(s.execute(_EMPTIED, {"t": spec.table}).scalars())):
        try:
            if db.run(truncate_if_empty, name):
                done.append(name)
        except sa_exc.OperationalError as exc:
            log.info("truncating emptied partition %s waits for the next run: %s", name,
                     str(exc.orig or exc).splitlines()[0][:200])
    return done


def _missing(taken: list[Partition], width_ms: int, times: Iterable[int]) -> list[int]:
    """The starts of the ``width_ms`` ranges holding ``times`` that a partition of ``taken``
    does not wholly cover."""
    return [b for b in sorted({t // width_ms * width_ms for t in times}) if _free_ranges(b, b + width_ms, taken)]


def cover(session: Session, spec: TimePartitioned, width_ms: int, times: Iterable[int]) -> list[str]:
    """Writer path (ingest): make, in the writer's transaction, the partitions of
    ``width_ms`` that the rows stamped ``times`` (Unix ms) need and that do not exist yet;
    returns the names made. For rows older than the current width only (maintenance makes
    that one and the next ones ahead): late samples, an agent's spool replayed, a first
    log line. A savepoint holds the DDL: if it fails (the advisory lock or a table lock not
    granted within LOCK_TIMEOUT, a deadlock with another writer, another session that
    made the same range meanwhile) it is rolled back and the rows go to the default
    partition, which the next maintenance pass moves out. A no-op on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    wanted = _missing(partitions(session, spec.table), width_ms, times)
    if not wanted:
        return []
    timeout = session.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
    made: list[str] = []
    try:
        with session.begin_nested():
            _lock(session)
            for b in wanted:
                made += ensure_partitions(session, spec, width_ms, b, b + width_ms)
    except sa_exc.DBAPIError as exc:
        log.warning("making a partition of %s for late rows failed; they go to its default partition until "
                    "the next maintenance pass: %s", spec.table, str(exc.orig or exc).splitlines()[0][:200])
        made = []
    session.execute(text("SELECT set_config('lock_timeout', :v, true)"), {"v": timeout})
    if made:
        log.info("created partitions of %s for late rows: %s", spec.table, ", ".join(made))
    return made


# The partitions the rollup job writes into, made after those of the table it reads: a
# 1m row or a block is stamped at or after the start of its source rows' range (a block
# at the start of its window, ``align`` ms: the 2-hour block of the samples, the UTC day of
# the 1m rows).
MIRRORED = {"rollup_1m": ("samples", 60_000), "sample_blocks": ("samples", BLOCK_MS),
            "rollup_1m_blocks": ("rollup_1m", BLOCK_1M_MS)}


def mirror(session: Session, width_ms: int, target: str) -> list[str]:
    """Rollup job: make the partitions of ``target`` (``rollup_1m``, ``sample_blocks`` or
    ``rollup_1m_blocks``, of ``width_ms``) for every range a partition of the table it is
    made from covers (``samples``, ``samples``, ``rollup_1m``), where none is yet; returns
    the names made. So a day's 1m rows and blocks have their partition as soon as its
    samples have one, and no partition is made for a day with no data. Idempotent; a
    no-op on SQLite. The target's partitions outlive the source's (a longer retention,
    or a block's reach), so one dropped by retention is not made again."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    source, align = MIRRORED[target]
    if not (is_partitioned(session, source) and is_partitioned(session, target)):
        return []
    due = [(p.lo // align * align, p.hi) for p in partitions(session, source)]
    if not any(_free_ranges(lo, hi, partitions(session, target)) for lo, hi in due):
        return []
    _lock(session)
    made: list[str] = []
    for lo, hi in due:
        made += ensure_partitions(session, TABLES[target], width_ms, lo, hi)
    return made


def width_ms(config: ConsoleConfig, spec: TimePartitioned) -> int:
    """The width of ``spec``'s partitions (ms) in ``config``: ``samples_partition_hours``
    for ``samples``, ``log_partition_hours`` for ``log_records``, ``metrics_partition_hours``
    for the blocks and 1m rollups."""
    hours = {"samples": config.samples_partition_hours,
             "log_records": config.log_partition_hours}.get(spec.table, config.metrics_partition_hours)
    return hours * HOUR_MS


@dataclass
class PartitionMaintenance:
    """Keeps the partitions of the time-partitioned tables ahead of time (PostgreSQL only).

    Per table, partitions of the configured width (:func:`width_ms`) cover from the current
    width to two widths past now (plus ``sample_max_future``); for log records only once
    the table holds a line. Older partitions are made when a row first needs one: by ingest
    for late samples and log lines (:func:`cover`), by the rollup job for 1m rows and blocks
    (:func:`mirror`). Rows in a default
    partition are moved into partitions made for them, with a warning. ``run()`` is one
    blocking pass (a transaction per table); ``start()`` runs a pass now and then every
    ``MAINTENANCE_INTERVAL_S`` on the leader."""

    db: Database
    config: ConsoleConfig
    clock: Callable[[], float] = time.time
    leads: Callable[[], bool] = lambda: True
    registry: CollectorRegistry | None = None
    default_seen: dict[str, int] = field(default_factory=dict)  # rows found in each default partition at the last pass
    failures: int = 0
    _task: asyncio.Task | None = field(default=None, init=False, repr=False)
    _m_default: Gauge | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # Set at each pass, not computed when scraped: with several workers /metrics reads
        # the shared files, where the newest value set by any worker wins (console/telemetry.py).
        self._m_default = Gauge("fleetdeck_partition_default_rows", "Rows the last partition maintenance found "
                                "in a default partition (PostgreSQL; moved into partitions made for them).",
                                ["table"], registry=self.registry, multiprocess_mode="mostrecent") \
            if self.registry is not None else None
        if self._m_default is not None:
            for name in TABLES:
                self._m_default.labels(name).set(self.default_seen.get(name, 0))

    def _seen(self, table: str, rows: int) -> None:
        self.default_seen[table] = rows
        if self._m_default is not None:
            self._m_default.labels(table).set(rows)

    def width(self, spec: TimePartitioned) -> int:
        """The configured width of ``spec``'s partitions, ms."""
        return width_ms(self.config, spec)

    def window(self, spec: TimePartitioned) -> tuple[int, int, int]:
        """``(width_ms, lo_ms, hi_ms)``: the partitions due for ``spec`` now: the current
        width's and the next ones, as far as ingest accepts a stamp ahead. Older ones are
        made when a row first needs them (:func:`cover` by ingest, :func:`mirror` by the
        rollup job), so a day with no data has no partition."""
        now_ms, width = int(self.clock() * 1000), self.width(spec)
        return width, now_ms, now_ms + int(self.config.sample_max_future * 1000) + 2 * width

    def run(self) -> dict[str, list[str]]:
        """One pass: ``{table: partitions created}``. Blocking; a no-op on SQLite."""
        created: dict[str, list[str]] = {}
        if self.db.dialect != "postgresql":
            return created
        for spec in TABLES.values():
            try:
                made = self.db.run(self._maintain, spec)
            except sa_exc.OperationalError as exc:  # lock_timeout behind a long query: the next pass retries
                log.warning("partition maintenance of %s waits for the next pass: %s", spec.table,
                            str(exc.orig or exc).splitlines()[0][:200])
                continue
            if made:
                created[spec.table] = made
                log.info("created partitions of %s: %s", spec.table, ", ".join(made))
        return created

    def _maintain(self, session: Session, spec: TimePartitioned) -> list[str]:
        if not is_partitioned(session, spec.table):
            return []
        _lock(session)
        create_default(session, spec.table)
        width, lo, hi = self.window(spec)
        # Log lines may never come (no agent ships any): their partitions are made ahead
        # only once the table holds a line; until then ingest makes the first one.
        flowing = spec is not LOG_TABLE or session.execute(
            select(literal_column("1")).select_from(table_clause(spec.table)).limit(1)).first() is not None
        made = ensure_partitions(session, spec, width, lo, hi) if flowing else []
        n, oldest, newest = default_rows(session, spec)
        self._seen(spec.table, n)
        if n and oldest is not None and newest is not None:
            log.warning("%d row(s) of %s were in its default partition (%s from %d to %d ms): no partition "
                        "covered them; moving them into new partitions", n, spec.table, default_name(spec.table),
                        oldest, newest)
            made += ensure_partitions(session, spec, width, oldest, newest + 1)
        return made

    def start(self) -> None:
        """Run a pass now, then every MAINTENANCE_INTERVAL_S while this console leads, on the
        running loop. The first pass runs on any console (the advisory lock serialises
        consoles started together), so a console never serves without partitions for now."""
        if self._task is None and self.db.dialect == "postgresql":
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="partitions")

    async def _loop(self) -> None:
        first = True
        while True:
            try:
                if first or self.leads():
                    await self.db.on_writer(self.run)
            except Exception:  # noqa: BLE001 - a failed pass is retried; the default partitions hold rows meanwhile
                self.failures += 1
                log.exception("partition maintenance failed; retrying in %gs", MAINTENANCE_INTERVAL_S)
            first = False
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
