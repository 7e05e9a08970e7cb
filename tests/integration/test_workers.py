"""``fleetdeck serve --workers 2`` as a real process tree on SQLite: a live socket on one
worker receives the frames of batches another worker stored (through the real datagram
relay), errors are JSON on every worker, a full disk is answered 503 by the workers and
they recover once space is freed, and a bad ``workers`` value refuses to start (as does
``fleetdeck run``, one process, with ``workers`` above 1)."""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import tornado.httpclient
import tornado.websocket

from tests.harness import batch, wait_for
from tests.integration.procs import REPO, ConsoleProcess, child_env, tmpfs


def connection_on(console: ConsoleProcess, want: int | None = None, avoid: int | None = None
                  ) -> tuple[http.client.HTTPConnection, int]:
    """A keep-alive connection to the console that the kernel gave to worker ``want`` (or
    to any worker but ``avoid``); -> (connection, that worker's pid).

    Tried for 30 s, not a number of times: a worker whose process exists may still be
    starting, and until it accepts every connection goes to the other one."""
    deadline = time.monotonic() + 30
    tried = 0
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
        conn.connect()
        port = conn.sock.getsockname()[1]
        pid = wait_for(lambda: console.worker_serving(port), 10, "the worker holding the connection")
        tried += 1
        if (want is None or pid == want) and pid != avoid:
            return conn, pid
        conn.close()
        time.sleep(0.05)
    raise AssertionError(f"{tried} connections in 30 s and none on the worker wanted ({want=}, {avoid=}; "
                         f"workers now {console.worker_pids()})")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    conn.request(method, path, body, headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    assert resp.getheader("Content-Type", "").startswith("application/json"), (resp.status, raw[:200])
    return resp.status, json.loads(raw)


def remote_topics(conn: http.client.HTTPConnection, pid: int) -> float:
    """The live topics worker ``pid`` knows sockets elsewhere watch (each worker's own, under
    its pid, on whichever worker answers)."""
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    return float(re.search(rf'^fleetdeck_live_remote_topics{{pid="{pid}"}} (\S+)$', body, re.M).group(1))


def samples(host: str, count: int) -> bytes:
    now = int(time.time() * 1000)
    metrics = [{"name": "workers_probe", "labels": {"n": str(i)}, "points": [[now, float(i)]]} for i in range(count)]
    return json.dumps(batch(host, metrics)).encode()


def test_a_live_socket_on_one_worker_gets_the_frames_of_batches_stored_by_another(tmp_path):
    console = ConsoleProcess(tmp_path, args=("--workers", "2")).start()
    try:
        wait_for(lambda: len(console.worker_pids()) == 2, 30, "two workers")
        host = "live-" + uuid.uuid4().hex[:8]
        agent = {"Authorization": f"Bearer {console.agent_token(host)}", "Content-Type": "application/json"}
        viewer = console.api_token(f"viewer-{host}", "viewer")

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
                console.url.replace("http", "ws") + "/api/v1/live", headers={"Authorization": f"Bearer {viewer}"}))
            ws.write_message(json.dumps({"subscribe": [f"host:{host}"]}))
            assert json.loads(await asyncio.wait_for(ws.read_message(), 10)) == {"subscribed": [f"host:{host}"]}
            ws_port = ws.protocol.stream.socket.getsockname()[1]
            ws_worker = await loop.run_in_executor(None, wait_for, lambda: console.worker_serving(ws_port), 10,
                                                   "the worker holding the socket")
            other, other_pid = await loop.run_in_executor(None, lambda: connection_on(console, avoid=ws_worker))
            same, _ = await loop.run_in_executor(None, lambda: connection_on(console, want=ws_worker))
            # The other worker relays frames of topics it heard a socket elsewhere subscribe to.
            await loop.run_in_executor(None, wait_for, lambda: remote_topics(other, other_pid) >= 1, 10,
                                       "the other worker to learn the socket's topic")
            status, body = await loop.run_in_executor(None, request, other, "POST", "/api/v1/ingest",
                                                      samples(host, 3), agent)
            assert (status, body["accepted_samples"]) == (200, 3), body
            got = json.loads(await asyncio.wait_for(ws.read_message(), 2.0))
            assert got["topic"] == f"host:{host}" and got["data"]["accepted_samples"] == 3, got
            # A batch stored by the socket's own worker arrives once, not again through the relay.
            status, body = await loop.run_in_executor(None, request, same, "POST", "/api/v1/ingest",
                                                      samples(host, 2), agent)
            assert status == 200, body
            got = json.loads(await asyncio.wait_for(ws.read_message(), 2.0))
            assert got["data"]["accepted_samples"] == 2, got
            try:
                extra = await asyncio.wait_for(ws.read_message(), 0.7)
                raise AssertionError(f"a frame twice: {extra}")
            except asyncio.TimeoutError:
                pass
            assert other_pid != ws_worker
            ws.close()
            other.close()
            same.close()

        asyncio.run(scenario())
    finally:
        console.stop()


def test_errors_are_json_on_every_worker(tmp_path):
    console = ConsoleProcess(tmp_path, args=("--workers", "2")).start()
    try:
        wait_for(lambda: len(console.worker_pids()) == 2, 30, "two workers")
        token = console.agent_token("json-errors")
        for pid in console.worker_pids():
            conn, _ = connection_on(console, want=pid)
            status, body = request(conn, "POST", "/api/v1/ingest", b"{not json",
                                   {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert status == 400 and body["error"]["code"] == "invalid_json", body
            status, body = request(conn, "GET", "/api/v1/hosts")
            assert status == 401 and set(body["error"]) == {"code", "message", "details"}, body
            conn.close()
    finally:
        console.stop()


def test_a_full_disk_is_answered_503_by_the_workers_and_they_recover(tmp_path):
    with tmpfs(tmp_path / "disk", "6m") as disk:
        console = ConsoleProcess(disk / "data", args=("--workers", "2"), FLEETDECK_STORAGE_RETRY_AFTER="7")
        console.data_dir.mkdir()
        console.start()
        try:
            wait_for(lambda: len(console.worker_pids()) == 2, 30, "two workers")
            agent = {"Authorization": f"Bearer {console.agent_token('disk-1')}", "Content-Type": "application/json"}
            workers = {pid: connection_on(console, want=pid)[0] for pid in console.worker_pids()}
            for conn in workers.values():
                assert request(conn, "POST", "/api/v1/ingest", samples("disk-1", 1), agent)[0] == 200
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as fh:
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                except OSError:
                    pass  # ENOSPC: full, as wanted
            logs = [{"ts": int(time.time() * 1000) + i, "source": "/var/log/big", "line": "x" * 500}
                    for i in range(3000)]
            bodies = {pid: json.dumps(batch("disk-1", [], logs, uuid.uuid4().hex)).encode() for pid in workers}
            for pid, conn in workers.items():
                conn.request("POST", "/api/v1/ingest", bodies[pid], agent)
                resp = conn.getresponse()
                body = json.loads(resp.read())
                assert resp.status == 503 and body["error"]["code"] == "storage_unavailable", (pid, body)
                assert resp.getheader("Retry-After") == "7"
            filler.unlink()
            for pid, conn in workers.items():  # the same batch again: stored once, on the worker that refused it
                status, body = request(conn, "POST", "/api/v1/ingest", bodies[pid], agent)
                assert (status, body["accepted_logs"], body["duplicate"]) == (200, 3000, False), body
            assert console.sql("SELECT count(*) FROM log_records")[0][0] == 3000 * len(workers)
        finally:
            console.stop()


def test_a_bad_workers_value_refuses_to_start_naming_its_source(tmp_path):
    env = child_env(FLEETDECK_DATA_DIR=str(tmp_path), FLEETDECK_WORKERS="0")
    done = subprocess.run([sys.executable, "-m", "console.cli", "serve"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "console.workers: must be greater than or equal to 1, got '0' (from environment FLEETDECK_WORKERS)" \
        in done.stderr, done.stderr
    env = child_env(FLEETDECK_DATABASE_URL="sqlite:///:memory:", FLEETDECK_DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "console.cli", "serve", "--workers", "3"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "in-memory SQLite" in done.stderr, done.stderr
    assert "command-line flag --workers" in done.stderr, done.stderr
    assert not Path(tmp_path / "fleetdeck.db").exists()
    env = child_env(FLEETDECK_DATA_DIR=str(tmp_path), FLEETDECK_WORKERS="2")
    done = subprocess.run([sys.executable, "-m", "console.cli", "run", "--no-agent"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "workers is 2 (from environment FLEETDECK_WORKERS), but `fleetdeck run` runs one process" in done.stderr
