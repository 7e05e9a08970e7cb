"""Reading a day of 1m blocks for a query: the whole list first, then decoding (as
``rollup_blocks.read_many`` gives it), against the blocks decoded as the database sends
them (``rollup_blocks.many_with_end``: on PostgreSQL psycopg's single-row mode, each block
decoded while the server sends the next), alternating run by run; each run decodes every
series' blocks of the last day up to the newest block's end (the ``sum`` column, as an
average reads them) through ``rollup_blocks.load``, as a query does before it reads the
rows after them.

The data set is one ``bench/query.py --keep`` made and settled: a SQLite file, or a
PostgreSQL schema with ``--db postgres`` ($FLEETDECK_TEST_POSTGRES_URL).

    python bench/block_stream.py --keep /tmp/q8000.db [--runs 5]
    python bench/block_stream.py --db postgres --keep bench_q37_8000 [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.storage import rollup_blocks  # noqa: E402
from console.storage.database import Database  # noqa: E402
from tests.pg import create_schema  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--keep", required=True, help="the SQLite file or PostgreSQL schema bench/query.py --keep made")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be 1 or more")
    if args.db == "postgres":
        db = Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], args.keep, exist_ok=True))
    else:
        if not Path(args.keep).exists():
            ap.error(f"{args.keep}: no such data set; make it with bench/query.py --keep {args.keep}")
        db = Database(f"sqlite:///{args.keep}")
    try:
        with db.engine.connect() as conn:
            now = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar()
            ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM series WHERE name = 'q_gauge' ORDER BY id")]
        lo = now - 86_400_000
        # Up to the newest block's end, as a query reads the blocks (the rows after it are
        # read apart, in SQL): the 1m rows of the window are then few.
        hi = db.run(lambda s: rollup_blocks.many_with_end(s, ids, lo, now)[0])
        assert hi is not None, "no 1m blocks in the last day: make the data set with bench/query.py"

        def whole(session) -> int:
            cold = rollup_blocks.read_many(session, ids, lo, hi)
            return len(rollup_blocks.load(session, ids, lo, hi, cold, ("sum",)))

        def streamed(session) -> int:
            _, cold = rollup_blocks.many_with_end(session, ids, lo, hi)
            return len(rollup_blocks.load(session, ids, lo, hi, cold, ("sum",)))

        ways: dict[str, Callable] = {"whole list, then decode": whole, "as they arrive": streamed}
        times: dict[str, list[float]] = {w: [] for w in ways}
        cpu: dict[str, list[float]] = {w: [] for w in ways}
        print(f"db={args.db} series={len(ids)} runs={args.runs} (one warm-up each) "
              f"load average at start: {os.getloadavg()}")
        for run in range(args.runs + 1):
            for way, fn in ways.items():
                t, c = time.perf_counter(), time.process_time()
                found = db.run(fn)
                if run:
                    times[way].append(time.perf_counter() - t)
                    cpu[way].append(time.process_time() - c)
                assert found == len(ids), f"{way}: {found} series decoded of {len(ids)}"
        for way in ways:
            print(f"{way}: p50 {statistics.median(times[way]) * 1000:.0f} ms "
                  f"(runs {', '.join(f'{x * 1000:.0f}' for x in times[way])}), "
                  f"CPU p50 {statistics.median(cpu[way]) * 1000:.0f} ms")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        db.close()
        db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
