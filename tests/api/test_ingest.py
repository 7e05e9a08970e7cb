"""Ingest contract (the README's ingest body) against a real console over HTTP."""
from __future__ import annotations

import gzip
import json
import time
import uuid

import pytest

from tests.harness import batch


def now_ms() -> int:
    return int(time.time() * 1000)


def sample_metrics(ts: int) -> list:
    return [
        {"name": "node_load1", "type": "gauge", "labels": {}, "points": [[ts - 10_000, 0.42], [ts, 0.40]]},
        {"name": "node_cpu_seconds_total", "type": "counter", "labels": {"cpu": "0", "mode": "idle"},
         "points": [[ts, 1234.5]]},
    ]


@pytest.fixture(scope="module")
def agent(console):
    return "ingest-1", console.agent_token("ingest-1")


def stored(console) -> tuple[int, int, int]:
    return console.count("samples"), console.count("log_records"), console.count("ingest_batches")


def assert_json_error(resp, status: int, code: str) -> None:
    assert resp.status == status, resp.body
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]


def post_raw(console, token, raw: bytes, headers: dict | None = None):
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    hdrs.update(headers or {})
    return console.request("POST", "/api/v1/ingest", raw, headers=hdrs)


def test_batch_is_stored_and_answered(console, agent):
    host, token = agent
    before = stored(console)
    logs = [{"ts": now_ms(), "source": "/var/log/syslog", "line": "hello", "labels": {}}]
    status, body = console.push(host, token, sample_metrics(now_ms()), logs)
    assert status == 200
    assert body == {"accepted_samples": 3, "accepted_logs": 1, "duplicate": False}
    assert stored(console) == (before[0] + 3, before[1] + 1, before[2] + 1)


def test_replayed_batch_id_is_stored_once(console, agent):
    host, token = agent
    batch_id = str(uuid.uuid4())
    metrics = sample_metrics(now_ms() + 1)
    before = stored(console)
    first = console.push(host, token, metrics, batch_id=batch_id)
    second = console.push(host, token, metrics, batch_id=batch_id)
    assert first == (200, {"accepted_samples": 3, "accepted_logs": 0, "duplicate": False})
    assert second == (200, {"accepted_samples": 0, "accepted_logs": 0, "duplicate": True})
    assert stored(console) == (before[0] + 3, before[1], before[2] + 1)


def test_gzip_body_is_accepted(console, agent):
    host, token = agent
    status, body = console.push(host, token, sample_metrics(now_ms() + 2), compress=True)
    assert (status, body["accepted_samples"]) == (200, 3)


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "invalid_json"),
    (b"[]", "invalid_batch"),
    (json.dumps({"host": "ingest-1", "batch_id": "x1", "metrics": [
        {"name": "ok", "labels": {"bad-label": "v"}, "points": [[1, 1.0]]}]}).encode(), "invalid_batch"),
    (json.dumps({"host": "ingest-1", "batch_id": "x2", "metrics": [
        {"name": "ok", "points": [[1, 1.0]]}, {"name": "ok2", "points": [["soon", 1.0]]}]}).encode(), "invalid_batch"),
])
def test_malformed_body_is_400_and_stores_nothing(console, agent, raw, code):
    _, token = agent
    before = stored(console)
    assert_json_error(post_raw(console, token, raw), 400, code)
    assert stored(console) == before


def test_wrong_or_missing_token_is_401(console, agent):
    host, _ = agent
    raw = json.dumps(batch(host, sample_metrics(now_ms()))).encode()
    before = stored(console)
    assert_json_error(post_raw(console, "fda_not-a-real-token", raw), 401, "unauthorized")
    resp = console.request("POST", "/api/v1/ingest", raw, headers={"Content-Type": "application/json"})
    assert_json_error(resp, 401, "unauthorized")
    assert stored(console) == before


def test_token_for_another_host_is_403(console, agent):
    _, token = agent
    before = stored(console)
    raw = json.dumps(batch("someone-else", sample_metrics(now_ms()))).encode()
    assert_json_error(post_raw(console, token, raw), 403, "host_mismatch")
    assert stored(console) == before


def test_api_token_cannot_ingest(console, agent):
    host, _ = agent
    raw = json.dumps(batch(host, sample_metrics(now_ms()))).encode()
    assert_json_error(post_raw(console, console.api_token("admin"), raw), 403, "forbidden")


def test_oversized_body_is_413_and_stores_nothing(console, agent):
    host, token = agent
    cap = console.config.console.max_body_bytes
    big = {"ts": now_ms(), "source": "s", "line": "x" * 60_000, "labels": {}}
    raw = json.dumps(batch(host, [], [big] * (cap // 60_000 + 2))).encode()
    assert len(raw) > cap
    before = stored(console)
    assert_json_error(post_raw(console, token, raw), 413, "body_too_large")
    # A small gzip body that inflates past the cap is refused the same way.
    assert_json_error(post_raw(console, token, gzip.compress(raw), {"Content-Encoding": "gzip"}),
                      413, "body_too_large")
    assert stored(console) == before


def test_corrupt_gzip_is_400(console, agent):
    _, token = agent
    assert_json_error(post_raw(console, token, b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}),
                      400, "invalid_gzip")


def test_operations_endpoints(console, agent):
    assert console.request("GET", "/healthz").json() == {"status": "ok"}
    ready = console.request("GET", "/readyz")
    assert ready.status == 200 and ready.json()["status"] == "ready"
    metrics = console.request("GET", "/metrics")
    assert metrics.status == 200
    text = metrics.body.decode()
    assert "fleetdeck_ingest_samples_total" in text
    assert 'fleetdeck_http_request_duration_seconds_bucket{' in text
    assert "python_gc_objects_collected_total" not in text  # own registry, not the global one


def test_unknown_api_route_is_json_404(console):
    assert_json_error(console.request("GET", "/api/v1/nope"), 404, "not_found")


def test_unusable_content_length_is_a_client_error(console, agent):
    """``Content-Length: ²`` (str.isdigit() is true for it, int() refuses it) is answered
    4xx, never 500."""
    import socket

    host, token = agent
    port = int(console.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: \xb2\r\n\r\n{}")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer else None
    assert status is not None and 400 <= status < 500, answer[:300]


def test_batches_waiting_for_the_writer_share_one_commit(console):
    """Group commit: batches that arrive while the writer is busy are stored in one
    transaction, each answered after that commit, a batch id sent twice stored once."""
    import asyncio
    import threading

    from sqlalchemy import event

    hosts = [f"group-{i}" for i in range(6)]
    tokens = {h: console.agent_token(h) for h in hosts}
    commits: list[str] = []  # the transactions that stored batch ids
    engine = console.services.db.engine

    def on_execute(conn, cursor, statement, *_):  # noqa: ANN001 - SQLAlchemy event arguments
        if "ingest_batches" in statement and statement.lstrip().upper().startswith("INSERT"):
            conn.info["stores_batches"] = True

    def on_commit(conn):  # noqa: ANN001 - SQLAlchemy connection
        if conn.info.pop("stores_batches", False):
            commits.append(threading.current_thread().name)

    release = threading.Event()
    blocker = asyncio.run_coroutine_threadsafe(console.services.db.on_writer(release.wait, 20), console.loop)
    ts = now_ms() - 60_000
    replayed = str(uuid.uuid4())
    jobs = [(h, sample_metrics(ts + i), None) for i, h in enumerate(hosts)] + [
        (hosts[0], sample_metrics(ts + 100), replayed), (hosts[0], sample_metrics(ts + 100), replayed)]
    answers: list = [None] * len(jobs)

    def send(i: int) -> None:
        host, metrics, batch_id = jobs[i]
        answers[i] = console.push(host, tokens[host], metrics, batch_id=batch_id)

    before = stored(console)
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while console.services.admission.inflight < len(jobs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert console.services.admission.inflight == len(jobs)
        assert all(a is None for a in answers)  # nobody answered before the commit
        release.set()
        for t in threads:
            t.join(20)
        blocker.result(10)
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "before_cursor_execute", on_execute)
    assert len(commits) == 1, commits
    assert [a[0] for a in answers] == [200] * len(jobs)
    assert sorted(a[1]["duplicate"] for a in answers[-2:]) == [False, True]
    assert sum(a[1]["accepted_samples"] for a in answers) == 3 * (len(hosts) + 1)
    assert stored(console) == (before[0] + 3 * (len(hosts) + 1), before[1], before[2] + len(hosts) + 1)


def test_a_host_deleted_behind_the_writer_is_created_again_with_its_samples(console):
    """A host retired by another process (``fleetdeck hosts delete`` while the console
    serves) leaves the writer's host and series caches stale; the next batch of that host
    must create it again and store its samples under it, not under the deleted ids."""
    from console.fleet.retire import retire_host

    host = "gone-1"
    ts = now_ms() - 30_000
    assert console.push(host, console.agent_token(host), sample_metrics(ts))[0] == 200
    console.services.db.run(retire_host, console.services.audit, time.time(), "test", "test", host)
    status, body = console.push(host, console.agent_token(host), sample_metrics(ts + 1))
    assert (status, body["accepted_samples"]) == (200, 3)
    from sqlalchemy import text

    rows = console.services.db.run(lambda s: s.execute(text(
        "SELECT count(*) FROM samples s JOIN series r ON r.id = s.series_id JOIN hosts h ON h.id = r.host_id "
        "WHERE h.name = :h"), {"h": host}).scalar_one())
    assert rows == 3
    orphans = console.services.db.run(lambda s: s.execute(text(
        "SELECT count(*) FROM samples WHERE series_id NOT IN (SELECT id FROM series)")).scalar_one())
    assert orphans == 0
