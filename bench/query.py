"""Query benchmark: p50/p95 of range queries through QueryService, in process, including
the JSON encoding the handler does.

- 24 h x 500 series at a 1-minute step (1m tier): aggregated to one series, and per series;
- 1 h of raw samples x 100 series (10 s interval).

``--baseline FILE`` also times another version of ``console/query/service.py`` (e.g.
``git show main:console/query/service.py > /tmp/old_service.py``) on the same database,
alternating run by run, so before/after share the machine's load.
PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a fresh schema, dropped afterwards).

    python bench/query.py [--db sqlite|postgres] [--runs 20] [--baseline FILE]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import ConsoleConfig  # noqa: E402
from console.query.service import QueryService  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402


def load_rows(db: Database, now_ms: int) -> None:
    rnd = random.Random(2)
    series = [(i + 1, "q_gauge", orjson.dumps({"i": str(i)}).decode()) for i in range(500)]
    series += [(1000 + i, "q_raw", orjson.dumps({"i": str(i)}).decode()) for i in range(100)]
    rollups = []
    for sid in range(1, 501):
        for m in range(1440):
            v = rnd.random() * 100
            rollups.append((sid, now_ms - (1440 - m) * 60_000, v, v + 5, v * 6 + 10, 6))
    samples = [(1000 + i, now_ms - 3_600_000 + k * 10_000, rnd.random()) for i in range(100) for k in range(360)]
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        if db.dialect == "sqlite":
            raw.execute("INSERT INTO hosts (id, name, first_seen, labels) VALUES (1, 'q-1', 0, '{}')")
            raw.executemany("INSERT INTO series (id, host_id, name, labels, type) VALUES (?, 1, ?, ?, 'gauge')", series)
            raw.executemany("INSERT INTO rollup_1m (series_id, ts, min, max, sum, count) VALUES (?,?,?,?,?,?)", rollups)
            raw.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?,?,?)", samples)
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
        cur.execute("ANALYZE")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--baseline", help="another service.py to time beside this one")
    args = ap.parse_args()
    schema = None
    if args.db == "postgres":
        import psycopg

        url = os.environ["FLEETDECK_TEST_POSTGRES_URL"]
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        db = Database(f"{url}?options=-csearch_path%3D{schema}")
    else:
        db = Database(f"sqlite:///{Path(tempfile.mkdtemp(prefix='fd-query-')) / 'q.db'}")
    try:
        db.migrate()
        now = time.time()
        load_rows(db, int(now // 60 * 60 * 1000))
        db.run(refresh_series_bounds)  # the rows went in around the ingest writer
        config = ConsoleConfig(max_points_per_query=2_000_000)
        versions = {"new": QueryService(config, clock=lambda: now)}
        if args.baseline:
            spec = importlib.util.spec_from_file_location("baseline_service", args.baseline)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            versions = {"baseline": module.QueryService(config, clock=lambda: now), **versions}
        cases = {
            "24h x 500 series, 1m step, agg=avg over all": dict(metric="q_gauge", start=now - 86400, end=now, step=60,
                                                               fn="avg", group_by=(), agg="avg"),
            "24h x 500 series, 1m step, per series": dict(metric="q_gauge", start=now - 86400, end=now, step=60,
                                                         fn="avg"),
            "1h raw x 100 series": dict(metric="q_raw", start=now - 3600, end=now, step=None, fn="raw"),
        }
        print(f"db={args.db} runs={args.runs} load average at start: {os.getloadavg()}")
        for name, params in cases.items():
            times: dict[str, list[float]] = {v: [] for v in versions}
            answers = {}
            for _ in range(args.runs):
                for version, svc in versions.items():
                    q = sys.modules[type(svc).__module__].RangeQuery(**params)
                    t = time.perf_counter()
                    body = db.run(svc.range, q)
                    encoded = orjson.dumps(body)  # the handler's serialisation is part of the answer
                    times[version].append(time.perf_counter() - t)
                    answers[version] = encoded
            for version, ts in times.items():
                ts.sort()
                body = orjson.loads(answers[version])
                points = sum(len(s["points"]) for s in body["series"])
                print(f"{name} [{version}]: resolution={body['resolution']} points={points:,} "
                      f"p50={statistics.median(ts) * 1000:.0f} ms p95={ts[int(len(ts) * 0.95) - 1] * 1000:.0f} ms")
            if len(answers) == 2:
                old, new = (orjson.loads(a) for a in answers.values())
                print(f"  same answer: {same(old, new)}")
        print(f"load average at end: {os.getloadavg()}")
    finally:
        db.close()
        db.engine.dispose()
        if schema:
            import psycopg

            with psycopg.connect(os.environ["FLEETDECK_TEST_POSTGRES_URL"].replace("+psycopg", ""),
                                 autocommit=True) as c:
                c.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


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
