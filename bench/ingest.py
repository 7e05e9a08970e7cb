"""Ingest benchmark in the agent's shape, beside the raw insert in the same sitting.

Simulated agents (default 64 hosts, one keep-alive HTTP connection each) POST gzip JSON
batches of one point for each of 500 series (what ``agents/client.py`` sends every
interval) to a real ``fleetdeck serve`` process. Each round of the console is followed by
a round of the raw baseline on the same rows (``sqlite3`` ``executemany`` + commit per
batch, or psycopg ``COPY`` + commit per batch for PostgreSQL), ``--pairs`` times, and the
medians are printed. Also printed: console CPU per sample (from /proc), the generator's
own CPU (to show it is not the bottleneck), request latency p50/p99, the load average,
and, with ``--paced``, p99 latency at that fraction of the measured rate. Every batch's
samples lie within the hour before the console's clock, as a real agent's do (see
``bench_shape``), which bounds a round's batches. Each console
keeps its database from pair to pair, so each pair line gives the samples per series
stored before it: on SQLite the cost of a sample grows with it (BENCHMARKS.md). ``--second-shape``
adds a row for 100 series x 10 points per batch.

``--workers 1,2`` runs one console per count (``fleetdeck serve --workers N``, each on a
database of its own) and interleaves them: each pair is a round of every console, then
the raw baseline.

    python bench/ingest.py [--db sqlite|postgres] [--hosts 64] [--series 500] [--points 1]
                           [--seconds 8] [--pairs 3] [--paced 0.5] [--second-shape] [--workers 1,2]

PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a fresh schema, dropped afterwards). The
server's WAL and checkpoint settings are printed first, and the paced round says how many
buffers the server's checkpoints wrote during it: a checkpoint's end (its files' fsync)
holds commits up, and on the default settings (``max_wal_size`` 1 GB) this bench's WAL
makes one every minute or so (docs/scaling.md, "PostgreSQL server settings").
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.ingest.service import SERIES_ID_TRUST_MS  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402

# Metric names of a node-exporter-like agent; series = name x label sets.
NAMES = ["node_cpu_seconds_total", "node_memory_bytes", "node_disk_io_bytes_total", "node_network_bytes_total",
         "node_filesystem_avail_bytes", "node_load", "process_resident_memory_bytes", "node_context_switches_total",
         "node_interrupts_total", "node_entropy_bits"]


# One agent token per host argument, printed one a line, made in one process (a CLI run each
# would cost a second per host).
TOKENS = """import argparse, sys
from console.cli.common import _admin_services
services = _admin_services(argparse.Namespace(config=None, verbose=False))
for host in sys.argv[1:]:
    print(services.db.run(services.auth.create_agent_token, "bench", "cli", host)["token"])
services.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def series_of(n: int) -> list[tuple[str, dict[str, str]]]:
    return [(NAMES[i % len(NAMES)], {"device": f"dev{i // len(NAMES)}", "mode": ("user", "system", "idle")[i % 3]})
            for i in range(n)]


@dataclass
class Shape:
    series: int
    points: int

    @property
    def samples(self) -> int:
        return self.series * self.points


class Agent:
    """One simulated agent: its host, token, the clock of its next batch (10 s apart), and
    its keep-alive connection, kept from round to round as agents/client.py keeps its
    socket (with ``serve --workers N`` a new connection may land on another worker, whose
    caches do not know the host yet: a cost a steady agent does not pay every round)."""

    def __init__(self, host: str, token: str, shape: Shape, t0: int, prefix: str) -> None:
        self.host, self.token, self.shape = host, token, shape
        self.conn: http.client.HTTPConnection | None = None
        self.next_ts = t0
        self.rnd = random.Random(host)
        self.series = [(f"{prefix}{name}", labels) for name, labels in series_of(shape.series)]

    def batch(self) -> tuple[bytes, list[tuple[int, int, float]]]:
        """-> (gzip JSON body as the agent builds it, rows for the baseline)."""
        stamps = [self.next_ts + p * 10_000 for p in range(self.shape.points)]
        self.next_ts += self.shape.points * 10_000
        metrics, rows = [], []
        for sid, (name, labels) in enumerate(self.series):
            points = [[ts, round(self.rnd.random() * 1e6, 3)] for ts in stamps]
            metrics.append({"name": name, "type": "gauge", "labels": labels, "points": points})
            rows.extend((sid, ts, v) for ts, v in points)
        doc = {"host": self.host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
               "agent": {"version": "bench", "interval": 10}, "metrics": metrics}
        return gzip.compress(orjson.dumps(doc), 6), rows


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, its reaped children and (recursively)
    its live children: a console's workers (/proc/PID/stat, /proc/PID/task/TID/children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(proc_cpu(int(child)) for child in task.read_text().split())
    return total


def start_console(cli: list[str], env: dict, log, workers: int = 1,  # noqa: ANN001
                  cwd: Path = REPO) -> tuple[subprocess.Popen, int]:
    """``fleetdeck serve --workers N`` on a free loopback port, run in ``cwd`` (another
    checkout's console: its tree), returned once every worker answers (/healthz, on as
    many fresh connections as the kernel spreads over them)."""
    port = free_port()
    env = dict(env, FLEETDECK_LISTEN=f"127.0.0.1:{port}")
    proc = subprocess.Popen(cli + ["serve", "--workers", str(workers)], env=env, cwd=cwd, stdout=log, stderr=log)
    for _ in range(1500):  # up to 5 minutes: on a machine loaded ~15x its cores a start took over one
        try:
            for _ in range(4 * workers):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    log.flush()
    raise SystemExit(f"the console did not start: {Path(log.name).read_text(errors='replace')[-2000:]}")


def stop_console(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Round:
    samples: int
    elapsed: float
    latencies: list[float]
    console_cpu: float
    generator_cpu: float
    load: float

    @property
    def rate(self) -> float:
        return self.samples / self.elapsed


def drive(port: int, agents: list[Agent], bodies: list[list[bytes]], seconds: float, console_pid: int,
          pace: float = 0.0) -> Round:
    """One thread per agent POSTs its ``bodies`` back to back (or one every ``pace`` s) for
    ``seconds``. Any answer but 200 stops every agent and raises SystemExit with it. Each
    agent's clock is then set back to just after the last batch it sent, so the next
    round goes on 10 s later, as a real agent does, instead of jumping over the bodies
    built but not sent (a jump of a minute or more moves every series' ``last_ts`` in
    the next round's first batches at once, a burst no steady agent causes)."""
    latencies: list[float] = []
    failures: list[str] = []
    accepted = [0] * len(agents)
    sent = [0] * len(agents)
    stop = time.perf_counter() + seconds

    def agent(i: int) -> None:
        conn = agents[i].conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        agents[i].conn = conn
        headers = {"Authorization": f"Bearer {agents[i].token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        due = time.perf_counter() + (pace * i / len(agents) if pace else 0)
        for body in bodies[i]:
            if pace:
                time.sleep(max(0.0, due - time.perf_counter()))
                due += pace
            if time.perf_counter() > stop or failures:
                break
            t = time.perf_counter()
            conn.request("POST", "/api/v1/ingest", body, headers)
            resp = conn.getresponse()
            data = resp.read()
            latencies.append(time.perf_counter() - t)
            sent[i] += 1
            if resp.status != 200:
                failures.append(f"ingest failed: {resp.status} {data[:300]!r}")
                return
            accepted[i] += orjson.loads(data)["accepted_samples"]

    cpu0, gen0, start = proc_cpu(console_pid), time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(agents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for a, b, n in zip(agents, bodies, sent):
        a.next_ts -= (len(b) - n) * a.shape.points * 10_000
    if failures:
        raise SystemExit(failures[0])
    if not pace and any(len(b) > 1 and accepted[i] >= len(b) * agents[i].shape.samples
                        for i, b in enumerate(bodies)):
        print("  (an agent ran out of prepared batches: raise --expect, or lower --seconds where the rounds "
              "were capped)", file=sys.stderr)
    return Round(sum(accepted), elapsed, latencies, proc_cpu(console_pid) - cpu0,
                 time.process_time() - gen0, os.getloadavg()[0])


class SqliteBaseline:
    """Raw sqlite3: the samples table's shape and pragmas, one executemany + commit per batch."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA mmap_size=1073741824")
        # console/storage/hot_samples.py: clustered by minute, then series and time.
        self.conn.execute("CREATE TABLE samples (bucket BIGINT, series_id INTEGER, ts BIGINT, value FLOAT, "
                          "PRIMARY KEY (bucket, series_id, ts)) WITHOUT ROWID")
        self.name = "raw sqlite3 executemany"

    def run(self, batches: list[list[tuple[int, int, float]]]) -> float:
        t, n = time.perf_counter(), 0
        for rows in batches:
            self.conn.executemany("INSERT OR IGNORE INTO samples (bucket, series_id, ts, value) "
                                  "VALUES (?2 / 60000, ?1, ?2, ?3)", rows)
            self.conn.commit()
            n += len(rows)
        return n / (time.perf_counter() - t)


class CopyBaseline:
    """Raw psycopg: COPY + commit per batch into a table of the samples' shape."""

    def __init__(self, url: str, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)
        self.conn.execute(f"CREATE TABLE {schema}.raw_samples (series_id integer, ts bigint, "
                          "value double precision, PRIMARY KEY (series_id, ts))")
        self.conn.commit()
        self.table = f"{schema}.raw_samples"
        self.name = "raw psycopg COPY"

    def run(self, batches: list[list[tuple[int, int, float]]]) -> float:
        t, n = time.perf_counter(), 0
        with self.conn.cursor() as cur:
            for rows in batches:
                with cur.copy(f"COPY {self.table} (series_id, ts, value) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                self.conn.commit()
                n += len(rows)
        return n / (time.perf_counter() - t)


@dataclass
class Target:
    """One console under test: ``serve --workers N`` on a database of its own."""

    workers: int
    proc: subprocess.Popen
    port: int
    tokens: dict[str, str]
    agents: list[Agent] | None = None
    stored: int = 0  # samples accepted so far (the database grows from pair to pair)

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}"


def percentile99(latencies: list[float]) -> float:
    lat = sorted(latencies)
    return lat[max(0, int(len(lat) * 0.99) - 1)]


def bench_shape(args: argparse.Namespace, shape: Shape, targets: list[Target], baseline, prefix: str) -> None:  # noqa: ANN001
    hosts = list(targets[0].tokens)
    per_agent = int(args.seconds * args.expect / shape.samples / len(hosts)) + 2
    # Every batch stays within the hour before the console's clock in which its writer
    # trusts a cached series id (SERIES_ID_TRUST_MS), as a real agent's batch of "now"
    # does: an older batch takes the writer's lookup path (every series looked up and its
    # bounds rewritten), about half the steady rate (BENCHMARKS.md). Each batch is 10 s
    # per point after the last, and 64 agents at 300k samples/s cover ~90 s of their clocks
    # a second, so the slots (warm-up, the pairs, the paced round) are capped to fit: the
    # first batch SERIES_ID_TRUST_MS - 5 min old, the last at most 5 min ahead of the
    # clock (within sample_max_future, 10 min).
    step_ms = shape.points * 10_000
    fits = SERIES_ID_TRUST_MS // step_ms // (args.pairs + 2)
    if per_agent > fits:
        print(f"  ({shape.series}x{shape.points}: {per_agent} batches per agent a round would take the agents' "
              f"clocks past the hour; {fits} instead, so a round may end early)", file=sys.stderr)
        per_agent = fits
    t0 = int(time.time() * 1000) - SERIES_ID_TRUST_MS + 300_000
    for target in targets:
        target.agents = [Agent(h, target.tokens[h], shape, t0, prefix) for h in hosts]
        # Warm-up: each agent's first batch creates its series (not timed).
        warm = drive(target.port, target.agents, [[a.batch()[0]] for a in target.agents], 120, target.proc.pid)
        target.stored += warm.samples
    rounds: dict[int, list[Round]] = {t.workers: [] for t in targets}
    raws: list[float] = []
    for pair in range(args.pairs):
        rows: list[list[tuple[int, int, float]]] = []
        line = []
        for target in targets:
            assert target.agents is not None
            bodies = []
            for a in target.agents:
                made = [a.batch() for _ in range(per_agent)]
                bodies.append([b for b, _ in made])
                if target is targets[0]:  # the baseline inserts the first console's rows
                    # Each pair's rows at times of their own: the agents' clocks go back to the
                    # last batch sent (drive), so the baseline may have stored some already.
                    rows.extend([[(sid + pair + 10_000 * hosts.index(a.host), ts + pair * 10**9, v)
                                  for sid, ts, v in r] for _, r in made])
            per_series = target.stored / (len(hosts) * shape.series)
            r = drive(target.port, target.agents, bodies, args.seconds, target.proc.pid)
            target.stored += r.samples
            rounds[target.workers].append(r)
            line.append(f"{target.label} {r.rate:,.0f} samples/s ({len(r.latencies)} batches, "
                        f"p50 {statistics.median(r.latencies) * 1000:.0f} ms, p99 {percentile99(r.latencies) * 1000:.0f} ms, "
                        f"{r.console_cpu / max(1, r.samples) * 1e6:.1f} us CPU/sample, console "
                        f"{r.console_cpu / r.elapsed:.2f} cores, generator {r.generator_cpu / r.elapsed:.2f} cores, "
                        f"load {r.load:.2f}, {per_series:.0f} samples per series stored before)")
        batches_done = len(rounds[targets[0].workers][-1].latencies)
        raws.append(baseline.run(rows[:max(batches_done, 50)]))
        print(f"  pair {pair + 1}: " + " | ".join(line) + f" | {baseline.name} {raws[-1]:,.0f} rows/s", flush=True)
    raw = statistics.median(raws)
    for target in targets:
        done = rounds[target.workers]
        rate = statistics.median(r.rate for r in done)
        cpu = statistics.median(r.console_cpu / max(1, r.samples) * 1e6 for r in done)
        p99 = statistics.median(percentile99(r.latencies) for r in done)
        gen = statistics.median(r.generator_cpu / r.elapsed for r in done)
        cores = statistics.median(r.console_cpu / r.elapsed for r in done)
        print(f"RESULT db={args.db} shape={shape.series}x{shape.points} hosts={len(hosts)} workers={target.workers}: "
              f"{rate:,.0f} samples/s (median of {args.pairs}), {baseline.name} {raw:,.0f} rows/s, "
              f"ratio {rate / raw:.2f}x, {cpu:.1f} us console CPU/sample, console {cores:.2f} cores, "
              f"p99 {p99 * 1000:.0f} ms, generator {gen:.2f} cores, load {os.getloadavg()}", flush=True)
        if args.paced:
            interval = len(hosts) * shape.samples / (rate * args.paced)  # s between one agent's batches
            count = min(int(args.seconds / interval) + 2, per_agent)  # within its slot (above)
            assert target.agents is not None
            bodies = [[a.batch()[0] for _ in range(count)] for a in target.agents]
            server = pg_url() if args.db == "postgres" else None
            before = checkpoint_counters(server) if server else None
            r = drive(target.port, target.agents, bodies, args.seconds, target.proc.pid, pace=interval)
            checkpoints = ""
            if server is not None and before is not None:
                after = checkpoint_counters(server)
                checkpoints = (f"; server checkpoints during it: {after[0] - before[0]} begun, "
                               f"{after[1] - before[1]:,} buffers written")
            target.stored += r.samples
            print(f"RESULT {target.label} paced at {args.paced:.0%} ({r.rate:,.0f} samples/s): p50 "
                  f"{statistics.median(r.latencies) * 1000:.0f} ms, p99 {percentile99(r.latencies) * 1000:.0f} ms "
                  f"({len(r.latencies)} batches{checkpoints})", flush=True)


SERVER_SETTINGS = ("max_wal_size", "checkpoint_timeout", "wal_compression", "shared_buffers", "synchronous_commit")


def server_settings(url: str) -> str:
    """PostgreSQL: the settings of :data:`SERVER_SETTINGS` as ``name=value`` (as SHOW gives them)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) "
                            "ORDER BY name", (list(SERVER_SETTINGS),)).fetchall()
    return ", ".join(f"{name}={value}" for name, value in rows)


def checkpoint_counters(url: str) -> tuple[int, int]:
    """PostgreSQL: (checkpoints begun, buffers written by checkpoints) since the server's
    statistics were reset (``pg_stat_bgwriter``; ``pg_stat_checkpointer`` from 17 on)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        sql = ("SELECT num_timed + num_requested, buffers_written FROM pg_stat_checkpointer"
               if conn.info.server_version >= 170000 else
               "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter")
        begun, written = conn.execute(sql).fetchone()
    return int(begun), int(written)


def prepare_database(args: argparse.Namespace, work: Path, env: dict, cli: list[str]) -> tuple[dict, dict[str, str]]:
    """A database of its own under ``work`` (or a fresh PostgreSQL schema, named in the
    returned env), initialised, with one agent token per host; -> (env, tokens)."""
    env = dict(env, FLEETDECK_DATA_DIR=str(work))
    if args.db == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        env["FLEETDECK_DATABASE_URL"] = create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
        env["BENCH_SCHEMA"] = schema
    subprocess.run(cli + ["init"], env=env, cwd=REPO, check=True, capture_output=True)
    hosts = [f"bench-{i}" for i in range(args.hosts)]
    made = subprocess.run([sys.executable, "-c", TOKENS, *hosts], env=env, cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.split()
    return env, dict(zip(hosts, made))


def pg_url() -> str:
    """$FLEETDECK_TEST_POSTGRES_URL as psycopg takes it (without SQLAlchemy's driver name)."""
    return os.environ["FLEETDECK_TEST_POSTGRES_URL"].replace("+psycopg", "")


def drop_bench_schema(schema: str) -> None:
    drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--hosts", type=int, default=64, help="simulated agents, one connection each")
    ap.add_argument("--series", type=int, default=500, help="series per batch")
    ap.add_argument("--points", type=int, default=1, help="points per series per batch")
    ap.add_argument("--seconds", type=float, default=8, help="length of each console round")
    ap.add_argument("--pairs", type=int, default=3, help="console/baseline pairs (medians are printed)")
    ap.add_argument("--expect", type=float, default=300_000, help="samples/s to prepare batches for")
    ap.add_argument("--paced", type=float, default=0.5, help="latency round at this fraction of the rate; 0: none")
    ap.add_argument("--second-shape", action="store_true", help="also measure 100 series x 10 points")
    ap.add_argument("--workers", default="1", help="comma-separated worker counts, one console each (e.g. 1,2)")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="fd-bench-"))
    # The admission limits are the console's defaults (the bench measures what an agent of
    # this shape gets); FLEETDECK_* settings from the environment still apply.
    env = dict(os.environ, FLEETDECK_ROLLUP_INTERVAL="0")
    schemas: list[str] = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    py = sys.executable
    cli = [py, "-c", "import sys; from console.cli import main; sys.exit(main())"]
    targets: list[Target] = []
    baseline = None
    try:
        if args.db == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
            schemas.append(schema)
            print(f"PostgreSQL server: {server_settings(pg_url())}", flush=True)
            baseline = CopyBaseline(pg_url(), schema)
        else:
            baseline = SqliteBaseline(str(work / "baseline.db"))
        for n in counts:
            (work / f"w{n}").mkdir()
            target_env, tokens = prepare_database(args, work / f"w{n}", env, cli)
            if "BENCH_SCHEMA" in target_env:
                schemas.append(target_env.pop("BENCH_SCHEMA"))
            log = open(work / f"w{n}" / "console.log", "wb")  # noqa: SIM115 - owned by the console
            proc, port = start_console(cli, target_env, log, workers=n)
            targets.append(Target(n, proc, port, tokens))
        shapes = [Shape(args.series, args.points)] + ([Shape(100, 10)] if args.second_shape else [])
        for i, shape in enumerate(shapes):
            bench_shape(args, shape, targets, baseline, prefix=f"s{i}_")
    finally:
        for target in targets:
            stop_console(target.proc)
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(baseline, CopyBaseline):
            baseline.conn.close()
        for schema in schemas:
            drop_bench_schema(schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
