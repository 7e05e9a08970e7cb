"""Long-range read benchmark: the same 24 h of the agent's host data read from hot rows only
and from cold blocks (plus the hot window), on two databases loaded identically, timed in
alternation so both share the machine's load.

Reads: the range API's raw samples (``QueryService.range``, fn=raw, no step) and PromQL's
sample loading (``console.promql.storage.Storage.load``) of every series over 24 h. Data as
bench/storage.py ``--data host`` (``--load`` a file of bench/block_codec.py ``--save``),
every series renamed ``bench_host`` so one selector reads them all.

    python bench/block_reads.py --load host.json [--db sqlite|postgres] [--series 50] [--runs 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from storage import host_shapes  # noqa: E402

from console.config import SECONDS_MAX, ConsoleConfig  # noqa: E402
from console.ingest.batch import Batch, MetricIn, canonical_labels  # noqa: E402
from console.ingest.service import IngestService  # noqa: E402
from console.promql.ast import LabelMatcher  # noqa: E402
from console.promql.storage import Storage  # noqa: E402
from console.query.service import QueryService, RangeQuery  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.tiers.service import TIERS, RollupService  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402


def load(db: Database, shapes: list, now: float) -> None:
    db.migrate()
    service = IngestService(db, clock=lambda: now, config=ConsoleConfig(sample_max_age=SECONDS_MAX,
                                                                        sample_max_future=SECONDS_MAX))
    points = len(shapes[0][3])
    t0 = int(now * 1000) - points * 10_000
    for off in range(0, points, 10):
        metrics = [MetricIn("bench_host", kind, canonical_labels({**json.loads(labels), "metric": name}),
                            [(t0 + (off + p) * 10_000, values[off + p]) for p in range(min(10, points - off))])
                   for name, kind, labels, values in shapes]
        service.store(Batch("reads-1", uuid.uuid4().hex, None, None, None, "{}", metrics))
    jobs = RollupService(db, ConsoleConfig(), clock=lambda: now)
    for tier in TIERS:
        while jobs.rollup_step(tier.name):
            pass


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--load", required=True)
    ap.add_argument("--series", type=int, default=50)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    args.hours, args.collections = 24.0, 0
    shapes = host_shapes(args)
    now = time.time()
    schemas, dbs = [], {}
    for name in ("hot rows", "blocks"):
        if args.db == "postgres":
            schemas.append(f"bench_{uuid.uuid4().hex[:8]}")
            dbs[name] = Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schemas[-1]))
        else:
            dbs[name] = Database(f"sqlite:///{tempfile.mkdtemp(prefix='fd-reads-')}/fleetdeck.db")
        load(dbs[name], shapes, now)
    packer = RollupService(dbs["blocks"], ConsoleConfig(), clock=lambda: now)
    while packer.pack_step():
        pass
    try:
        service = QueryService(ConsoleConfig(), clock=lambda: now)
        q = RangeQuery(metric="bench_host", start=now - 86400, end=now, step=None, fn="raw")
        selector = (LabelMatcher("__name__", "=", "bench_host"),)
        mint, maxt = int(now * 1000) - 86_400_000, int(now * 1000)
        cases = {"range API raw": lambda s: service.range(s, q),
                 "PromQL load": lambda s: Storage(s, 10**8).load(selector, mint, maxt)}
        print(f"db={args.db} series={len(shapes)} load average at start: {os.getloadavg()}")
        for case, read in cases.items():
            times: dict[str, list[float]] = {name: [] for name in dbs}
            answers = {}
            for _ in range(args.runs):
                for name, db in dbs.items():
                    t = time.perf_counter()
                    answers[name] = db.run(read)
                    times[name].append(time.perf_counter() - t)
            same = answers["hot rows"] == answers["blocks"] if case == "range API raw" else \
                [(s.ts, s.values) for s in answers["hot rows"]] == [(s.ts, s.values) for s in answers["blocks"]]
            for name, ts in times.items():
                ts.sort()
                print(f"{case} [{name}]: p50={statistics.median(ts) * 1000:.0f} ms "
                      f"p95={ts[max(int(len(ts) * 0.95) - 1, 0)] * 1000:.0f} ms")
            print(f"  same answer: {same}")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        for db in dbs.values():
            db.close()
        for schema in schemas:
            drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
