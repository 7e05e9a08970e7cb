"""Alerting benchmark: wall time of one evaluation round (every group once, as the
evaluation loop runs them) of the default rules plus generated ones, over ``--hosts``
hosts holding ``--hours`` of node_exporter-like samples every ``--interval`` seconds
(2 filesystems, memory, load, 2 CPUs and the agent's spool gauge per host).

Generated rules (``--rules`` in all, default 500) are ``node_load15 > K`` over every host,
in groups of 50, each rule its own threshold. The samples are written straight into the
tables (as bench/promql.py does); the round runs on the calling thread through the same
code the service's thread runs. PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a fresh
schema, dropped afterwards).

    python bench/alerting.py [--db sqlite|postgres] [--hosts 500] [--rules 500] [--hours 6]
                             [--interval 60] [--runs 3]
"""
from __future__ import annotations

import argparse
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

from console.alerting.service import AlertingService  # noqa: E402
from console.config import AlertingConfig  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.hot_samples import INSERT_SQLITE  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402


def series_of(host: int):
    """(name, labels, kind, value(t_index)) of one host."""
    rnd = random.Random(host)
    out = []
    for m, mount in enumerate(("/", "/var")):
        labels = {"device": f"/dev/sda{m}", "fstype": "ext4", "mountpoint": mount}
        size, start = 1e11, rnd.uniform(0.2, 0.9) * 1e11
        out += [("node_filesystem_avail_bytes", labels, lambda i, s=start: s - i * 1e5),
                ("node_filesystem_size_bytes", labels, lambda i, s=size: s),
                ("node_filesystem_readonly", labels, lambda i: 0.0),
                ("node_filesystem_files", labels, lambda i: 6e6),
                ("node_filesystem_files_free", labels, lambda i: 5e6)]
    out += [("node_memory_MemAvailable_bytes", {}, lambda i: 2e9 + (i % 7) * 1e7),
            ("node_memory_MemTotal_bytes", {}, lambda i: 8e9),
            ("node_load15", {}, lambda i, b=rnd.uniform(0, 3): b + (i % 5) * 0.1),
            ("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, lambda i: 1e5 + i * 50.0),
            ("node_cpu_seconds_total", {"cpu": "1", "mode": "idle"}, lambda i: 1e5 + i * 50.0),
            ("fleetdeck_agent_batches_queued", {}, lambda i: 0.0)]
    return out


def load(db: Database, hosts: int, start_s: int, points: int, interval: int, now: float) -> int:
    ph = "?" if db.dialect == "sqlite" else "%s"
    sid, count = 0, 0
    with db.engine.begin() as conn:
        raw = conn.connection.driver_connection
        cur = raw.cursor()
        cur.executemany(f"INSERT INTO hosts (id, name, first_seen, last_seen, interval_s, labels) "
                        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, '{{}}')",
                        [(h + 1, f"bench-{h:03d}", start_s, now, interval) for h in range(hosts)])
        for h in range(hosts):
            rows, samples = [], []
            for name, labels, value in series_of(h):
                sid += 1
                rows.append((sid, h + 1, name, orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()))
                samples += [(sid, (start_s + i * interval) * 1000, value(i)) for i in range(points)]
            cur.executemany(f"INSERT INTO series (id, host_id, name, labels, type) VALUES ({ph}, {ph}, {ph}, {ph}, "
                            f"'gauge')", rows)
            cur.executemany(INSERT_SQLITE if db.dialect == "sqlite" else
                            "INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s)", samples)
            count += len(samples)
        if db.dialect == "postgresql":
            cur.execute("ANALYZE")
    return count


def write_rules(path: Path, generated: int) -> Path:
    """``generated`` rules ``node_load15 > K`` (``for: 5m``, each its own K) in groups of 50
    evaluated every 15 s, written to ``path`` in Prometheus' rule file format."""
    lines = ["groups:"]
    for g in range(0, generated, 50):
        lines += [f"  - name: generated-{g // 50}", "    interval: 15s", "    rules:"]
        for r in range(g, min(g + 50, generated)):
            lines += [f"      - alert: Load{r}", f"        expr: node_load15 > {1 + r / 100:g}",
                      "        for: 5m"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--rules", type=int, default=500)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--interval", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fd-alert-bench-"))
    schema = None
    if args.db == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        url = create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    else:
        url = f"sqlite:///{work / 'bench.db'}"
    try:
        db = Database(url)
        db.migrate()
        now = time.time()
        points = int(args.hours * 3600 / args.interval)
        start_s = int(now) - points * args.interval
        t = time.perf_counter()
        n = load(db, args.hosts, start_s, points, args.interval, now)
        db.run(refresh_series_bounds)  # the rows went in around the ingest writer
        print(f"loaded {n:,} samples for {args.hosts} hosts in {time.perf_counter() - t:.1f} s", flush=True)
        rules = write_rules(work / "generated.yml", args.rules - 8)  # the shipped file holds 8
        service = AlertingService(db, AlertingConfig(rule_files=[str(rules)], evaluation_interval=15.0),
                                  max_samples=50_000_000, query_timeout_s=120.0, host_interval_s=args.interval,
                                  down_after_intervals=3.0, clock=lambda: now)
        assert not service.file_errors, service.file_errors
        total_rules = sum(len(g.rules) for g in service.groups.values())
        times = []
        for run in range(args.runs):
            t = time.perf_counter()
            firing = 0
            for runtime in service.groups.values():
                service._evaluate(runtime, now + run * 15)
            for runtime in service.groups.values():
                for state in runtime.rules:
                    assert state.health == "ok", (state.rule.name, state.last_error)
                    firing += len(state.active)
            times.append(time.perf_counter() - t)
            print(f"round {run + 1}: {times[-1]:.2f} s ({total_rules} rules, {firing} active alerts)", flush=True)
        print(f"{args.db}: {total_rules} rules over {args.hosts} hosts, median round {statistics.median(times):.2f} s")
        db.close()
    finally:
        if schema:
            drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
