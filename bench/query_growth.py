"""How a range query's first load grows with the series it reads: the 24 h, 1 m step query
of bench/query.py over a small and a large kept data set (e.g. 500 and 8,000 series),
timed in one process, run by run in turn, so both sizes share the machine's load, its CPU
clock and the process's heap (as a console answering dashboards of both sizes does).

Reads two data sets that ``bench/query.py --keep PATH`` made and settled (SQLite files, or
PostgreSQL schemas with ``--db postgres``; $FLEETDECK_TEST_POSTGRES_URL). Each run is a new
QueryService (nothing cached: a dashboard's first load) whose answer is written chunk by
chunk as the handler writes it to a client without gzip; the garbage collector and glibc's
malloc are set as the console's server sets them. Each case first runs ``--warmup`` times
untimed at each size.

For each case (aggregated to one line, and per series) it prints p50 and p95 at each size,
the growth of the p50 (large p50 over small p50) and the median of the run-by-run ratios
(each run's large time over the small time of the same run), with the load average.

    python bench/query_growth.py [--db sqlite|postgres] --small PATH --large PATH [--runs 9] [--warmup 1]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.answers import AnswerStream  # noqa: E402
from console.config import ConsoleConfig  # noqa: E402
from console.query.service import QueryService, RangeQuery  # noqa: E402
from console.server import tune_gc, tune_malloc  # noqa: E402
from console.storage.database import Database  # noqa: E402
from tests.pg import create_schema  # noqa: E402


def open_kept(kind: str, keep: str) -> Database:
    if kind == "postgres":
        return Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], keep, exist_ok=True))
    if not Path(keep).exists():
        raise SystemExit(f"{keep} does not exist: make it with bench/query.py --keep {keep}")
    return Database(f"sqlite:///{keep}")


def first_load(db: Database, config: ConsoleConfig, now: float, params: dict[str, Any]) -> float:
    """Seconds for one first load: a new service, the query, its answer written in chunks."""
    svc = QueryService(config, clock=lambda: now)
    try:
        started = time.perf_counter()
        body = db.run(svc.range, RangeQuery(**params))
        stream = AnswerStream(body, gzip=False)
        stream.first()
        while not stream.done:
            stream.next()
        return time.perf_counter() - started
    finally:
        svc.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--small", required=True, help="the smaller kept data set (SQLite file or PostgreSQL schema)")
    ap.add_argument("--large", required=True, help="the larger kept data set")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be 1 or more and --warmup 0 or more")
    sets = {}
    for size in ("small", "large"):
        db = open_kept(args.db, getattr(args, size))
        with db.engine.connect() as conn:
            now = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar() / 1000
            n = conn.exec_driver_sql("SELECT count(*) FROM series WHERE name = 'q_gauge'").scalar()
        sets[size] = (db, now, n)
    biggest = max(n for _, _, n in sets.values())
    config = ConsoleConfig(max_points_per_query=20_000_000, max_series_per_query=max(2000, biggest))
    tune_gc()
    tune_malloc()
    cases = {"aggregated (avg over all)": dict(group_by=(), agg="avg"), "per series": {}}
    print(f"db={args.db} series={sets['small'][2]:,} and {sets['large'][2]:,} runs={args.runs} "
          f"load average at start: {os.getloadavg()}")
    try:
        for name, extra in cases.items():
            times: dict[str, list[float]] = {"small": [], "large": []}
            for run in range(args.warmup + args.runs):
                for size, (db, now, _) in sets.items():
                    params = dict(metric="q_gauge", start=now - 86400, end=now, step=60, fn="avg", **extra)
                    seconds = first_load(db, config, now, params)
                    if run >= args.warmup:
                        times[size].append(seconds)
            pairs = [b / a for a, b in zip(times["small"], times["large"])]
            line = []
            for size in ("small", "large"):
                ts = sorted(times[size])
                line.append(f"{sets[size][2]:,}: p50 {statistics.median(ts) * 1000:.0f} ms, "
                            f"p95 {ts[math.ceil(len(ts) * 0.95) - 1] * 1000:.0f} ms")
            growth = statistics.median(times["large"]) / statistics.median(times["small"])
            print(f"24h 1m {name}: {'; '.join(line)}; growth of the p50 {growth:.1f}x, "
                  f"run by run median {statistics.median(pairs):.1f}x (range {min(pairs):.1f}-{max(pairs):.1f}x)")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        for db, _, _ in sets.values():
            db.close()
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
