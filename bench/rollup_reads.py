"""1m tier read benchmark: the same 24 h of 1m rollups read from ``rollup_1m`` rows and from
``rollup_1m_blocks`` (the rollup job's packing), on two databases loaded identically, timed
in alternation so both share the machine's load.

Data: the agent's real host data (bench/storage.py ``--data host``, ``--load`` a file of
bench/block_codec.py ``--save``), repeated under a ``copy`` label up to ``--series`` series,
its 1m rows computed with ``series_math.bucket_stats`` (the rollup job's in-memory form)
and written straight into ``rollup_1m``, the 1m and 1h watermarks at now; the second
database then runs the rollup job's 1m packing (``RollupService.pack_1m_step``), which
leaves the rows after the 1h watermark (up to an hour) as rows.

Reads (24 h, 1 m step, no cache of closed buckets): the range API (``QueryService.range``)
of every gauge averaged into one line and per series, of every counter's rate per series
(and, for dashboards of the last hours, the last 1 h per series and 6 h in one line);
PromQL's 1m bucket increase sums (``Storage.rollup_increases``) of every counter as one
group and per series. Each answer is compared (1e-9 relative).

    python bench/rollup_reads.py --load host.json [--db sqlite|postgres] [--series 500] [--runs 5]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage import host_shapes  # noqa: E402

from console.config import ConsoleConfig  # noqa: E402
from console.promql.storage import Storage  # noqa: E402
from console.query.series_math import bucket_stats  # noqa: E402
from console.query.service import QueryService, RangeQuery  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402
from console.tiers.service import RollupService  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402

MINUTE_MS, HOUR_MS = 60_000, 3_600_000


def load(db: Database, shapes: list, count: int, now_ms: int) -> None:
    db.migrate()
    t0 = now_ms - 86_400_000
    series, rows = [], []
    for c in range(-(-count // len(shapes))):
        for name, kind, labels, values in shapes[:count - len(series)]:
            sid = len(series) + 1
            series.append((sid, "bench_" + kind, orjson.dumps({**orjson.loads(labels), "metric": name,
                                                                "copy": str(c)}).decode(), kind))
            points = [(t0 + i * 10_000, v) for i, v in enumerate(values)]
            rows.extend((sid, *r[:5], r[5] if kind == "counter" else None) for r in bucket_stats(points, MINUTE_MS))
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        cur = raw.cursor()
        p = "?" if db.dialect == "sqlite" else "%s"
        cur.execute("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'r-1', 0, '{}')")
        cur.executemany(f"INSERT INTO series (id, host_id, name, labels, type) VALUES ({p}, 1, {p}, {p}, {p})", series)
        if db.dialect == "sqlite":
            cur.executemany("INSERT INTO rollup_1m VALUES (?,?,?,?,?,?,?)", rows)
        else:
            with cur.copy("COPY rollup_1m (series_id, ts, min, max, sum, count, increase) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        for tier, mark in (("1m", now_ms // MINUTE_MS * MINUTE_MS), ("1h", now_ms // HOUR_MS * HOUR_MS)):
            cur.execute(f"INSERT INTO rollup_watermarks VALUES ({p}, {p}, 0, 0)", (tier, mark))
        if db.dialect == "postgresql":
            cur.execute("ANALYZE")
    db.run(refresh_series_bounds)


def same(a, b) -> bool:
    """Equal, numbers within 1e-9 relative (NaN equal to NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--load", required=True)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    wanted = args.series
    args.hours, args.collections, args.series = 24.0, 0, 0
    shapes = host_shapes(args)
    now = time.time()
    now_ms = int(now * 1000)
    schemas, dbs = [], {}
    for name in ("1m rows", "1m blocks"):
        if args.db == "postgres":
            schemas.append(f"bench_{uuid.uuid4().hex[:8]}")
            dbs[name] = Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schemas[-1]))
        else:
            dbs[name] = Database(f"sqlite:///{tempfile.mkdtemp(prefix='fd-rollup-reads-')}/fleetdeck.db")
        load(dbs[name], shapes, wanted, now_ms)
    started = time.perf_counter()
    packer = RollupService(dbs["1m blocks"], ConsoleConfig(), clock=lambda: now)
    while packer.pack_1m_step():
        pass
    packing = time.perf_counter() - started
    try:
        blocks = dbs["1m blocks"].run(lambda s: s.connection().exec_driver_sql(
            "SELECT COUNT(*), SUM(count) FROM rollup_1m_blocks").one())
        gauges = dbs["1m rows"].run(lambda s: s.connection().exec_driver_sql(
            "SELECT COUNT(*) FROM series WHERE type = 'gauge'").scalar())
        counters = dbs["1m rows"].run(lambda s: list(s.connection().exec_driver_sql(
            "SELECT id FROM series WHERE type = 'counter' ORDER BY id").scalars()))
        print(f"db={args.db} series={gauges + len(counters)} ({gauges} gauges, {len(counters)} counters); packed "
              f"{blocks[1]:,} 1m rows into {blocks[0]:,} blocks in {packing:.1f} s; load average {os.getloadavg()}")
        service = QueryService(ConsoleConfig(query_cache_points=0, max_points_per_query=10**8), clock=lambda: now)
        start, end = (now_ms - 86_400_000) / 1000 + 60, now
        lo, hi = (now_ms - 86_400_000) // MINUTE_MS * MINUTE_MS + MINUTE_MS, now_ms // MINUTE_MS * MINUTE_MS

        def rng(hours: float = 24.0, **kw):
            return lambda s: service.range(s, RangeQuery(start=max(start, end - hours * 3600), end=end, step=60.0,
                                                         **kw))
        cases = {
            "range API, gauges averaged into one line": rng(metric="bench_gauge", fn="avg", group_by=(), agg="avg"),
            "range API, gauges per series": rng(metric="bench_gauge", fn="avg"),
            "range API, counters' rate per series": rng(metric="bench_counter", fn="rate"),
            "range API, last 1 h, gauges per series": rng(1.0, metric="bench_gauge", fn="avg"),
            "range API, last 6 h, gauges averaged into one line": rng(6.0, metric="bench_gauge", fn="avg",
                                                                      group_by=(), agg="avg"),
            "PromQL 1m increase sums, counters in one group":
                lambda s: Storage(s, 10**9).rollup_increases("1m", [counters], lo, hi),
            "PromQL 1m increase sums, per counter":
                lambda s: Storage(s, 10**9).rollup_increases("1m", [[c] for c in counters], lo, hi),
        }
        for case, read in cases.items():
            times: dict[str, list[float]] = {name: [] for name in dbs}
            answers = {}
            for _ in range(args.runs):
                for name, db in dbs.items():
                    t = time.perf_counter()
                    answers[name] = db.run(read)
                    times[name].append(time.perf_counter() - t)
            if case.startswith("PromQL"):  # rows of one group come in no set order
                answers = {k: [sorted(g) for g in v] for k, v in answers.items()}
            print(f"{case}: " + ", ".join(f"[{name}] p50={statistics.median(ts) * 1000:.0f} ms "
                                          f"(min {min(ts) * 1000:.0f}, max {max(ts) * 1000:.0f})"
                                          for name, ts in times.items())
                  + f"; same answer: {same(answers['1m rows'], answers['1m blocks'])}")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        for db in dbs.values():
            db.close()
        for schema in schemas:
            drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
