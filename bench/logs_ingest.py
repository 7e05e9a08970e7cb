"""End-to-end log ingest: agent-shaped gzip batches of 200-byte lines over real HTTP into a
real console (SQLite by default, or --database-url), committed with the FTS index.

Prints lines/s and MB/s (line bytes) for log batches, against a baseline measured in the
same run: the same number of batches carrying no logs (the fixed per-batch cost).

    python bench/logs_ingest.py [--lines 200000] [--batch 5000] [--database-url URL]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import string
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import ConsoleHarness, http  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp), database_url=args.database_url).start()
        try:
            host = "bench-1"
            token = console.agent_token(host)
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                       "Authorization": f"Bearer {token}"}
            n_batches = args.lines // args.batch
            now = int(time.time() * 1000)
            # Bodies are built first: the agent's JSON+gzip cost is measured in logs_agent_cpu.py.
            bodies = [body_of(host, [line_of(b * args.batch + i, rnd) for i in range(args.batch)], now + b)
                      for b in range(n_batches)]
            empty = [body_of(host, [], now) for _ in range(n_batches)]
            t0 = time.perf_counter()
            for raw in empty:
                assert http("POST", console.url + "/api/v1/ingest", raw, headers).status == 200
            baseline = time.perf_counter() - t0
            t0 = time.perf_counter()
            for raw in bodies:
                resp = http("POST", console.url + "/api/v1/ingest", raw, headers)
                assert resp.status == 200, resp.body
            elapsed = time.perf_counter() - t0
            total = n_batches * args.batch
            assert console.count("log_records") == total
            mb = total * 200 / 1e6
            print(f"backend: {console.services.db.dialect}")
            print(f"lines: {total} in {n_batches} batches of {args.batch} (200-byte lines, gzip bodies)")
            print(f"baseline: {n_batches} empty batches in {baseline:.3f} s ({baseline / n_batches * 1000:.1f} ms/batch)")
            print(f"ingest: {elapsed:.3f} s -> {total / elapsed:,.0f} lines/s, {mb / elapsed:.1f} MB/s")
        finally:
            console.close()


if __name__ == "__main__":
    main()
