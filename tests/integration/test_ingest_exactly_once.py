"""Exactly-once by batch_id across a kill -9 of the console: agents post batches at once
(so the writer stores them in groups), the console is killed mid-stream, restarted, and
every batch is sent again. No batch may be answered "stored" twice, every batch and every
sample must be stored once, and a batch answered before the kill is a duplicate after.

The same with ``fleetdeck serve --workers 2`` (two processes writing one database): one
worker killed mid-stream (the supervisor starts another on its socket), or the whole
process group killed and the console started again."""
from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import need
from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess
from tests.pg import ENV, private_schema

HOSTS, BATCHES, SERIES = 8, 40, 50


def bodies(host: str, t0: int) -> list[tuple[str, bytes]]:
    out = []
    for b in range(BATCHES):
        batch_id = uuid.uuid4().hex
        metrics = [{"name": "eo_value", "type": "gauge", "labels": {"series": str(s)},
                    "points": [[t0 + b * 10_000, float(b * SERIES + s)]]} for s in range(SERIES)]
        doc = {"host": host, "batch_id": batch_id, "sent_at": time.time(), "metrics": metrics}
        out.append((batch_id, gzip.compress(json.dumps(doc).encode())))
    return out


def post(url: str, token: str, raw: bytes):
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Bearer {token}"}
    return http("POST", url + "/api/v1/ingest", raw, headers, timeout=90)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_batch_stored_once_across_kill9(tmp_path: Path, backend: str):
    import os

    if backend == "postgres" and not os.environ.get(ENV):
        need("postgres", f"{ENV} is not set")
    with (private_schema(os.environ[ENV]) if backend == "postgres" else nullcontext(None)) as url:
        env = {"FLEETDECK_DATABASE_URL": url} if url else {}
        console = ConsoleProcess(tmp_path, FLEETDECK_INGEST_RATE_PER_HOST="0", **env).start()
        db_url = url or f"sqlite:///{tmp_path / 'fleetdeck.db'}"
        try:
            run_and_replay(console, db_url)
        finally:
            console.stop()


@pytest.mark.parametrize("kill", ["one worker", "process group"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_batch_stored_once_across_kill9_of_workers(tmp_path: Path, backend: str, kill: str):
    if backend == "postgres" and not os.environ.get(ENV):
        need("postgres", f"{ENV} is not set")
    with (private_schema(os.environ[ENV]) if backend == "postgres" else nullcontext(None)) as url:
        env = {"FLEETDECK_DATABASE_URL": url} if url else {}
        console = ConsoleProcess(tmp_path, args=("--workers", "2"), FLEETDECK_INGEST_RATE_PER_HOST="0", **env).start()
        wait_for(lambda: len(console.worker_pids()) == 2, 30, "two workers")
        db_url = url or f"sqlite:///{tmp_path / 'fleetdeck.db'}"
        try:
            if kill == "one worker":
                run_and_replay(console, db_url, kill=lambda gate: kill9_one_worker(console, db_url, gate), restart=lambda: None)
            else:
                run_and_replay(console, db_url, kill=lambda _gate: console.kill9_group(), restart=console.start)
            workers = console.worker_pids()
            assert len(workers) == 2
        finally:
            console.stop()
        # SIGTERM to the supervisor stopped every worker, and it exited 0.
        assert console.proc is not None and console.proc.returncode == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@contextmanager
def writes_held(db_url: str):
    """Hold the database's write lock (SQLite) or a lock on ingest_batches that blocks its
    INSERTs (PostgreSQL) for the block: every batch the workers took waits uncommitted."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("LOCK TABLE ingest_batches IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def kill9_one_worker(console: ConsoleProcess, db_url: str, gate: threading.Event) -> None:
    """SIGKILL a worker while it holds requests whose batches wait for the database; the
    supervisor replaces it (a new pid on the same socket).

    The agents are paused (``gate``) while the write lock is taken: with them sending,
    the lock could be starved until every batch was stored and no request left to wait.
    Which worker the kernel hands the next connections to is its choice, so the one
    killed is whichever holds a waiting request."""
    before = console.worker_pids()
    gate.clear()
    with writes_held(db_url):
        gate.set()
        victim = wait_for(lambda: next((pid for pid in before if console.connections_of(pid) >= 1), None),
                          30, "a request waiting on a worker")
        os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(console.worker_pids()) == 2 and victim not in console.worker_pids(), 30,
             "the supervisor to start a worker in place of the killed one")
    survivor = next(pid for pid in before if pid != victim)
    assert survivor in console.worker_pids()  # the other worker served on


def run_and_replay(console: ConsoleProcess, db_url: str, kill=None, restart=None) -> None:  # noqa: ANN001
    """``kill(gate)`` (default: SIGKILL the console) mid-stream, then ``restart`` (default:
    start it again) and replay every batch. The agents send only while ``gate`` is set."""
    hosts = [f"eo-{i}" for i in range(HOSTS)]
    tokens = {h: console.agent_token(h) for h in hosts}
    t0 = int(time.time() * 1000) - 3_600_000
    prepared = {h: bodies(h, t0) for h in hosts}
    stored: dict[str, int] = {}  # batch_id -> times answered as stored (not duplicate)
    accepted = 0
    lock = threading.Lock()
    gate = threading.Event()
    gate.set()

    def record(batch_id: str, body: dict) -> None:
        nonlocal accepted
        with lock:
            if not body["duplicate"]:
                stored[batch_id] = stored.get(batch_id, 0) + 1
            accepted += body["accepted_samples"]

    def agent(host: str) -> None:
        for batch_id, raw in prepared[host]:
            gate.wait(120)
            try:
                resp = post(console.url, tokens[host], raw)
            except OSError:
                return  # the console was killed: this batch's fate is unknown to the agent
            if resp.status != 200:
                return
            record(batch_id, resp.json())

    threads = [threading.Thread(target=agent, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    wait_for(lambda: len(stored) >= HOSTS * BATCHES // 3, 120, "a third of the batches to be answered")
    (kill or (lambda _gate: console.kill9()))(gate)
    for t in threads:
        t.join(60)
    before_kill = len(stored)
    assert 0 < before_kill < HOSTS * BATCHES, "the kill came mid-stream"
    (restart or console.start)()
    replayed_duplicates = 0
    for host in hosts:
        for batch_id, raw in prepared[host]:  # the agent's spool sends everything again
            resp = post(console.url, tokens[host], raw)
            assert resp.status == 200, resp.body
            body = resp.json()
            if batch_id in stored:
                assert body["duplicate"], f"batch {batch_id} answered stored before the kill, stored again"
            replayed_duplicates += body["duplicate"]
            record(batch_id, body)
    # No batch was answered "stored" twice over both runs. A batch committed just before
    # the kill, whose answer never reached its agent, is answered "duplicate" on replay.
    every = {batch_id for h in hosts for batch_id, _ in prepared[h]}
    assert set(stored) <= every
    assert set(stored.values()) == {1}
    assert replayed_duplicates >= before_kill
    # ...and every sample is stored once, as the answers counted.
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT h.name, count(*), count(DISTINCT s.value), min(s.value), max(s.value) FROM samples s "
                "JOIN series r ON r.id = s.series_id JOIN hosts h ON h.id = r.host_id "
                "WHERE r.name = 'eo_value' GROUP BY h.name")).all()
            batch_ids = [r[0] for r in conn.execute(text("SELECT batch_id FROM ingest_batches"))]
    finally:
        engine.dispose()
    total = HOSTS * BATCHES * SERIES
    assert sorted(rows) == [(h, BATCHES * SERIES, BATCHES * SERIES, 0.0, float(total / HOSTS - 1)) for h in sorted(hosts)]
    assert sorted(batch_ids) == sorted(every)  # every batch stored, each once
    # Each answer that said "stored" counted its samples; the rest were stored unanswered.
    assert accepted == len(stored) * SERIES
    unanswered = every - set(stored)
    assert len(unanswered) <= HOSTS  # at most the one batch in flight per agent at the kill
