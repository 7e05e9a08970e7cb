"""Storage benchmark: bytes per raw sample of the whole database with the console's jobs
run (rollups, cold-block packing, retention), on SQLite or PostgreSQL.

Data (``--data``):
- ``host``: the agent's real host data: the host collector (collectors/host.py) read
  ``--collections`` times one second apart on this machine (or ``--load`` a file saved by
  bench/block_codec.py ``--save``); each series is continued over ``--hours`` at the agent's
  10 s interval: counters keep adding their real increments in turn, gauges walk their
  real values forward and back (no jumps a real host would not have).
- ``random``: random floats (the worst case), ``--series`` gauges.

Samples go through ``IngestService.store`` in 1,000-sample batches, in time order, timestamps
ending now (or at the UTC time of day ``--end``), with a simulated clock at the newest sample; every ``--jobs-every`` simulated
minutes the rollup job runs as deployed (``RollupService.run_all``: 1m and 1h rollups,
blocks past the hot window, retention), so freed pages are reused as in a running
console (on PostgreSQL followed by ``VACUUM`` of the tables the job deletes from or
rewrites, :data:`VACUUMED`, what autovacuum does there within
its one-minute naptime while here the simulated hours pass in seconds; ``series``, whose
rows ingest updates once a minute, after each 100 simulated seconds stored). On PostgreSQL the
console's partition maintenance (console/storage/partitions.py) runs too, at the simulated
time, every ``MAINTENANCE_INTERVAL_S``: each day of samples, blocks and 1m rows goes into
a partition of its own, as in a running console. Printed: the whole database after a checkpoint
(SQLite: the file after ``wal_checkpoint(TRUNCATE)``, and without its free pages, which
later inserts reuse; PostgreSQL: ``pg_total_relation_size`` summed over the schema's
tables) and per table with its indexes (PostgreSQL: and its partitions, split into
heap, indexes and TOAST), in bytes per raw sample.

The default retentions keep raw samples 7 days (``--hours 168``): over a shorter run the
hot rows of the last hours weigh more than in a console that has filled its raw retention.

    python bench/storage.py [--db sqlite|postgres] [--data host|random] [--hours 24] [--series 100] [--end HH:MM]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SECONDS_MAX, ConsoleConfig  # noqa: E402
from console.ingest.batch import Batch, MetricIn, canonical_labels  # noqa: E402
from console.ingest.service import IngestService  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.partitions import MAINTENANCE_INTERVAL_S, PartitionMaintenance  # noqa: E402
from console.tiers.service import RollupService  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402

# The tables the job deletes rows of or rewrites (packing), vacuumed after each run on PostgreSQL;
# ``series`` (ingest moves each series' last sample time once a minute) after each 100 s stored.
VACUUMED = ("samples", "rollup_1m", "sample_blocks", "rollup_1m_blocks")
# Other sessions' transactions that hold back what VACUUM may remove (the machine's other users).
HORIZON = ("SELECT COALESCE(MAX(EXTRACT(EPOCH FROM now() - xact_start)), 0) FROM pg_stat_activity "
           "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL")
TABLES = ("samples", "sample_blocks", "rollup_1m", "rollup_1m_blocks", "rollup_1h", "series")


def host_shapes(args: argparse.Namespace) -> list[tuple[str, str, str, list[float]]]:
    """(name, type, labels, values at 10 s) of each host collector series over ``--hours``."""
    if args.load:
        real = json.loads(Path(args.load).read_text())
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from block_codec import collect

        real = collect(args.collections, 1.0)
    n = int(args.hours * 360)
    out = []
    for key, entry in real.items():
        name, labels = key.split("{", 1)
        vs = entry["v"]
        if len(vs) < 2:
            continue
        if entry["type"] == "counter":
            steps = [max(b - a, 0.0) for a, b in zip(vs, vs[1:])]
            values, v = [], vs[0]
            for i in range(n):
                values.append(v)
                v = round(v + steps[i % len(steps)], 6)
        else:
            walk = vs + vs[-2:0:-1]  # forward and back
            values = [walk[i % len(walk)] for i in range(n)]
        out.append((name, entry["type"], canonical_labels(json.loads("{" + labels)), values))
    return out[:args.series] if args.series else out


def random_shapes(args: argparse.Namespace) -> list[tuple[str, str, str, list[float]]]:
    rnd = random.Random(1)
    n = int(args.hours * 360)
    return [("bench_random", "gauge", canonical_labels({"series": str(s)}), [rnd.random() * 1000 for _ in range(n)])
            for s in range(args.series)]


def end_time(end: str | None, now: float) -> float:
    """The simulated run's end, Unix s: ``now``, or the last UTC ``HH:MM`` at or before it."""
    if not end:
        return now
    hours, minutes = (int(x) for x in end.split(":"))
    at = now // 86400 * 86400 + hours * 3600 + minutes * 60
    return at if at <= now else at - 86400


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--data", choices=("host", "random"), default="host")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--series", type=int, default=0, help="series kept (host: 0 = all; random: default 100)")
    ap.add_argument("--collections", type=int, default=240)
    ap.add_argument("--load", help="host data saved by bench/block_codec.py --save")
    ap.add_argument("--jobs-every", type=int, default=10, help="simulated minutes between runs of the rollup job")
    ap.add_argument("--end", metavar="HH:MM", help="end the simulated run at this UTC time of day (the last one "
                    "before now; default: now): what the hot rows hold depends on it (BENCHMARKS.md)")
    ap.add_argument("--keep", action="store_true", help="keep the database (SQLite file, PostgreSQL schema) to look at")
    args = ap.parse_args()
    if args.data == "random" and not args.series:
        args.series = 100
    shapes = host_shapes(args) if args.data == "host" else random_shapes(args)
    print(f"load average before: {os.getloadavg()}")
    schema = None
    if args.db == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        db = Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema))
    else:
        work = Path(tempfile.mkdtemp(prefix="fd-storage-"))
        db = Database(f"sqlite:///{work / 'fleetdeck.db'}")
    try:
        db.migrate()
        now = end_time(args.end, time.time())
        points = len(shapes[0][3])
        t0 = int(now * 1000) - points * 10_000
        clock = [t0 / 1000]  # the simulated time: the newest sample stored so far
        window = ConsoleConfig(sample_max_age=SECONDS_MAX, sample_max_future=SECONDS_MAX)  # accept any stamp
        service = IngestService(db, clock=lambda: clock[0], config=window)
        jobs_service = RollupService(db, ConsoleConfig(), clock=lambda: clock[0])
        maintenance = PartitionMaintenance(db, ConsoleConfig(), clock=lambda: clock[0])
        maintenance.run()  # as a console does at start, before it takes a batch (a no-op on SQLite)
        maintained = clock[0]  # simulated time of the last partition maintenance pass
        stored = jobs = 0.0
        held = []  # per VACUUM after a job run: the age of the oldest other transaction, seconds
        with db.engine.connect() as conn:
            tables = set(conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").scalars()) \
                if args.db == "postgres" else set()
        for off in range(0, points, 10):
            start = time.perf_counter()
            for first in range(0, len(shapes), 100):
                metrics = [MetricIn(name, kind, labels, [(t0 + (off + p) * 10_000, values[off + p])
                                                         for p in range(min(10, points - off))])
                           for name, kind, labels, values in shapes[first:first + 100]]
                service.store(Batch("storage-1", uuid.uuid4().hex, None, None, None, "{}", metrics))
            clock[0] = (t0 + (off + 10) * 10_000) / 1000
            stored += time.perf_counter() - start
            if args.db == "postgres":  # autovacuum's naptime is a minute: it sees each minute's updates
                with db.engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM series")
            if off % (args.jobs_every * 6) == 0 or off + 10 >= points:
                start = time.perf_counter()
                if clock[0] - maintained >= MAINTENANCE_INTERVAL_S:
                    maintenance.run()  # a no-op on SQLite
                    maintained = clock[0]
                jobs_service.run_all()  # the console's job, as deployed, at the simulated time
                jobs += time.perf_counter() - start
                if args.db == "postgres":
                    # What autovacuum does within a minute in a running console (its naptime);
                    # the simulated hours pass in seconds here. Space of packed rows is reused.
                    with db.engine.connect() as conn:
                        held.append(float(conn.exec_driver_sql(HORIZON).scalar()))
                        conn.rollback()
                        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                            "VACUUM " + ", ".join(t for t in VACUUMED if t in tables))
        if args.db == "postgres":
            # The job's next run, a minute later in a console, after autovacuum gave back the heap
            # of a partition the last run emptied: it truncates that partition.
            jobs_service.run_all()
        n = points * len(shapes)
        print(f"ended at {time.strftime('%Y-%m-%d %H:%M', time.gmtime(clock[0]))} UTC (simulated)")
        print(f"{args.db}, {args.data} data: {len(shapes)} series x {points} samples = {n:,} samples "
              f"(stored in {stored:.0f} s, jobs ran in {jobs:.0f} s)")
        if held:
            print(f"VACUUMs after a job run while another session's transaction older than 5 s held back "
                  f"what they may remove: {sum(h > 5 for h in held)} of {len(held)} (oldest {max(held):.0f} s)")
        with db.engine.connect() as conn:
            if args.db == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                page = conn.exec_driver_sql("PRAGMA page_size").scalar()
                free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() * page
                size = sum(os.path.getsize(p) for p in work.iterdir() if p.name.startswith("fleetdeck.db"))
                print(f"database file: {size:,} B -> {size / n:.2f} B per sample; "
                      f"without its {free:,} B of free pages: {(size - free) / n:.2f} B per sample")
                listed = 0
                for table in TABLES:  # the table and its indexes (a rowid table's primary key is one)
                    b = conn.exec_driver_sql(
                        "SELECT SUM(pgsize) FROM dbstat WHERE name = ? OR name IN "
                        "(SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?)",
                        (table, table)).scalar() or 0
                    listed += b
                    print(f"  {table:<16} {b / n:6.2f} B per sample")
                print(f"  {'other tables':<16} {(size - free - listed) / n:6.2f} B per sample")
            else:
                sizes = {t: conn.exec_driver_sql("SELECT pg_total_relation_size(%s::regclass)", (f"{schema}.{t}",)).scalar()
                         for t in conn.exec_driver_sql(
                             "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").scalars()}
                total = sum(sizes.values())
                print(f"all tables with indexes and TOAST: {total:,} B -> {total / n:.2f} B per sample")
                listed = 0
                for table in TABLES:  # a partitioned table: with its partitions
                    heap, index, toast, parts = conn.exec_driver_sql(
                        "SELECT COALESCE(SUM(pg_relation_size(c.oid)), 0), COALESCE(SUM(pg_indexes_size(c.oid)), 0), "
                        "COALESCE(SUM(pg_total_relation_size(c.oid) - pg_relation_size(c.oid) - pg_indexes_size(c.oid)), 0), "
                        "COUNT(*) FILTER (WHERE c.relkind = 'r') FROM pg_class c "
                        "WHERE c.oid = to_regclass(%s) OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass(%s)))",
                        (f"{schema}.{table}",) * 2).one()
                    listed += heap + index + toast
                    print(f"  {table:<16} {(heap + index + toast) / n:6.2f} B per sample (heap {heap / n:.2f}, "
                          f"indexes {index / n:.2f}, TOAST {toast / n:.2f}; {parts} table(s))")
                print(f"  {'other tables':<16} {(total - listed) / n:6.2f} B per sample")
                # Each table or partition of 100 KB or more: which day's partition holds the hot
                # rows, what the other tables are.
                for name, heap, index, rest in conn.exec_driver_sql(
                        "SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), "
                        "pg_total_relation_size(c.oid) - pg_relation_size(c.oid) - pg_indexes_size(c.oid) "
                        "FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' "
                        "AND pg_total_relation_size(c.oid) >= 100000 ORDER BY c.relname"):
                    print(f"    {name:<32} heap {heap:>10,} indexes {index:>10,} TOAST {rest:>10,}")
    finally:
        db.close()
        if args.keep:
            print(f"kept: {'schema ' + schema if schema else work / 'fleetdeck.db'}")
        elif schema:
            drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
        else:
            shutil.rmtree(work)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
