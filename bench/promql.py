"""PromQL benchmark: p50/p95 of the issue's range query through the engine, in process,
including the JSON shaping the handler does:

    sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))  over 24 h at a 1 m step

for ``--hosts`` hosts x 2 CPUs x 4 modes (idle, user, system, iowait), a sample every
``--interval`` seconds. ``--quick`` is a small variant (10 hosts, 2 h) for a fast check.
``--prometheus`` also times the same query in a real Prometheus holding the same samples
(backfilled with ``promtool tsdb create-blocks-from openmetrics``) and prints the ratio.
PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a private schema, dropped afterwards).

    python bench/promql.py [--db sqlite|postgres] [--hosts 100] [--hours 24] [--interval 10]
                           [--runs 10] [--quick] [--prometheus]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.promql.ast import parse  # noqa: E402
from console.promql.engine import evaluate_range  # noqa: E402
from console.promql.service import result_json  # noqa: E402
from console.promql.storage import Storage  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

QUERY = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
MODES = (("idle", 9.0), ("user", 0.7), ("system", 0.2), ("iowait", 0.05))


def generate(hosts: int, start_ms: int, end_ms: int, interval_ms: int):
    """Yield ``(series_id, host, cpu, mode, [(ts, value), ...])``."""
    rnd = random.Random(7)
    sid = 0
    for h in range(hosts):
        for cpu in ("0", "1"):
            for mode, per_s in MODES:
                sid += 1
                value, points = rnd.random() * 1e5, []
                ts = start_ms + rnd.randrange(interval_ms)
                while ts <= end_ms:
                    value += per_s * interval_ms / 1000 * (0.5 + rnd.random())
                    points.append((ts, round(value, 2)))
                    ts += interval_ms
                yield sid, f"bench-{h:03d}", cpu, mode, points


def load(db: Database, rows: list) -> int:
    hosts = sorted({r[1] for r in rows})
    host_id = {h: i + 1 for i, h in enumerate(hosts)}
    series = [(sid, host_id[host], "node_cpu_seconds_total", orjson.dumps({"cpu": cpu, "mode": mode}).decode())
              for sid, host, cpu, mode, _ in rows]
    count = 0
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        if db.dialect == "sqlite":
            raw.executemany("INSERT INTO hosts (id, name, first_seen, labels) VALUES (?, ?, 0, '{}')",
                            [(i, h) for h, i in host_id.items()])
            raw.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (?, ?, ?, ?, 'counter')",
                            series)
            for sid, *_rest, points in rows:
                raw.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?,?,?)",
                                [(sid, t, v) for t, v in points])
                count += len(points)
            return count
        cur = raw.cursor()
        cur.executemany("INSERT INTO hosts (id, name, first_seen, labels) VALUES (%s, %s, 0, '{}')",
                        [(i, h) for h, i in host_id.items()])
        cur.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (%s, %s, %s, %s, 'counter')",
                        series)
        with cur.copy("COPY samples (series_id, ts, value) FROM STDIN") as copy:
            for sid, *_rest, points in rows:
                for t, v in points:
                    copy.write_row((sid, t, v))
                count += len(points)
        cur.execute("ANALYZE")
    return count


def prometheus_times(rows: list, start_s: int, end_s: int, runs: int) -> list[float]:
    from tests.integration.prom_backfill import BackfilledPrometheus, openmetrics

    work = Path(tempfile.mkdtemp(prefix="fd-prom-bench-"))
    series = [("node_cpu_seconds_total", {"cpu": cpu, "mode": mode, "host": host, "instance": host, "job": "node"},
               points) for _sid, host, cpu, mode, points in rows]
    prom = BackfilledPrometheus(work, openmetrics(series))
    try:
        q = urllib.parse.urlencode({"query": QUERY, "start": start_s, "end": end_s, "step": 60})
        times = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            body = json.load(urllib.request.urlopen(f"{prom.url}/api/v1/query_range?{q}", timeout=300))
            times.append(time.perf_counter() - t)
            assert body["status"] == "success"
        return sorted(times[1:])  # the first run warms Prometheus' caches
    finally:
        prom.close()
        shutil.rmtree(work, ignore_errors=True)


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``ordered`` by the nearest-rank method."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run(db: Database, args: argparse.Namespace) -> None:
    db.migrate()
    end_s = int(time.time()) // 60 * 60 - 7200
    start_s = end_s - int(args.hours * 3600)
    rows = list(generate(args.hosts, (start_s - 600) * 1000, end_s * 1000, int(args.interval * 1000)))
    t = time.perf_counter()
    samples = load(db, rows)
    db.run(refresh_series_bounds)  # the rows went in around the ingest writer
    print(f"db={args.db} hosts={args.hosts} series={len(rows)} samples={samples:,} "
          f"(loaded in {time.perf_counter() - t:.0f} s); load average {os.getloadavg()}")
    node = parse(QUERY)
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        result = db.run(lambda s: evaluate_range(Storage(s, 10**9), node, start_s * 1000, end_s * 1000, 60_000,
                                                 time.monotonic() + 600, 10**9))
        body = orjson.dumps(result_json(result))  # the handler's shaping and encoding
        times.append(time.perf_counter() - t)
    times.sort()
    points = sum(len(s.ts) for s in result.value)
    p50, p95 = statistics.median(times), nearest_rank(times, 0.95)
    print(f"{QUERY} over {args.hours:g} h at 1m: {len(result.value)} series, {points:,} points, "
          f"{len(body):,} bytes; p50={p50 * 1000:.0f} ms p95={p95 * 1000:.0f} ms")
    if args.prometheus:
        ptimes = prometheus_times(rows, start_s, end_s, args.runs)
        pp50, pp95 = statistics.median(ptimes), nearest_rank(ptimes, 0.95)
        print(f"prometheus (HTTP): p50={pp50 * 1000:.0f} ms p95={pp95 * 1000:.0f} ms; "
              f"ratio p95 {p95 / pp95:.1f}x")
    print(f"load average at end: {os.getloadavg()}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (the agent's default)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="10 hosts over 2 h")
    ap.add_argument("--prometheus", action="store_true", help="time a real Prometheus on the same samples")
    args = ap.parse_args()
    if args.quick:
        args.hosts, args.hours = 10, 2.0
    base_url = os.environ["FLEETDECK_TEST_POSTGRES_URL"] if args.db == "postgres" else None
    with schema_if_url(base_url) as url:
        db = Database(url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='fd-promql-')) / 'q.db'}")
        try:
            run(db, args)
        finally:
            db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
