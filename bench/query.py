"""Query benchmark: p50/p95 of range queries through QueryService, in process, including
the answer's JSON as the handler writes it to a client without gzip: chunk by chunk
(console/answers.py ``AnswerStream``), each chunk dropped once sent.

- 24 h x 500 series at a 1-minute step (1m tier): aggregated to one series, and per series;
- 1 h of raw samples x 100 series (10 s interval).

Each case runs "cold" (a new QueryService per run: nothing cached, a dashboard's first
load) and "warm" (one QueryService, the same query again: answered from its cache of
closed rollup buckets). ``--series N`` sets the gauges of the 24 h cases; ``--keep PATH``
(a SQLite file, or a PostgreSQL schema name with ``--db postgres``) keeps the generated
data and reuses it on the next run with the same PATH.

The data is left as a running console leaves it (:func:`settle`): the 1m rows written
straight into ``rollup_1m``, then the console's own rollup job run at the data set's
"now" rolls them up to 1h and packs the 1m rows older than the hot window into day
blocks (``rollup_1m_blocks``), so the last 2-3 hours stay rows; a kept data set made
before the packing is settled the same way on its next run.

The garbage collector is set as the console's server sets it once started
(console/server.py ``tune_gc``: what set-up allocated frozen, the youngest generation
collected every 200,000 net allocations) before timing; ``--no-server-gc`` leaves it as a
bare process has it. So is glibc's malloc (``tune_malloc``: fixed mmap and trim thresholds,
so an answer's blocks stay in the heap from one query to the next); ``--no-server-malloc``
leaves its thresholds as a bare process has them.

Each case and version first runs ``--warmup`` times (default 1) untimed, their times printed
apart: a process's first query of a kind grows its heap (at 8,000 series ~170,000 page
faults, 1-2 s more) and loads its code, which a running console did long ago.

p95 is the nearest rank (with 5 runs the slowest); beside each wall-clock figure the
median CPU time of this process (all its threads: the query service's helper thread too),
which the machine's load changes less, the median of each run's wall time over its CPU
time (below 1 where the helper thread ran beside the query's own on another core), and the
median of its minor page faults (memory faulted in afresh: see ``--no-server-malloc``).

``--baseline FILE`` also times another version of ``console/query/service.py`` (e.g.
``git show main:console/query/service.py > /tmp/old_service.py``) on the same database,
alternating run by run, so before/after share the machine's load.
PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a fresh schema, dropped afterwards).

    python bench/query.py [--db sqlite|postgres] [--runs 20] [--baseline FILE] [--series 500]
                          [--keep PATH] [--no-per-series] [--host-rollups] [--no-helper] [--warmup 1]
                          [--no-server-gc] [--no-server-malloc]
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.answers import AnswerStream, json_bytes  # noqa: E402
from console.config import ConsoleConfig  # noqa: E402
from console.query.service import QueryService  # noqa: E402
from console.server import tune_gc, tune_malloc  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.hot_samples import INSERT_SQLITE  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402
from console.tiers.service import RollupService  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402


RAW_BASE = 100_000  # series ids of the 1 h raw case start here


def load_rows(db: Database, now_ms: int, count: int) -> None:
    """``count`` gauges with 24 h of 1m rollups ending at ``now_ms``, and 100 series with
    1 h of raw samples (10 s), written straight into the tables."""
    rnd = random.Random(2)
    series = [(i + 1, "q_gauge", orjson.dumps({"i": str(i)}).decode()) for i in range(count)]
    series += [(RAW_BASE + i, "q_raw", orjson.dumps({"i": str(i)}).decode()) for i in range(100)]

    def rollup_rows() -> Iterator[tuple]:
        for sid in range(1, count + 1):
            for m in range(1440):
                v = rnd.random() * 100
                yield sid, now_ms - (1440 - m) * 60_000, v, v + 5, v * 6 + 10, 6

    rollups = rollup_rows()
    samples = [(RAW_BASE + i, now_ms - 3_600_000 + k * 10_000, rnd.random()) for i in range(100) for k in range(360)]
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        if db.dialect == "sqlite":
            raw.execute("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'q-1', 0, '{}')")
            raw.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (?, 1, ?, ?, 'gauge')", series)
            raw.executemany("INSERT INTO rollup_1m (series_id, ts, min, max, sum, count) VALUES (?,?,?,?,?,?)", rollups)
            raw.executemany(INSERT_SQLITE, samples)
            raw.execute("INSERT INTO rollup_watermarks VALUES ('1m', ?, 0, 0)", (now_ms,))
            return
        cur = raw.cursor()
        cur.execute("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'q-1', 0, '{}')")
        cur.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (%s, 1, %s, %s, 'gauge')", series)
        for table, cols, rows in (("rollup_1m", "series_id, ts, min, max, sum, count", rollups),
                                  ("samples", "series_id, ts, value", samples)):
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cur.execute("INSERT INTO rollup_watermarks VALUES ('1m', %s, 0, 0)", (now_ms,))
        # This schema's tables only: a bare ANALYZE goes through every schema of the database
        # (and can deadlock with another session's DDL there).
        cur.execute("ANALYZE hosts, series, rollup_1m, samples")


def fold_hosts(db: Database) -> None:
    """The cross-series rows (``rollup_1m_host``) the rollup job writes beside the 1m rows
    (console/tiers/service.py ``_add_to_host``), here in one statement over the loaded
    rows, complete from the first bucket on (the ``1m_host`` watermark)."""
    with db.engine.begin() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM rollup_watermarks WHERE tier = '1m_host'").first():
            return
        conn.exec_driver_sql(
            "INSERT INTO rollup_1m_host (name, ts, host_id, series, avg_sum, avg_min, avg_max, min_sum, min_min, "
            "min_max, max_sum, max_min, max_max, counters, inc_sum, inc_min, inc_max, samples) "
            "SELECT s.name, r.ts, s.host_id, COUNT(*), SUM(r.sum / r.count), MIN(r.sum / r.count), "
            "MAX(r.sum / r.count), SUM(r.min), MIN(r.min), MAX(r.min), SUM(r.max), MIN(r.max), MAX(r.max), "
            "COUNT(r.increase), SUM(r.increase), MIN(r.increase), MAX(r.increase), SUM(r.count) "
            "FROM rollup_1m r JOIN series s ON s.id = r.series_id GROUP BY s.name, r.ts, s.host_id")
        first = conn.exec_driver_sql("SELECT MIN(ts) FROM rollup_1m").scalar()
        conn.exec_driver_sql(f"INSERT INTO rollup_watermarks VALUES ('1m_host', {int(first)}, 0, 0)")


def settle(db: Database, now: float) -> None:
    """The rollup job run as a console runs it at ``now`` (the data set's 1m watermark): the
    1h tier from the 1m rows, then the 1m rows older than the hot window packed into day
    blocks; cross-series rows on so that those :func:`fold_hosts` wrote stay valid. Does
    nothing on a data set already settled. On PostgreSQL then ``VACUUM ANALYZE`` of its tables, what
    autovacuum does within its naptime after the packing's deletes."""
    started = time.perf_counter()
    RollupService(db, ConsoleConfig(rollup_1m_host=True), clock=lambda: now).run_all()
    with db.engine.connect() as conn:
        blocks, rows = conn.exec_driver_sql("SELECT (SELECT COUNT(*) FROM rollup_1m_blocks), "
                                            "(SELECT COUNT(*) FROM rollup_1m)").one()
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE series, rollup_1m, rollup_1m_blocks, rollup_1h, samples")
    print(f"settled by the rollup job in {time.perf_counter() - started:.1f} s: {blocks:,} 1m blocks, "
          f"{rows:,} 1m rows left as rows")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--baseline", help="another service.py to time beside this one")
    ap.add_argument("--series", type=int, default=500, help="gauges of the 24 h cases")
    ap.add_argument("--keep", help="reuse (or create and keep) this SQLite file or PostgreSQL schema, "
                                   "so one generated data set serves several runs")
    ap.add_argument("--no-per-series", action="store_true", help="skip the per-series 24 h case")
    ap.add_argument("--host-rollups", action="store_true", help="rollup_1m_host on (cross-series 1m rollups)")
    ap.add_argument("--no-helper", action="store_true",
                    help="also time this service with its helper thread off (every read on the query's own thread), "
                         "alternating run by run: what reading beside the blocks' decoding gains or costs")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs of each case and version before the timed ones (their times printed apart): "
                         "the process's first query grows its heap and loads its code, as a running console did long ago")
    ap.add_argument("--no-server-gc", action="store_true",
                    help="leave the garbage collector as a bare process has it (not as the server sets it)")
    ap.add_argument("--no-server-malloc", action="store_true",
                    help="leave glibc's malloc thresholds as a bare process has them (not as the server sets them)")
    args = ap.parse_args()
    if args.warmup < 0 or args.runs < 1:
        ap.error("--warmup must be 0 or more and --runs 1 or more")
    schema = None
    fresh = True
    if args.db == "postgres":
        import psycopg

        url = os.environ["FLEETDECK_TEST_POSTGRES_URL"]
        schema = args.keep or f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
            fresh = c.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                              (schema,)).fetchone() is None
        db = Database(create_schema(url, schema, exist_ok=True))
    else:
        path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='fd-query-')) / 'q.db'
        fresh = not path.exists()
        db = Database(f"sqlite:///{path}")
    try:
        if fresh:
            db.migrate()
            now = time.time()
            load_rows(db, int(now // 60 * 60 * 1000), args.series)
            db.run(refresh_series_bounds)  # the rows went in around the ingest writer
        else:
            db.migrate()  # a kept data set from an older schema
        fold_hosts(db)
        with db.engine.connect() as conn:
            now = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar() / 1000
        settle(db, now)
        with db.engine.connect() as conn:
            args.series = conn.exec_driver_sql("SELECT count(*) FROM series WHERE name = 'q_gauge'").scalar()
        config = ConsoleConfig(max_points_per_query=20_000_000, max_series_per_query=max(2000, args.series),
                               rollup_1m_host=args.host_rollups)
        # "cold": a new service each run, so nothing is cached (a dashboard's first load);
        # "warm": one service, the same query again (a refresh within the minute, or a
        # second viewer), answered from the cache of closed buckets but for the open tail.
        current = QueryService(config, clock=lambda: now)
        versions: dict[str, Callable[[], Any]] = {"cold": lambda: QueryService(config, clock=lambda: now),
                                                  "warm": lambda: current}
        if args.baseline:
            spec = importlib.util.spec_from_file_location("baseline_service", args.baseline)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            # A new one each run too: compared with the first load, not with an answer it cached.
            versions = {"baseline": lambda: module.QueryService(config, clock=lambda: now), **versions}
        if args.no_helper:
            def inline() -> QueryService:
                svc = QueryService(config, clock=lambda: now)
                svc.close()  # a closed helper: the query reads everything itself
                return svc
            versions["no-helper"] = inline
        n = args.series
        cases = {
            f"24h x {n} series, 1m step, agg=avg over all": dict(metric="q_gauge", start=now - 86400, end=now,
                                                                step=60, fn="avg", group_by=(), agg="avg"),
            f"24h x {n} series, 1m step, per series": dict(metric="q_gauge", start=now - 86400, end=now, step=60,
                                                          fn="avg"),
            "1h raw x 100 series": dict(metric="q_raw", start=now - 3600, end=now, step=None, fn="raw"),
        }
        if args.no_per_series:
            del cases[f"24h x {n} series, 1m step, per series"]
        if not args.no_server_gc:
            tune_gc()  # as the console's server does once started (console/server.py start_http)
        malloc = [] if args.no_server_malloc else tune_malloc()  # likewise
        print(f"db={args.db} runs={args.runs} rollup_1m_host={args.host_rollups} server_gc={not args.no_server_gc} "
              f"server_malloc={','.join(malloc) or 'off'} "
              f"load average at start: {os.getloadavg()}")
        for name, params in cases.items():
            times: dict[str, list[float]] = {v: [] for v in versions}
            cpu: dict[str, list[float]] = {v: [] for v in versions}  # this process's CPU: less of the machine's load
            faults: dict[str, list[int]] = {v: [] for v in versions}  # minor page faults: memory faulted in afresh
            answers = {}
            warmup: dict[str, list[float]] = {v: [] for v in versions}
            for run in range(args.warmup + args.runs):
                for version, make in versions.items():
                    svc = make()
                    q = sys.modules[type(svc).__module__].RangeQuery(**params)
                    body = encoded = None  # the previous version's answer freed here, not inside the timing
                    t, c = time.perf_counter(), time.process_time()
                    f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    body = db.run(svc.range, q)
                    sent = sum(map(len, sent_chunks(body)))  # the handler's writing is part of the answer
                    if run < args.warmup:
                        warmup[version].append(time.perf_counter() - t)
                    else:
                        times[version].append(time.perf_counter() - t)
                        cpu[version].append(time.process_time() - c)
                        faults[version].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
                    if run == args.warmup + args.runs - 1:
                        # Once, at the end: a whole answer's bytes, freed, would raise glibc's
                        # own thresholds (a bare process's, --no-server-malloc) for the runs after.
                        answers[version] = encoded = json_bytes(body)
                        assert len(encoded) == sent
                    if svc is not current and hasattr(svc, "close"):
                        svc.close()  # its helper thread ended here, not left to the collector
            walls = {v: list(ts) for v, ts in times.items()}  # run by run, beside the CPU
            for version, ts in times.items():
                ts.sort()
                body = orjson.loads(answers[version])
                points = sum(len(s["points"]) for s in body["series"])
                print(f"{name} [{version}]: resolution={body['resolution']} points={points:,} "
                      f"p50={statistics.median(ts) * 1000:.0f} ms p95={ts[math.ceil(len(ts) * 0.95) - 1] * 1000:.0f} ms "
                      f"(CPU p50 {statistics.median(cpu[version]) * 1000:.0f} ms, wall/CPU p50 "
                      f"{statistics.median(w / max(c, 1e-9) for w, c in zip(walls[version], cpu[version])):.2f}, "
                      f"page faults p50 {statistics.median(faults[version]):,.0f})"
                      + (f"; warm-up before them {', '.join(f'{w * 1000:.0f}' for w in warmup[version])} ms"
                         if warmup[version] else ""))
            if "baseline" in answers:
                before = orjson.loads(answers["baseline"])
                for version in [v for v in versions if v != "baseline"]:
                    verdict = same(before, orjson.loads(answers[version]))
                    if answers[version] == answers["baseline"]:
                        verdict += ", the same bytes"
                    print(f"  same answer as baseline ({version}): {verdict}")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        db.close()
        db.engine.dispose()
        if schema and not args.keep:
            drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    return 0


def sent_chunks(body: dict) -> Iterator[bytes]:
    """The chunks the range handler writes of ``body`` for a client without gzip
    (console/handlers.py ``write_large_json``), each dropped once sent."""
    stream = AnswerStream(body, gzip=False)
    yield stream.first()
    while not stream.done:
        yield stream.next()


def same(a: dict, b: dict) -> str:
    """'exact', 'within 1e-9 relative' or 'NO' for two range answers."""
    if a == b:
        return "exact"
    if [s["labels"] for s in a["series"]] != [s["labels"] for s in b["series"]]:
        return "NO"
    for sa, sb in zip(a["series"], b["series"]):
        if [p[0] for p in sa["points"]] != [p[0] for p in sb["points"]]:
            return "NO"
        if any(abs(x[1] - y[1]) > 1e-9 * max(1.0, abs(x[1])) for x, y in zip(sa["points"], sb["points"])):
            return "NO"
    return "within 1e-9 relative"


if __name__ == "__main__":
    sys.exit(main())
