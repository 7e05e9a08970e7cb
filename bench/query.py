"""Query benchmark (SQLite): p50/p95 of range queries through QueryService, in process.

- 24 h x 500 series at a 1-minute step (1m tier): aggregated to one series, and per series;
- 1 h of raw samples x 100 series (10 s interval).

    python bench/query.py [--runs 20]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import ConsoleConfig  # noqa: E402
from console.query.service import QueryService, RangeQuery  # noqa: E402
from console.storage.database import Database  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fd-query-"))
    db = Database(f"sqlite:///{work / 'q.db'}")
    db.migrate()
    now = time.time()
    now_ms = int(now // 60 * 60 * 1000)
    rnd = random.Random(2)
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        raw.execute("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'q-1', 0, '{}')")
        raw.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (?, 1, ?, ?, 'gauge')",
                        [(i + 1, "q_gauge", orjson.dumps({"i": str(i)}).decode()) for i in range(500)])
        raw.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (?, 1, ?, ?, 'gauge')",
                        [(1000 + i, "q_raw", orjson.dumps({"i": str(i)}).decode()) for i in range(100)])
        rows = []
        for sid in range(1, 501):
            for m in range(1440):
                v = rnd.random() * 100
                rows.append((sid, now_ms - (1440 - m) * 60_000, v, v + 5, v * 6 + 10, 6))
        raw.executemany("INSERT INTO rollup_1m (series_id, ts, min, max, sum, count) VALUES (?,?,?,?,?,?)", rows)
        raw.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?,?,?)",
                        [(1000 + i, now_ms - 3_600_000 + k * 10_000, rnd.random()) for i in range(100) for k in range(360)])
        raw.execute("INSERT INTO rollup_watermarks VALUES ('1m', ?, 0, 0)", (now_ms,))
    svc = QueryService(ConsoleConfig(max_points_per_query=2_000_000), clock=lambda: now)
    cases = {
        "24h x 500 series, 1m step, agg=avg over all": RangeQuery("q_gauge", now - 86400, now, 60, "avg",
                                                                 group_by=(), agg="avg"),
        "24h x 500 series, 1m step, per series": RangeQuery("q_gauge", now - 86400, now, 60, "avg"),
        "1h raw x 100 series": RangeQuery("q_raw", now - 3600, now, None, "raw"),
    }
    for name, q in cases.items():
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            body = db.run(svc.range, q)
            orjson.dumps(body)  # the handler's serialisation is part of the answer
            times.append(time.perf_counter() - t)
        times.sort()
        points = sum(len(s["points"]) for s in body["series"])
        print(f"{name}: resolution={body['resolution']} points={points:,} "
              f"p50={statistics.median(times) * 1000:.0f} ms p95={times[int(len(times) * 0.95) - 1] * 1000:.0f} ms")
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
