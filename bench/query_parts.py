"""Where a range query's first load goes: each part of the 24 h x N series, 1 m step query
timed on its own, median over the runs, in process.

Reads a data set that ``bench/query.py --keep PATH`` made and settled (a SQLite file, or a
PostgreSQL schema with ``--db postgres``; $FLEETDECK_TEST_POSTGRES_URL). Each run is a new
QueryService (nothing cached: a dashboard's first load), the garbage collector and glibc's
malloc set as the console's server sets them, and the answer written chunk by chunk as the
handler writes it to a client without gzip. The parts are the service's own functions,
wrapped with a timer (time in a wrapped function called from another wrapped one counts in
both); "total" is the query and its writing together, as bench/query.py times it.

    python bench/query_parts.py [--db sqlite|postgres] --keep PATH [--runs 20] [--agg] [--no-helper]

Comparing two sizes (e.g. 500 and 8,000 series) part by part shows which parts grow faster
than the series.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.answers import AnswerStream  # noqa: E402
from console.config import ConsoleConfig  # noqa: E402
from console.query import service  # noqa: E402
from console.server import tune_gc, tune_malloc  # noqa: E402
from console.storage import rollup_blocks  # noqa: E402
from console.storage.database import Database  # noqa: E402
from tests.pg import create_schema  # noqa: E402

PARTS: list[tuple[Any, str, str]] = [  # (owner, function, what it is)
    (service.QueryService, "_select_series", "choosing the series"),
    (rollup_blocks, "many_with_end", "asking for the 1m blocks (SQLite: reading them)"),
    (rollup_blocks, "decode_joined", "decoding the blocks (pcodec)"),
    (rollup_blocks, "_rows_of", "the 1m rows among the blocks"),
    (service, "_rollup_numpy", "decoding the blocks and the step values, series by series"),
    (service, "_rows_sql", "the 1m rows after the blocks, in SQL (aggregated: on the helper thread, beside the blocks)"),
    (service.QueryService, "_closed_points", "the closed buckets in all (blocks, and the 1m rows after them)"),
    (service.QueryService, "_load_points", "the open tail's raw samples"),
    (service, "_encoded", "the points' JSON"),
]


def timed(spent: dict[str, float], name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--keep", required=True, help="the SQLite file or PostgreSQL schema bench/query.py --keep made")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--agg", action="store_true", help="the aggregated query (avg over all), not per series")
    ap.add_argument("--no-helper", action="store_true",
                    help="the helper thread closed: every part read one after the other on the query's own connection")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be 1 or more")
    if args.db == "postgres":
        db = Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], args.keep, exist_ok=True))
    elif Path(args.keep).exists():
        db = Database(f"sqlite:///{args.keep}")
    else:
        ap.error(f"{args.keep} does not exist: make it with bench/query.py --keep {args.keep}")
    spent: dict[str, float] = {}
    for owner, name, _ in PARTS:
        setattr(owner, name, timed(spent, name, getattr(owner, name)))
    try:
        with db.engine.connect() as conn:
            now = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar() / 1000
            n = conn.exec_driver_sql("SELECT count(*) FROM series WHERE name = 'q_gauge'").scalar()
        config = ConsoleConfig(max_points_per_query=20_000_000, max_series_per_query=max(2000, n))
        tune_gc()
        tune_malloc()
        params: dict[str, Any] = dict(metric="q_gauge", start=now - 86400, end=now, step=60, fn="avg")
        if args.agg:
            params.update(group_by=(), agg="avg")
        runs: dict[str, list[float]] = {}
        print(f"db={args.db} series={n:,} {'aggregated' if args.agg else 'per series'} runs={args.runs} "
              f"load average at start: {os.getloadavg()}")
        for run in range(args.runs + 1):  # the first untimed: the process's first query loads its code
            svc = service.QueryService(config, clock=lambda: now)
            if args.no_helper:
                svc.close()  # a closed helper: the query reads everything itself
            spent.clear()
            started = time.perf_counter()
            body = db.run(svc.range, service.RangeQuery(**params))
            stream = AnswerStream(body, False)
            stream.first()
            while not stream.done:
                stream.next()
            spent["total"] = time.perf_counter() - started
            svc.close()
            body = stream = None
            if run:
                for name, seconds in spent.items():
                    runs.setdefault(name, []).append(seconds)
        for owner, name, what in PARTS + [(None, "total", "the query and its answer written")]:
            if name in runs:
                print(f"{name:16s} p50 {statistics.median(runs[name]) * 1000:9.1f} ms  {what}")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        db.close()
        db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
