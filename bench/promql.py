"""PromQL benchmark: p50/p95 of the issue's range query, in the console and in a real
Prometheus holding the same samples:

    sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))  over 24 h at a 1 m step

Data: ``--hosts`` hosts in the agent's shape of ``node_cpu_seconds_total`` (``--cpus`` CPUs
x the 8 modes of collectors/host.py), a sample every ``--interval`` seconds over ``--hours``,
each counter growing at its mode's rate with +-50 % noise per sample. Generated once into
``--data-dir`` and reused by later runs (``--fresh`` regenerates):

- the console database (SQLite file, or a PostgreSQL schema of $FLEETDECK_TEST_POSTGRES_URL
  named after the data set, kept for reuse; ``--drop`` removes it) filled through
  ``IngestService.store`` (the ingest API's storage call) in time order, one batch per host
  per 10 minutes, with the console's rollup job (``RollupService.run_all``: 1m and 1h
  rollups, cold blocks, retention) run every 30 simulated minutes and at the end;
- a Prometheus TSDB of the same samples (``promtool tsdb create-blocks-from openmetrics``).

Each run then times, in alternation (pairs), the console's evaluation (in process, the
handler's JSON shaping and encoding included) and the same ``query_range`` over HTTP on a
real Prometheus started on that TSDB (its first answer, which warms its caches, is not
counted). The rollup job keeps cross-series rows (``rollup_1m_host``), which the console
reads for this query; every pair times a first load (nothing kept) and the query
again as served, through the cache of closed buckets' sums the console keeps
(``query_cache_points``; the first pair's fills it); ``--per-series`` also times it reading the per-series 1m rows in
each pair (as before it read the host rows), ``--per-series-only`` times that alone.
``--raw`` times the console with the rollup tiers off (the raw-sample path, as
before the tiers were used), ``--no-prometheus`` skips Prometheus. Before the pairs the
garbage collector is set as the console's server sets it once started
(console/server.py ``tune_gc``: what set-up allocated frozen, the youngest generation
collected less often), so the first query does not pay a full collection of the
data set's set-up; ``--no-server-gc`` leaves it as a bare process has it. glibc's malloc
is set as the server sets it too (``tune_malloc``: fixed mmap and trim thresholds, so an
answer's memory stays in the heap from one query to the next); ``--no-server-malloc``
leaves a bare process's thresholds. Load averages are printed.

    python bench/promql.py [--db sqlite|postgres] [--hosts 100] [--cpus 2] [--hours 24]
                           [--interval 10] [--pairs 5] [--raw] [--per-series | --per-series-only]
                           [--no-prometheus] [--no-server-gc] [--no-server-malloc] [--fresh] [--drop]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SECONDS_MAX, ConsoleConfig  # noqa: E402
from console.ingest.batch import Batch, MetricIn, canonical_labels  # noqa: E402
from console.ingest.service import IngestService  # noqa: E402
from console.promql.ast import parse  # noqa: E402
from console.promql.engine import evaluate_range  # noqa: E402
from console.promql.rollups import ClosedSumsCache  # noqa: E402
from console.promql.service import result_json  # noqa: E402
from console.promql.storage import Storage  # noqa: E402
from console.server import tune_gc, tune_malloc  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.tiers.service import RollupService  # noqa: E402
from tests.integration.prom_backfill import TsdbPrometheus  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402

QUERY = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
# collectors/host.py's CPU_MODES with a typical share of a CPU-second each
MODES = (("user", 0.12), ("nice", 0.005), ("system", 0.05), ("idle", 0.8), ("iowait", 0.01),
         ("irq", 0.001), ("softirq", 0.004), ("steal", 0.01))
BATCH_MINUTES = 10
JOBS_EVERY_MINUTES = 30


def data_set(args: argparse.Namespace) -> tuple[str, Path]:
    name = f"h{args.hosts}c{args.cpus}t{args.hours:g}i{args.interval:g}".replace(".", "_")
    return name, Path(args.data_dir) / name


def series_points(args: argparse.Namespace, start_ms: int, end_ms: int):
    """Yield ``(host, cpu, mode, [(ts, value), ...])`` for every series, in a fixed order."""
    interval_ms = int(args.interval * 1000)
    rnd = random.Random(7)
    for h in range(args.hosts):
        phase = rnd.randrange(interval_ms) // 1000 * 1000  # each host collects at its own second
        for cpu in range(args.cpus):
            for mode, per_s in MODES:
                value, points = round(rnd.random() * 1e5, 2), []
                ts = start_ms + phase
                while ts <= end_ms:
                    points.append((ts, value))
                    value = round(value + per_s * interval_ms / 1000 * (0.5 + rnd.random()), 2)
                    ts += interval_ms
                yield f"bench-{h:03d}", str(cpu), mode, points


def console_db(args: argparse.Namespace, name: str, folder: Path) -> tuple[Database, str | None]:
    if args.db == "sqlite":
        return Database(f"sqlite:///{folder / 'console.db'}"), None
    schema = f"bench_promql_{name}"
    return Database(create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema, exist_ok=True)), schema


def settle(db: Database, meta: dict) -> None:
    """A data set made by an earlier tree brought to this one: its schema migrated and the
    rollup job run as a console would some hours after the last sample (packing what this
    tree packs), so a read is timed over the storage this tree keeps."""
    db.migrate()
    RollupService(db, ConsoleConfig(rollup_1m_host=True), clock=lambda: meta["end_ms"] / 1000 + 3 * 3600).run_all()


def fill_console(args: argparse.Namespace, db: Database, meta: dict) -> None:
    """Every series through IngestService.store in time order, the rollup job run as it goes."""
    db.migrate()
    start_ms, end_ms = meta["data_start_ms"], meta["end_ms"]
    per_host: dict[str, list] = {}
    for host, cpu, mode, points in series_points(args, start_ms, end_ms):
        per_host.setdefault(host, []).append((canonical_labels({"cpu": cpu, "mode": mode}), points))
    clock = [start_ms / 1000]
    window = ConsoleConfig(sample_max_age=SECONDS_MAX, sample_max_future=SECONDS_MAX)  # accept any stamp
    ingest = IngestService(db, clock=lambda: clock[0], config=window)
    # Cross-series rollups on, so one data set serves both read paths (--host-rollups).
    jobs = RollupService(db, ConsoleConfig(rollup_1m_host=True), clock=lambda: clock[0])
    chunk = BATCH_MINUTES * 60_000
    began, count = time.perf_counter(), 0
    for lo in range(start_ms, end_ms + 1, chunk):
        for host, series in per_host.items():
            metrics = []
            for labels, points in series:
                part = [p for p in points if lo <= p[0] < lo + chunk]
                if part:
                    metrics.append(MetricIn("node_cpu_seconds_total", "counter", labels, part))
                    count += len(part)
            ingest.store(Batch(host, uuid.uuid4().hex, None, None, None, "{}", metrics))
        clock[0] = (lo + chunk) / 1000
        if (lo - start_ms) % (JOBS_EVERY_MINUTES * 60_000) == 0:
            jobs.run_all()
    clock[0] = end_ms / 1000 + 120  # past the rollup delay: every bucket up to the end rolled up
    jobs.run_all()
    print(f"stored {count:,} samples through IngestService.store with the rollup job "
          f"in {time.perf_counter() - began:.0f} s")


def fill_prometheus(args: argparse.Namespace, folder: Path, meta: dict) -> None:
    text = folder / "data.om"
    with open(text, "w") as f:
        f.write("# TYPE node_cpu_seconds_total gauge\n")  # rate() reads it all the same
        for host, cpu, mode, points in series_points(args, meta["data_start_ms"], meta["end_ms"]):
            labels = f'cpu="{cpu}",host="{host}",instance="{host}",job="node",mode="{mode}"'
            f.writelines(f"node_cpu_seconds_total{{{labels}}} {v!r} {ts / 1000:.3f}\n" for ts, v in points)
        f.write("# EOF\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(text), str(folder / "tsdb")],
                   check=True, capture_output=True, timeout=1800)
    text.unlink()


class Prometheus(TsdbPrometheus):
    """A real Prometheus on the data set's TSDB (written by :func:`fill_prometheus`)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, retention="3650d", ready_s=120.0)  # the data set is kept for reuse

    def query_range(self, query: str, start_s: int, end_s: int) -> tuple[float, dict]:
        q = urllib.parse.urlencode({"query": query, "start": start_s, "end": end_s, "step": 60})
        t = time.perf_counter()
        body = json.load(urllib.request.urlopen(f"{self.url}/api/v1/query_range?{q}", timeout=300))
        elapsed = time.perf_counter() - t
        if body["status"] != "success":
            raise RuntimeError(body)
        return elapsed, body["data"]

    def cpu_seconds(self) -> float:
        """User + system CPU the Prometheus process has used so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mark_done(meta_file: Path, part: str) -> None:
    """Record in the data set's meta.json that ``part`` is generated (read again first: runs
    on the other database may have added theirs meanwhile)."""
    meta = json.loads(meta_file.read_text())
    meta[part] = True
    meta_file.write_text(json.dumps(meta))


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``ordered`` by the nearest-rank method."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def console_query(db: Database, start_s: int, end_s: int, rollups: bool, host_rollups: bool = True,
                  cache: ClosedSumsCache | None = None) -> tuple[float, dict]:
    node = parse(QUERY)
    t = time.perf_counter()
    storage = lambda s: Storage(s, 10**9, rollups=rollups, host_rollups=host_rollups,  # noqa: E731
                                closed_sums=cache)
    result = db.run(lambda s: evaluate_range(storage(s), node, start_s * 1000,
                                             end_s * 1000, 60_000, time.monotonic() + 600, 10**9))
    data = result_json(result)
    orjson.dumps(data)  # the handler's shaping and encoding
    return time.perf_counter() - t, data


def compare(ours: dict, theirs: dict) -> str:
    """Largest relative difference between the two answers, over points both have."""
    mine = {orjson.dumps(s["metric"], option=orjson.OPT_SORT_KEYS): dict(s["values"]) for s in ours["result"]}
    worst, both, only = 0.0, 0, 0
    for s in theirs["result"]:
        key = orjson.dumps({k: v for k, v in s["metric"].items()}, option=orjson.OPT_SORT_KEYS)
        points = mine.get(key, {})
        for t, v in s["values"]:
            if t not in points:
                only += 1
                continue
            both += 1
            a, b = float(points[t]), float(v)
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    return f"{len(ours['result'])} vs {len(theirs['result'])} series, {both:,} points compared, " \
           f"{only} only in Prometheus, max relative difference {worst:.2%}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (the agent's default)")
    ap.add_argument("--pairs", type=int, default=5, help="0: generate the data set only")
    ap.add_argument("--data-dir", default="/tmp/fd-promql-bench")
    ap.add_argument("--raw", action="store_true", help="the console without rollup tiers (raw samples only)")
    ap.add_argument("--no-prometheus", action="store_true")
    ap.add_argument("--per-series", action="store_true",
                    help="also time, in each pair, the console reading the per-series 1m rows instead of the "
                         "cross-series host rows (rollup_1m_host), as before they were read")
    ap.add_argument("--per-series-only", action="store_true",
                    help="the console reads the per-series 1m rows only (the host rows left unread)")
    ap.add_argument("--no-server-gc", action="store_true",
                    help="leave the garbage collector as a bare process has it (before the pairs the bench "
                         "otherwise collects, freezes what set-up allocated and collects the youngest "
                         "generation less often, as the console's server does once started)")
    ap.add_argument("--no-server-malloc", action="store_true",
                    help="leave glibc's malloc thresholds as a bare process has them (the bench otherwise "
                         "sets them as the console's server does: console/server.py tune_malloc)")
    ap.add_argument("--fresh", action="store_true", help="regenerate the data set")
    ap.add_argument("--drop", action="store_true", help="remove the data set (and PostgreSQL schema) afterwards")
    args = ap.parse_args()
    name, folder = data_set(args)
    if args.fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta_file = folder / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
    else:
        end_s = int(time.time()) // 3600 * 3600 - 3600
        meta = {"end_ms": end_s * 1000, "data_start_ms": (end_s - int(args.hours * 3600) - 600) * 1000}
        meta_file.write_text(json.dumps(meta))
    print(f"load average at start: {os.getloadavg()}")
    db, schema = console_db(args, name, folder)
    try:
        if not meta.get(f"console_{args.db}"):
            fill_console(args, db, meta)
            mark_done(meta_file, f"console_{args.db}")
        else:
            settle(db, meta)
        if not args.no_prometheus and not meta.get("prometheus"):
            t = time.perf_counter()
            fill_prometheus(args, folder, meta)
            print(f"prometheus blocks written in {time.perf_counter() - t:.0f} s")
            mark_done(meta_file, "prometheus")
        end_s = meta["end_ms"] // 1000
        start_s = end_s - int(args.hours * 3600)
        series = args.hosts * args.cpus * len(MODES)
        print(f"db={args.db} data={name}: {series} series, {series * int(args.hours * 3600 / args.interval):,} "
              f"samples; {'raw samples only' if args.raw else 'rollup tiers on'}"
              f"{', per-series rows only' if args.per_series_only and not args.raw else ''}")
        if not args.pairs:
            return 0  # only the data set was asked for
        prom = None if args.no_prometheus else Prometheus(folder)
        try:
            ours, theirs, ours_cpu, theirs_cpu, per_series, again = [], [], [], [], [], []
            kept = ClosedSumsCache(1_000_000)  # the console's default (query_cache_points)
            if prom:
                prom.query_range(QUERY, start_s, end_s)  # warms its caches
            if not args.no_server_gc:
                tune_gc()  # as the console's server does once started (console/server.py start_http)
            malloc = [] if args.no_server_malloc else tune_malloc()  # likewise
            print(f"server_malloc={','.join(malloc) or 'off'}")
            for i in range(args.pairs):
                line = f"pair {i + 1}: "
                if args.per_series and not args.raw:
                    cpu = time.process_time()
                    elapsed, _ = console_query(db, start_s, end_s, True, host_rollups=False)
                    per_series.append(elapsed)
                    line += f"console per-series rows {elapsed * 1000:.0f} ms " \
                            f"(CPU {(time.process_time() - cpu) * 1000:.0f} ms), "
                cpu = time.process_time()
                elapsed, data = console_query(db, start_s, end_s, not args.raw, host_rollups=not args.per_series_only)
                ours.append(elapsed)
                ours_cpu.append(time.process_time() - cpu)  # the database's work included (SQLite)
                line += f"console {elapsed * 1000:.0f} ms (CPU {ours_cpu[-1] * 1000:.0f} ms)"
                if not args.raw:  # as served: the bucket sums kept from the pair before
                    cpu = time.process_time()
                    elapsed, _ = console_query(db, start_s, end_s, True, not args.per_series_only, kept)
                    again.append(elapsed)
                    line += f", again {elapsed * 1000:.0f} ms (CPU {(time.process_time() - cpu) * 1000:.0f} ms)"
                if prom:
                    cpu = prom.cpu_seconds()
                    elapsed, pdata = prom.query_range(QUERY, start_s, end_s)
                    theirs.append(elapsed)
                    theirs_cpu.append(prom.cpu_seconds() - cpu)
                    line += f", prometheus {elapsed * 1000:.0f} ms (CPU {theirs_cpu[-1] * 1000:.0f} ms)"
                print(f"{line}; load {os.getloadavg()[0]:.2f}", flush=True)
            points = sum(len(s["values"]) for s in data["result"])
            print(f"{QUERY} over {args.hours:g} h at 1m: {len(data['result'])} series, {points:,} points")
            ours.sort()
            p50, p95 = statistics.median(ours), nearest_rank(ours, 0.95)
            print(f"console: p50={p50 * 1000:.0f} ms p95={p95 * 1000:.0f} ms, "
                  f"CPU median {statistics.median(ours_cpu) * 1000:.0f} ms")
            if again:
                again = again[1:] if len(again) > 1 else again  # the first filled the cache
                again.sort()
                print(f"console again (closed buckets' sums kept, as a refreshing dashboard): "
                      f"p50={statistics.median(again) * 1000:.0f} ms p95={nearest_rank(again, 0.95) * 1000:.0f} ms")
            if per_series:
                per_series.sort()
                print(f"console reading per-series rows (no host rows): p50={statistics.median(per_series) * 1000:.0f}"
                      f" ms p95={nearest_rank(per_series, 0.95) * 1000:.0f} ms")
            if prom:
                theirs.sort()
                pp50, pp95 = statistics.median(theirs), nearest_rank(theirs, 0.95)
                print(f"prometheus (HTTP): p50={pp50 * 1000:.0f} ms p95={pp95 * 1000:.0f} ms, "
                      f"CPU median {statistics.median(theirs_cpu) * 1000:.0f} ms; "
                      f"ratio console/prometheus p50 {p50 / pp50:.1f}x, p95 {p95 / pp95:.1f}x")
                print(f"answers: {compare(data, pdata)}")
        finally:
            if prom:
                prom.close()
    finally:
        db.close()
        if args.drop:
            if schema:
                drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
