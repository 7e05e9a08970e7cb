"""SQLite log search while the background group indexer is behind (console/logs/indexer.py,
console/logs/groups.py).

A real ``fleetdeck serve`` on a SQLite file. The test makes every insert into
``log_search_groups`` fail (a trigger that aborts it, as a full disk would fail the
indexer's write), so the indexer cannot group anything: a batch is still answered 200 at
once, its lines are found by ``GET /api/v1/logs`` right after the 200 (scanned above the
watermark, merged with grouped lines in order and across pages), and after a kill -9 of
the console with lines committed but not grouped, the restarted console finds them too
and its indexer groups them once the trigger is gone."""
from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path

from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess


@contextmanager
def index_locked(data_dir: Path):
    """Make the group indexer's writes fail until the block ends (it retries each second)."""
    with sqlite3.connect(data_dir / "fleetdeck.db", timeout=30, isolation_level=None) as conn:
        conn.execute("CREATE TRIGGER test_hold_groups BEFORE INSERT ON log_search_groups "
                     "BEGIN SELECT RAISE(ABORT, 'held by the test'); END")
    try:
        yield
    finally:
        with sqlite3.connect(data_dir / "fleetdeck.db", timeout=30, isolation_level=None) as conn:
            conn.execute("DROP TRIGGER test_hold_groups")


def watermark_and_newest(data_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(data_dir / "fleetdeck.db", timeout=30) as conn:
        return conn.execute("SELECT (SELECT indexed_id FROM log_search_state), "
                            "(SELECT coalesce(max(id), 0) FROM log_records)").fetchone()


def grouped_lines(data_dir: Path) -> int:
    """The lines the groups themselves hold (not what search finds)."""
    with sqlite3.connect(data_dir / "fleetdeck.db", timeout=30) as conn:
        return conn.execute("SELECT coalesce(sum(lines), 0) FROM log_search_groups").fetchone()[0]


def push(console: ConsoleProcess, token: str, host: str, lines: list[str], t0: int) -> float:
    """Post one batch of ``lines``; seconds until its 200."""
    doc = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(), "metrics": [],
           "logs": [{"ts": t0 + i, "source": "/var/log/app.log", "line": line, "labels": {}}
                    for i, line in enumerate(lines)]}
    started = time.monotonic()
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(doc).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=60)
    assert resp.status == 200, resp.body
    assert resp.json()["accepted_logs"] == len(lines)
    return time.monotonic() - started


def search(console: ConsoleProcess, token: str, **params) -> dict:
    resp = http("GET", console.url + "/api/v1/logs?" + urllib.parse.urlencode(params),
                headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, resp.body
    return resp.json()


def test_lines_are_found_at_once_while_the_index_is_behind(tmp_path: Path):
    console = ConsoleProcess(tmp_path).start()
    try:
        agent = console.agent_token("lag-web")
        viewer = console.api_token("lag-viewer", "viewer")
        tag = "lag" + uuid.uuid4().hex[:8]
        t0 = int(time.time() * 1000) - 60_000
        push(console, agent, "lag-web", [f"{tag} old line {i} req=4f2a{i:04x}" for i in range(3)], t0)
        wait_for(lambda: (lambda w, n: w == n)(*watermark_and_newest(tmp_path)), 30, "the index to catch up")
        assert grouped_lines(tmp_path) == 3
        with index_locked(tmp_path):
            # The indexer cannot write: ingest answers anyway, and its lines are found at once.
            took = push(console, agent, "lag-web", [f"{tag} new line {i} trace=9c1e-{i}" for i in range(3)],
                        t0 + 10_000)
            assert took < 5, f"the 200 waited {took:.1f}s for the index"
            watermark, newest = watermark_and_newest(tmp_path)
            assert watermark < newest, "the indexer was not behind: this test proves nothing"
            lines = [r["line"] for r in search(console, viewer, q=tag, limit=100)["logs"]]
            assert lines == [f"{tag} new line {i} trace=9c1e-{i}" for i in (2, 1, 0)] + \
                [f"{tag} old line {i} req=4f2a{i:04x}" for i in (2, 1, 0)]
            # words, prefixes and filters on unindexed lines, as the index would match them
            assert [r["line"] for r in search(console, viewer, q=f"{tag} TRACE 9c1e 1")["logs"]] == \
                [f"{tag} new line 1 trace=9c1e-1"]
            assert len(search(console, viewer, q=f"{tag} tra*")["logs"]) == 3
            assert search(console, viewer, q=f"{tag} trace", host="other-host")["logs"] == []
            assert search(console, viewer, q=f"{tag} trace missingword")["logs"] == []
            # pages run across the unindexed and the indexed lines, each line once
            seen, cursor = [], None
            while True:
                page = search(console, viewer, q=tag, limit=4, **({"cursor": cursor} if cursor else {}))
                seen += [r["id"] for r in page["logs"]]
                cursor = page["next"]
                if not cursor:
                    break
            assert len(seen) == len(set(seen)) == 6
            assert grouped_lines(tmp_path) == 3
        wait_for(lambda: (lambda w, n: w == n)(*watermark_and_newest(tmp_path)), 30, "the index to catch up")
        assert grouped_lines(tmp_path) == 6
        assert len(search(console, viewer, q=f"{tag} 9c1e")["logs"]) == 3
    finally:
        console.stop()


def test_lines_committed_but_not_indexed_survive_a_kill9(tmp_path: Path):
    console = ConsoleProcess(tmp_path).start()
    try:
        agent = console.agent_token("kill-web")
        viewer = console.api_token("kill-viewer", "viewer")
        tag = "kill" + uuid.uuid4().hex[:8]
        t0 = int(time.time() * 1000) - 60_000
        with index_locked(tmp_path):
            push(console, agent, "kill-web", [f"{tag} line {i} 10.1.2.{i}" for i in range(50)], t0)
            watermark, newest = watermark_and_newest(tmp_path)
            assert watermark < newest
            console.kill9()  # committed (answered 200), never indexed
            console.start()
            assert len(search(console, viewer, q=tag, limit=1000)["logs"]) == 50
            assert grouped_lines(tmp_path) == 0
        # the restarted console's indexer goes on from the watermark
        wait_for(lambda: (lambda w, n: w == n)(*watermark_and_newest(tmp_path)), 30, "the index to catch up")
        assert grouped_lines(tmp_path) == 50
        assert len(search(console, viewer, q=f"{tag} 10", limit=1000)["logs"]) == 50
    finally:
        console.stop()
