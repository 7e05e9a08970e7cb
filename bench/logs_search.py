"""Search latency over 1 million stored log lines: p50/p95 of ``GET /api/v1/logs`` for a
rare word (10 matching lines), compared in the same run with a search without words
(the newest 100 lines, the baseline cost of the API path), plus a common word (in ~70 %
of lines) and words in between: ~3,000 lines spread over all, 2,500 among the oldest
10 %, 10,000 spread and 10,000 among the oldest 20 % (per million lines), which are the
worst cases for a plan that walks the time index newest first.

Lines are inserted directly through console.logs.store.LogStore (which indexes them)
to keep the set-up short; the searches go over real HTTP. Every group of lines is then
packed, as the console does once lines are older than its hot window (``--rows-only``
searches the rows instead).

    python bench/logs_search.py [--rows 1000000] [--runs 50] [--database-url URL]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from console.logs.groups import pack_groups, sqlite_pack_groups  # noqa: E402
from console.logs.store import LogStore  # noqa: E402
from console.storage.models import Host  # noqa: E402
from tests.harness import ConsoleHarness  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

WORDS = ["GET", "POST", "upstream", "timeout", "user", "session", "cache", "miss", "hit", "worker",
         "request", "served", "bytes", "INFO", "WARN", "ERROR", "connection", "closed", "retry", "queue"]


def fill(console, rows: int) -> None:
    rnd = random.Random(7)
    db = console.services.db
    def add_host(session):
        host = Host(name="bench-1", first_seen=time.time(), labels="{}")
        session.add(host)
        session.flush()
        return host.id

    host_id = db.run(add_host)
    store = LogStore(db)  # not started: indexes in the insert transaction
    rare_every = rows // 10
    t0 = int(time.time() * 1000) - rows
    chunk = 20_000
    for start in range(0, rows, chunk):
        batch = []
        for i in range(start, min(rows, start + chunk)):
            words = " ".join(rnd.choice(WORDS) for _ in range(25))
            if i % rare_every == 17:
                words += " zyxwvutsrare"
            if i % 333 == 5:
                words = "zyxmedium " + words
            if i < rows // 10 and i % 40 == 3:
                words = "zyxoldmedium " + words
            if i % 100 == 2:
                words = "zyxpercent " + words
            if i < rows // 5 and i % 20 == 7:
                words = "zyxoldpercent " + words
            level = "error" if i % 100 == 9 else "info" if i % 3 == 0 else None  # 1 % errors
            batch.append((host_id, t0 + i, "/var/log/app.log", f"app[{i % 97}]: {words}"[:199], "{}", level))
        db.run(store.insert, batch)


def pack_all(db) -> None:
    """Pack every group and delete its rows, as the console's group indexer does once lines
    are older than its hot window (console/logs/groups.py pack_groups)."""
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        if db.dialect == "sqlite":
            while sqlite_pack_groups(conn, 2**53, 2**53) != (0, 0):
                pass
            conn.execute("ANALYZE")
            conn.commit()
            return
        while True:
            with conn.cursor() as cursor:
                packed, deleted = pack_groups(cursor, 2**53, 2**53)
            conn.commit()
            if not packed and not deleted:
                break
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE log_records")
        conn.execute("VACUUM ANALYZE log_search_groups")
    finally:
        raw.close()


def timed(console, token, params, runs) -> tuple[float, float, int]:
    times, n = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        resp = console.request("GET", "/api/v1/logs?" + urllib.parse.urlencode(params), token=token)
        times.append((time.perf_counter() - t) * 1000)
        assert resp.status == 200, resp.body
        n = len(resp.json()["logs"])
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], n


def run(args: argparse.Namespace, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp), database_url=database_url).start()
        try:
            t = time.perf_counter()
            fill(console, args.rows)
            print(f"backend: {console.services.db.dialect}; filled {args.rows:,} lines in {time.perf_counter() - t:.1f} s")
            if console.services.db.dialect == "postgresql":
                console.services.db.run(lambda s: s.execute(text("ANALYZE log_records")))
            token = console.api_token("viewer")
            deep = args.rows // 5  # a cursor this many lines back from the newest
            deep_cursor = console.services.db.run(lambda s: "%d_%d" % tuple(s.execute(text(
                "SELECT ts, id FROM log_records ORDER BY ts DESC, id DESC LIMIT 1 OFFSET :n"), {"n": deep - 1}).one()))
            if not args.rows_only:
                t = time.perf_counter()
                pack_all(console.services.db)
                print(f"packed every group in {time.perf_counter() - t:.1f} s")
            for name, params in (("baseline: newest 100, no words", {}),
                                 ("rare word (10 matches)", {"q": "zyxwvutsrare"}),
                                 ("rare word + host + 24h range", {"q": "zyxwvutsrare", "host": "bench-1",
                                                                   "start": time.time() - 86400}),
                                 ("common word, newest 100", {"q": "upstream"}),
                                 (f"common word, cursor {deep:,} lines back", {"q": "upstream", "cursor": deep_cursor}),
                                 ("common word + level no line has", {"q": "upstream", "level": "debug"}),
                                 ("medium word (3,000 spread)", {"q": "zyxmedium"}),
                                 ("medium word (2,500 oldest 10 %)", {"q": "zyxoldmedium"}),
                                 ("1 % word (10,000 spread)", {"q": "zyxpercent"}),
                                 ("1 % word (10,000 oldest 20 %)", {"q": "zyxoldpercent"}),
                                 ("level error only (1 %)", {"level": "error"}),
                                 ("level fatal only (no line)", {"level": "fatal"}),
                                 ("rare word + level info", {"q": "zyxwvutsrare", "level": "info"})):
                p50, p95, n = timed(console, token, params, args.runs)
                print(f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({n} lines returned, {args.runs} runs)")
        finally:
            console.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--rows-only", action="store_true",
                    help="search the lines as rows (the console's first 5 minutes) instead of packed")
    ap.add_argument("--database-url", default=None,
                    help="a PostgreSQL database; the run uses a new schema in it, dropped afterwards")
    args = ap.parse_args()
    with schema_if_url(args.database_url) as url:
        run(args, url)


if __name__ == "__main__":
    main()
