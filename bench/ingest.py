"""Ingest benchmark: concurrent simulated agents POST 1,000-sample batches over HTTP to a
real console process; prints committed samples/s, request latency p50/p99, and the ratio
to a raw sqlite3 ``executemany`` of the same rows measured in the same run.

    python bench/ingest.py [--db sqlite|postgres] [--agents 4] [--seconds 20]

PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL (a fresh schema, dropped afterwards).
"""
from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SERIES, POINTS = 100, 10  # per batch: 100 series x 10 points = 1,000 samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies(host: str, count: int, t0: int) -> list[bytes]:
    """Pre-encoded batches (the agents' CPU stays out of the measurement)."""
    rnd = random.Random(host)
    out = []
    for b in range(count):
        base = t0 + b * POINTS * 1000
        metrics = [{"name": "bench_metric", "type": "gauge", "labels": {"series": str(s)},
                    "points": [[base + p * 1000, rnd.random() * 100] for p in range(POINTS)]}
                   for s in range(SERIES)]
        out.append(orjson.dumps({"host": host, "batch_id": uuid.uuid4().hex, "metrics": metrics}))
    return out


def baseline(rows_per_batch: list[list[tuple]], path: str) -> float:
    """Raw sqlite3: same table shape and pragmas, one executemany + commit per batch."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE samples (series_id INTEGER, ts BIGINT, value FLOAT, "
                 "PRIMARY KEY (series_id, ts)) WITHOUT ROWID")
    t = time.perf_counter()
    n = 0
    for rows in rows_per_batch:
        conn.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?)", rows)
        conn.commit()
        n += len(rows)
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


def start_console(cli: list[str], env: dict, log) -> tuple[subprocess.Popen, int]:  # noqa: ANN001
    """``fleetdeck serve`` on a free loopback port, returned once the port accepts."""
    port = free_port()
    env = dict(env, FLEETDECK_LISTEN=f"127.0.0.1:{port}")
    proc = subprocess.Popen(cli + ["serve"], env=env, cwd=REPO, stdout=log, stderr=log)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    return proc, port


def stop_console(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def drive(port: int, tokens: list[str], prepared: list[list[bytes]], seconds: float) -> tuple[int, list[float], float]:
    """One thread per agent POSTs its ``prepared`` batches back to back for ``seconds``:
    (accepted samples, request latencies in s, elapsed s). Any answer but 200 stops
    every agent and raises SystemExit with it."""
    latencies: list[float] = []
    failures: list[str] = []
    accepted = [0] * len(tokens)
    stop = time.perf_counter() + seconds

    def agent(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"}
        for body in prepared[i]:
            if time.perf_counter() > stop or failures:
                break
            t = time.perf_counter()
            conn.request("POST", "/api/v1/ingest", body, headers)
            resp = conn.getresponse()
            data = resp.read()
            latencies.append(time.perf_counter() - t)
            if resp.status != 200:
                failures.append(f"ingest failed: {resp.status} {data[:300]!r}")
                return
            accepted[i] += orjson.loads(data)["accepted_samples"]

    start = time.perf_counter()
    threads = [threading.Thread(target=agent, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(failures[0])
    return sum(accepted), latencies, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fd-bench-"))
    # No per-host admission limit: the bench measures how fast the console commits.
    env = dict(os.environ, FLEETDECK_DATA_DIR=str(work), FLEETDECK_ROLLUP_INTERVAL="0",
               FLEETDECK_INGEST_RATE_PER_HOST="0")
    schema = None
    if args.db == "postgres":
        import psycopg

        url = os.environ["FLEETDECK_TEST_POSTGRES_URL"]
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        env["FLEETDECK_DATABASE_URL"] = f"{url}?options=-csearch_path%3D{schema}"
    py = sys.executable
    cli = [py, "-c", "import sys; from console.cli import main; sys.exit(main())"]
    subprocess.run(cli + ["init"], env=env, cwd=REPO, check=True, capture_output=True)  # token create needs it
    hosts = [f"bench-{i}" for i in range(args.agents)]
    tokens = [subprocess.run(cli + ["token", "create", "--agent", h], env=env, cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip() for h in hosts]
    log = open(work / "console.log", "wb")
    proc, port = start_console(cli, env, log)
    try:
        per_agent = int(args.seconds * 150_000 / 1000 / args.agents) + 20
        t0 = int(time.time() * 1000) - 3_600_000
        prepared = [bodies(h, per_agent, t0) for h in hosts]
        total, latencies, elapsed = drive(port, tokens, prepared, args.seconds)
    finally:
        stop_console(proc)
    rate = total / elapsed
    lat = sorted(latencies)
    rows = []
    for agent_bodies in prepared:
        for i, body in enumerate(agent_bodies[: len(lat) // args.agents + 1]):
            doc = orjson.loads(body)
            rows.append([(hash((doc["host"], m["labels"]["series"])) & 0xFFFFFF, ts, v)
                         for m in doc["metrics"] for ts, v in m["points"]])
    raw = baseline(rows, str(work / "baseline.db"))
    print(f"db={args.db} agents={args.agents} batches={len(lat)} samples={total} seconds={elapsed:.1f}")
    print(f"committed samples/s: {rate:,.0f}")
    print(f"latency p50: {statistics.median(lat) * 1000:.1f} ms  p99: {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
    print(f"raw sqlite3 executemany baseline: {raw:,.0f} samples/s  ratio: {rate / raw:.2f}x")
    print(f"load average: {os.getloadavg()}")
    if schema:
        import psycopg

        with psycopg.connect(os.environ["FLEETDECK_TEST_POSTGRES_URL"].replace("+psycopg", ""), autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
