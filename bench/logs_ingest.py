"""End-to-end log ingest: agent-shaped gzip batches of realistic ~140-byte lines (client IPs,
hex request ids, UUIDs) over real HTTP into a
real console (SQLite by default, or --database-url). The search index is filled by a
background indexer after the commit (SQLite's FTS5 file, PostgreSQL's group filters), so
the time until the index holds every line is reported too (search finds unindexed lines
meanwhile).

By default the console runs in this process (``ConsoleHarness``); ``--workers N`` starts a
real ``fleetdeck serve --workers N`` instead (as bench/ingest.py does), the console as
deployed, which uses N cores: its CPU is then the supervisor's and its workers' (from
/proc), without a split by thread.

Prints lines/s and MB/s (line bytes) for log batches, the process's CPU per line (the
console runs in this process, beside the posting threads: the figure neighbours on a
shared machine do not change), against a baseline measured in the
same run: the same number of batches carrying no logs (the fixed per-batch cost). With
``--agents N`` that many agents (threads, one host each) post at once, as a fleet does.

    python bench/logs_ingest.py [--lines 200000] [--batch 5000] [--agents 1] [--database-url URL] [--workers N]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.ingest import TOKENS, proc_cpu, start_console, stop_console  # noqa: E402
from tests.harness import ConsoleHarness, http  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

PATHS = ["/api/v1/orders", "/api/v1/users", "/healthz", "/static/app.js", "/api/v1/search", "/login"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
STATUS = [200, 200, 200, 201, 204, 301, 404, 500, 503]
MESSAGES = ["request served", "upstream timed out", "cache miss", "session expired", "retrying",
            "connection reset by peer", "slow query"]


def line_of(i: int, rnd: random.Random) -> str:
    """A web/app log line of ~140 bytes: timestamp, level, client IP, request, hex request
    id, UUID trace id, status, size, duration, message (high-cardinality tokens, as real
    lines have)."""
    ip = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
    return (f"2025-11-21T04:42:{i % 60:02d}.{i % 1000:03d}Z {rnd.choice(('INFO', 'INFO', 'WARN', 'ERROR'))} "
            f"{ip} {rnd.choice(METHODS)} {rnd.choice(PATHS)}/{rnd.randrange(100000)} {rnd.choice(STATUS)} "
            f"{rnd.randrange(20, 90000)}B {rnd.randrange(1, 2000)}ms req={rnd.getrandbits(64):016x} "
            f"trace={uuid.UUID(int=rnd.getrandbits(128))} {rnd.choice(MESSAGES)}")


def body_of(host: str, lines: list[str], ts: int) -> bytes:
    doc = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
           "agent": {"version": "bench", "interval": 10}, "metrics": [],
           "logs": [{"ts": ts, "source": "/var/log/app.log", "line": x, "labels": {}} for x in lines]}
    return gzip.compress(json.dumps(doc).encode(), 6)


def post_all(url: str, bodies: list[bytes], headers: dict) -> None:
    for raw in bodies:
        resp = http("POST", url + "/api/v1/ingest", raw, headers)
        assert resp.status == 200, resp.body


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's Python threads, summed by thread name
    with digits dropped (/proc/self/task/TID/stat, fields 14 and 15, in clock ticks;
    proc(5))."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:  # the thread ended
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        name = "".join(c for c in thread.name.split(" ")[0] if not c.isdigit()).rstrip("-_")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def caught_up_sql(has_logsearch: bool, has_groups: bool) -> str | None:
    """The query that is true once every stored line is in the search index (the index
    watermark of console/storage/logsearch.py or console/logs/groups.py reaches the newest
    id), or None for a tree that indexes in the ingest transaction."""
    if has_logsearch:
        return "SELECT (SELECT indexed_id FROM logsearch.log_fts_state) >= (SELECT max(id) FROM log_records)"
    if has_groups:
        return "SELECT (SELECT indexed_id FROM log_search_state) >= (SELECT max(id) FROM log_records)"
    return None


def index_caught_up(console: ConsoleHarness) -> float:
    """Wait until every stored line is in the search index (the index watermark of
    console/storage/logsearch.py or console/logs/groups.py reaches the newest id; a tree
    before them indexed in the ingest transaction); returns when, as time.perf_counter()."""
    db = console.services.db
    attached = db.run(lambda session: [r[1] for r in session.execute(text("PRAGMA database_list"))]) \
        if db.dialect == "sqlite" else []
    groups = db.run(lambda session: session.execute(text(
        "SELECT to_regclass('log_search_state') IS NOT NULL" if db.dialect == "postgresql" else
        "SELECT count(*) FROM sqlite_master WHERE name = 'log_search_state'")).scalar())
    query = caught_up_sql("logsearch" in attached, bool(groups))
    if query is None:
        return time.perf_counter()
    sql = text(query)
    while not db.run(lambda session: session.execute(sql).scalar()):
        time.sleep(0.01)
    return time.perf_counter()


def batches(args: argparse.Namespace, hosts: list[str]) -> tuple[int, dict[str, list[bytes]], dict[str, list[bytes]]]:
    """-> (batches, each host's bodies of log lines, as many empty bodies per host)."""
    rnd = random.Random(1)
    n_batches = args.lines // args.batch // args.agents * args.agents
    now = int(time.time() * 1000)
    # Bodies are built first: the agent's JSON+gzip cost is measured in logs_agent_cpu.py.
    bodies: dict[str, list[bytes]] = {h: [] for h in hosts}
    for b in range(n_batches):
        host = hosts[b % args.agents]
        lines = [line_of(b * args.batch + i, rnd) for i in range(args.batch)]
        bodies[host].append(body_of(host, lines, now + b))
    empty = {h: [body_of(h, [], now) for _ in bodies[h]] for h in hosts}
    return n_batches, bodies, empty


def timed(url: str, work: dict[str, list[bytes]], headers: dict[str, dict]) -> float:
    """Seconds to post every host's bodies, one thread per agent, each posting its batches
    one after another."""
    threads = [threading.Thread(target=post_all, args=(url, work[h], headers[h])) for h in work]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run(args: argparse.Namespace, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp), database_url=database_url).start()
        try:
            hosts = [f"bench-{i + 1}" for i in range(args.agents)]
            headers = {h: {"Content-Type": "application/json", "Content-Encoding": "gzip",
                           "Authorization": f"Bearer {console.agent_token(h)}"} for h in hosts}
            n_batches, bodies, empty = batches(args, hosts)

            baseline = timed(console.url, empty, headers)
            threads0 = thread_cpu()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            elapsed = timed(console.url, bodies, headers)
            cpu_answered = time.process_time() - cpu0
            total = n_batches * args.batch
            assert console.count("log_records") == total, "every posted line is stored"
            indexed = index_caught_up(console) - wall0
            cpu = time.process_time() - cpu0
            threads = {name: seconds - threads0.get(name, 0.0) for name, seconds in thread_cpu().items()}
            mb = sum(len(line_of(i, random.Random(i))) + 1 for i in range(1000)) / 1000 * total / 1e6
            print(f"backend: {console.services.db.dialect}; agents: {args.agents}; load average: {os.getloadavg()}")
            print(f"lines: {total} in {n_batches} batches of {args.batch} (~140-byte lines, gzip bodies)")
            print(f"baseline: {n_batches} empty batches in {baseline:.3f} s ({baseline / n_batches * 1000:.1f} ms/batch)")
            print(f"ingest: {elapsed:.3f} s -> {total / elapsed:,.0f} lines/s, {mb / elapsed:.1f} MB/s")
            print(f"search index caught up after {indexed:.3f} s -> {total / indexed:,.0f} lines/s indexed")
            print(f"process CPU (console and posting threads) per line: {cpu_answered / total * 1e6:.1f} us until "
                  f"the last 200, {cpu / total * 1e6:.1f} us until indexed")
            print("  by thread (us per line): " + ", ".join(
                f"{name} {seconds / total * 1e6:.1f}" for name, seconds in sorted(threads.items(), key=lambda kv: -kv[1])
                if seconds / total * 1e6 >= 0.05))
        finally:
            console.close()


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far, over every core (the first line of
    /proc/stat less idle and iowait, in clock ticks; proc(5)): the console, the database
    server, this bench and neighbours alike."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run_serve(args: argparse.Namespace, database_url: str | None) -> None:
    """The same against ``fleetdeck serve --workers N`` in processes of their own."""
    work = Path(tempfile.mkdtemp(prefix="fd-logbench-"))
    env = dict(os.environ, FLEETDECK_DATA_DIR=str(work), FLEETDECK_ROLLUP_INTERVAL="0")
    if database_url:
        env["FLEETDECK_DATABASE_URL"] = database_url
    cli = [sys.executable, "-c", "import sys; from console.cli import main; sys.exit(main())"]
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(cli + ["init"], env=env, cwd=repo, check=True, capture_output=True)
    hosts = [f"bench-{i + 1}" for i in range(args.agents)]
    tokens = subprocess.run([sys.executable, "-c", TOKENS, *hosts], env=env, cwd=repo, check=True,
                            capture_output=True, text=True).stdout.split()
    headers = {h: {"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Bearer {t}"}
               for h, t in zip(hosts, tokens)}
    if database_url:
        engine = create_engine(database_url)
        with engine.connect() as conn:
            groups = conn.execute(text("SELECT to_regclass('log_search_groups') IS NOT NULL")).scalar()
        query = caught_up_sql(False, bool(groups))

        def scalar(sql: str) -> object:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar()
    else:
        db_file = work / "fleetdeck.db"
        query = None  # read once the console made its tables: the FTS5 file of a tree before logsqlite_0001

        def scalar(sql: str) -> object:
            with sqlite3.connect(db_file) as conn:
                if Path(f"{db_file}.logsearch").exists():
                    conn.execute("ATTACH DATABASE ? AS logsearch", (f"{db_file}.logsearch",))
                return conn.execute(sql).fetchone()[0]
    n_batches, bodies, empty = batches(args, hosts)
    with open(work / "console.log", "wb") as log:
        proc, port = start_console(cli, env, log, workers=args.workers)
        try:
            url = f"http://127.0.0.1:{port}"
            if not database_url:  # the console has made its tables by now
                query = caught_up_sql(Path(f"{db_file}.logsearch").exists(), bool(scalar(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'log_search_state'")))
            baseline = timed(url, empty, headers)
            cpu0, busy0, wall0 = proc_cpu(proc.pid), machine_busy(), time.perf_counter()
            elapsed = timed(url, bodies, headers)
            cpu_answered = proc_cpu(proc.pid) - cpu0
            total = n_batches * args.batch
            assert scalar("SELECT count(*) FROM log_records") == total, "every posted line is stored"
            while query is not None and not scalar(query):
                time.sleep(0.01)
            indexed = time.perf_counter() - wall0
            cpu, busy = proc_cpu(proc.pid) - cpu0, machine_busy() - busy0
        finally:
            stop_console(proc)
            shutil.rmtree(work, ignore_errors=True)
    mb = sum(len(line_of(i, random.Random(i))) + 1 for i in range(1000)) / 1000 * total / 1e6
    print(f"backend: {'postgresql' if database_url else 'sqlite'}; fleetdeck serve --workers {args.workers}; "
          f"agents: {args.agents}; load average: {os.getloadavg()}")
    print(f"lines: {total} in {n_batches} batches of {args.batch} (~140-byte lines, gzip bodies)")
    print(f"baseline: {n_batches} empty batches in {baseline:.3f} s ({baseline / n_batches * 1000:.1f} ms/batch)")
    print(f"ingest: {elapsed:.3f} s -> {total / elapsed:,.0f} lines/s, {mb / elapsed:.1f} MB/s")
    print(f"search index caught up after {indexed:.3f} s -> {total / indexed:,.0f} lines/s indexed")
    print(f"console CPU (supervisor and workers) per line: {cpu_answered / total * 1e6:.1f} us until "
          f"the last 200, {cpu / total * 1e6:.1f} us until indexed")
    print(f"machine busy until indexed (every process): {busy / indexed:.2f} of {os.cpu_count()} cores, "
          f"{busy / total * 1e6:.1f} us per line")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--agents", type=int, default=1, help="agents posting at once (one thread each)")
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL database; the run uses a new schema in it, dropped afterwards")
    ap.add_argument("--workers", type=int, default=0,
                    help="run `fleetdeck serve --workers N` (0: the console in this process)")
    args = ap.parse_args()
    if args.workers < 0:
        ap.error("--workers must be 0 or more")
    if min(args.lines, args.batch, args.agents) < 1 or args.lines < args.batch * args.agents:
        ap.error("--lines, --batch and --agents must be positive, and --lines at least --batch x --agents")
    with schema_if_url(args.database_url) as url:
        (run_serve if args.workers else run)(args, url)


if __name__ == "__main__":
    main()
