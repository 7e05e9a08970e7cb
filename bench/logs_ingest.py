"""End-to-end log ingest: agent-shaped gzip batches of 200-byte lines over real HTTP into a
real console (SQLite by default, or --database-url), committed with the FTS index.

Prints lines/s and MB/s (line bytes) for log batches, against a baseline measured in the
same run: the same number of batches carrying no logs (the fixed per-batch cost). With
``--agents N`` that many agents (threads, one host each) post at once, as a fleet does.

    python bench/logs_ingest.py [--lines 200000] [--batch 5000] [--agents 1] [--database-url URL]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import string
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import ConsoleHarness, http  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

WORDS = ["GET", "POST", "/api/v1/items", "200", "404", "upstream", "timeout", "user", "session", "cache",
         "miss", "hit", "worker", "request", "served", "bytes", "ms", "INFO", "WARN", "ERROR"]


def line_of(i: int, rnd: random.Random) -> str:
    head = f"2025-11-21T04:42:{i % 60:02d}.{i % 1000:03d}Z host app[{1000 + i % 50}]: "
    body = " ".join(rnd.choice(WORDS) for _ in range(40))
    text = head + body + " req=" + "".join(rnd.choices(string.hexdigits, k=16))
    return (text + " " * 200)[:199] if len(text) < 199 else text[:199]  # 199 chars + newline = 200 bytes


def body_of(host: str, lines: list[str], ts: int) -> bytes:
    doc = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
           "agent": {"version": "bench", "interval": 10}, "metrics": [],
           "logs": [{"ts": ts, "source": "/var/log/app.log", "line": x, "labels": {}} for x in lines]}
    return gzip.compress(json.dumps(doc).encode(), 6)


def post_all(url: str, bodies: list[bytes], headers: dict) -> None:
    for raw in bodies:
        resp = http("POST", url + "/api/v1/ingest", raw, headers)
        assert resp.status == 200, resp.body


def run(args: argparse.Namespace, database_url: str | None) -> None:
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp), database_url=database_url).start()
        try:
            hosts = [f"bench-{i + 1}" for i in range(args.agents)]
            headers = {h: {"Content-Type": "application/json", "Content-Encoding": "gzip",
                           "Authorization": f"Bearer {console.agent_token(h)}"} for h in hosts}
            n_batches = args.lines // args.batch // args.agents * args.agents
            now = int(time.time() * 1000)
            # Bodies are built first: the agent's JSON+gzip cost is measured in logs_agent_cpu.py.
            bodies = {h: [] for h in hosts}
            for b in range(n_batches):
                host = hosts[b % args.agents]
                lines = [line_of(b * args.batch + i, rnd) for i in range(args.batch)]
                bodies[host].append(body_of(host, lines, now + b))
            empty = {h: [body_of(h, [], now) for _ in bodies[h]] for h in hosts}

            def timed(work: dict[str, list[bytes]]) -> float:
                # One thread per agent, each posting its batches one after another.
                threads = [threading.Thread(target=post_all, args=(console.url, work[h], headers[h])) for h in hosts]
                t0 = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                return time.perf_counter() - t0

            baseline = timed(empty)
            elapsed = timed(bodies)
            total = n_batches * args.batch
            assert console.count("log_records") == total, "every posted line is stored"
            mb = total * 200 / 1e6
            print(f"backend: {console.services.db.dialect}; agents: {args.agents}; load average: {os.getloadavg()}")
            print(f"lines: {total} in {n_batches} batches of {args.batch} (200-byte lines, gzip bodies)")
            print(f"baseline: {n_batches} empty batches in {baseline:.3f} s ({baseline / n_batches * 1000:.1f} ms/batch)")
            print(f"ingest: {elapsed:.3f} s -> {total / elapsed:,.0f} lines/s, {mb / elapsed:.1f} MB/s")
        finally:
            console.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--agents", type=int, default=1, help="agents posting at once (one thread each)")
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL database; the run uses a new schema in it, dropped afterwards")
    args = ap.parse_args()
    if min(args.lines, args.batch, args.agents) < 1 or args.lines < args.batch * args.agents:
        ap.error("--lines, --batch and --agents must be positive, and --lines at least --batch x --agents")
    with schema_if_url(args.database_url) as url:
        run(args, url)


if __name__ == "__main__":
    main()
