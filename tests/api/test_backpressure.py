"""Ingest backpressure and availability: 429 + Retry-After per host rate and for a saturated
write queue, 503 storage_unavailable on a full disk that recovers without a restart, the
idempotency window, and the agent health shown with each host."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid

import pytest
from sqlalchemy import text

from console.ingest.retention import prune_batch_ids
from tests.conftest import need
from tests.harness import ConsoleHarness, batch, http

GAUGE = [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[int(time.time() * 1000), 0.5]]}]


@pytest.fixture
def limited(tmp_path):
    harness = ConsoleHarness(tmp_path, ingest_rate_per_host=2.0, ingest_burst_per_host=3,
                             ingest_max_inflight=1).start()
    yield harness
    harness.close()


def test_a_host_over_its_rate_gets_429_with_retry_after(limited):
    token = limited.agent_token("fast-1")
    other = limited.agent_token("calm-1")
    statuses = [limited.push("fast-1", token, GAUGE)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]  # the burst
    resp = http("POST", limited.url + "/api/v1/ingest",
                b'{"host": "fast-1", "batch_id": "x1", "metrics": []}',
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert resp.status == 429
    assert resp.json()["error"]["code"] == "rate_limited"
    assert int(resp.headers["retry-after"]) >= 1
    assert limited.push("calm-1", other, GAUGE)[0] == 200  # buckets are per host
    time.sleep(float(resp.headers["retry-after"]))
    assert limited.push("fast-1", token, GAUGE)[0] == 200


def series_points(count: int, ts: int) -> list:
    return [{"name": "node_value", "type": "gauge", "labels": {"n": str(i)}, "points": [[ts, float(i)]]}
            for i in range(count)]


def test_a_host_over_its_samples_or_lines_rate_gets_429_and_nothing_is_stored(tmp_path):
    harness = ConsoleHarness(tmp_path, ingest_samples_per_host=100.0, ingest_samples_burst_per_host=1500,
                             ingest_lines_per_host=50.0, ingest_lines_burst_per_host=300).start()
    try:
        token = harness.agent_token("busy-1")
        now = int(time.time() * 1000)
        assert harness.push("busy-1", token, series_points(1000, now))[0] == 200
        before = harness.count("samples")
        status, body = harness.push("busy-1", token, series_points(1000, now + 1000))
        assert status == 429 and body["error"]["code"] == "rate_limited"
        assert body["error"]["details"]["limit"] == "samples"
        assert 4 < body["error"]["details"]["retry_after_seconds"] <= 6  # 500 samples short at 100/s
        assert harness.count("samples") == before
        # A batch larger than the burst passes when the host's bucket is full (a new host's is).
        big = harness.agent_token("big-1")
        assert harness.push("big-1", big, series_points(2000, now + 2000))[0] == 200
        logs = [{"ts": now, "source": "app", "line": f"line {i}", "labels": {}} for i in range(250)]
        assert harness.push("busy-1", token, [], logs)[0] == 200
        status, body = harness.push("busy-1", token, [], logs)
        assert status == 429 and body["error"]["details"]["limit"] == "lines"
        assert harness.count("log_records") == 250
    finally:
        harness.close()


def test_the_default_limits_never_throttle_an_agent(tmp_path):
    """An agent draining its spool sends 500-series batches back to back; with the
    shipped defaults none of them is refused."""
    from console.config import ConsoleConfig

    defaults = {key: ConsoleConfig.model_fields[key].default for key in (
        "ingest_rate_per_host", "ingest_burst_per_host", "ingest_samples_per_host",
        "ingest_samples_burst_per_host", "ingest_lines_per_host", "ingest_lines_burst_per_host")}
    harness = ConsoleHarness(tmp_path, **defaults).start()
    try:
        token = harness.agent_token("steady-1")
        now = int(time.time() * 1000) - 3_600_000
        logs = [{"ts": now, "source": "app", "line": f"GET /x {i}", "labels": {}} for i in range(200)]
        statuses = [harness.push("steady-1", token, series_points(500, now + b * 10_000), logs)[0]
                    for b in range(60)]
        assert statuses == [200] * 60
    finally:
        harness.close()


def test_a_saturated_write_queue_gets_429(limited):
    token = limited.agent_token("queue-1")
    release = threading.Event()
    # Occupy the single database writer thread, as a slow disk would.
    blocker = asyncio.run_coroutine_threadsafe(limited.services.db.on_writer(release.wait, 20), limited.loop)
    first: list = []
    waiting = threading.Thread(target=lambda: first.append(limited.push("queue-1", token, GAUGE)))
    waiting.start()
    deadline = time.monotonic() + 10
    while limited.services.admission.inflight < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    status, body = limited.push("queue-1", token, GAUGE)
    release.set()
    waiting.join(10)
    blocker.result(10)
    assert status == 429 and body["error"]["code"] == "ingest_saturated"
    assert first[0][0] == 200
    assert limited.services.admission.inflight == 0


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        need("tmpfs", "mounting a small tmpfs to fill needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        need("tmpfs", f"cannot mount a small tmpfs to fill: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(filler) -> None:
    """Write zeros into ``filler`` until its file system is full to the last block."""
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass  # ENOSPC: the disk is full, which is the point


def test_full_disk_answers_503_and_recovers_without_restart(small_disk):
    harness = ConsoleHarness(small_disk / "data", storage_retry_after=7).start()
    try:
        token = harness.agent_token("disk-1")
        assert harness.push("disk-1", token, GAUGE)[0] == 200
        filler = small_disk / "filler"
        fill(filler)
        logs = [{"ts": int(time.time() * 1000) + i, "source": "/var/log/big", "line": "x" * 500} for i in range(3000)]
        batch_id = uuid.uuid4().hex
        later = [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[int(time.time() * 1000) + 1, 0.7]]}]
        body = json.dumps(batch("disk-1", later, logs, batch_id)).encode()
        resp = http("POST", harness.url + "/api/v1/ingest", body,
                    {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert resp.status == 503, resp.body
        assert resp.json()["error"]["code"] == "storage_unavailable"
        assert resp.headers["retry-after"] == "7"
        before = harness.count("log_records")
        filler.unlink()
        status, body = harness.push("disk-1", token, later, logs, batch_id=batch_id)
        assert status == 200, body
        assert (body["accepted_samples"], body["accepted_logs"], body["duplicate"]) == (1, 3000, False)
        assert harness.count("log_records") == before + 3000
    finally:
        harness.close()


def test_batch_ids_are_remembered_for_the_window_then_pruned(console):
    token = console.agent_token("idem-1")
    assert console.push("idem-1", token, GAUGE, batch_id="keep-me")[1]["duplicate"] is False
    assert console.push("idem-1", token, GAUGE, batch_id="keep-me")[1]["duplicate"] is True
    db = console.services.db
    now = time.time()
    assert db.run(prune_batch_ids, now - 3600) == 0  # younger than the cutoff: kept
    assert console.push("idem-1", token, GAUGE, batch_id="keep-me")[1]["duplicate"] is True
    assert db.run(prune_batch_ids, now + 1) >= 1
    assert console.count("ingest_batches") == 0


def test_hosts_carry_agent_health_from_self_metrics(console):
    token = console.agent_token("health-1")
    viewer = console.api_token("viewer")
    ts = int(time.time() * 1000)

    def g(name, value, **labels):
        return {"name": name, "type": "counter" if name.endswith("_total") else "gauge",
                "labels": labels, "points": [[ts, value]]}

    metrics = [g("fleetdeck_agent_spool_bytes", 123456), g("fleetdeck_agent_batches_queued", 42),
               g("fleetdeck_agent_dropped_samples_total", 7, reason="spool_full"),
               g("fleetdeck_agent_dropped_samples_total", 1, reason="invalid", collector="host"),
               g("fleetdeck_agent_send_errors_total", 5, code="503"),
               g("fleetdeck_agent_send_errors_total", 2, code="connection_failed"),
               g("fleetdeck_agent_collector_success", 1, collector="host"),
               g("fleetdeck_agent_collector_success", 0, collector="docker"),
               g("fleetdeck_agent_collect_duration_seconds", 0.012, collector="host")]
    assert console.push("health-1", token, metrics)[0] == 200
    console.push("plain-1", console.agent_token("plain-1"), GAUGE)
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
    health = hosts["health-1"]["agent_health"]
    assert health["status"] == "degraded"
    assert health["spool_bytes"] == 123456 and health["batches_queued"] == 42
    assert health["dropped_samples"] == 8
    assert health["send_errors"] == {"503": 5, "connection_failed": 2}
    assert health["failing_collectors"] == ["docker"]
    assert health["collect_duration_seconds"] == {"host": 0.012}
    assert any("42 batches queued" in p for p in health["problems"])
    assert hosts["plain-1"]["agent_health"]["status"] == "unknown"



def test_samples_a_relabel_rule_drops_are_counted_apart_and_no_problem(console):
    token = console.agent_token("health-2")
    viewer = console.api_token("viewer")
    ts = int(time.time() * 1000)

    def drops(reason, value, collector="host"):
        return {"name": "fleetdeck_agent_dropped_samples_total", "type": "counter",
                "labels": {"collector": collector, "reason": reason}, "points": [[ts, value]]}

    metrics = [drops("relabel", 3367), drops("series_limit", 0), drops("invalid", 0),
               {"name": "fleetdeck_agent_collector_success", "type": "gauge", "labels": {"collector": "host"},
                "points": [[ts, 1]]}]
    assert console.push("health-2", token, metrics)[0] == 200

    def health():
        hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
        return hosts["health-2"]["agent_health"]

    assert health()["status"] == "ok", health()
    assert health()["problems"] == []
    assert health()["dropped_samples"] == 0 and health()["relabel_dropped_samples"] == 3367
    # Over the series limit samples are lost: that is a problem.
    ts += 1000
    assert console.push("health-2", token, [drops("relabel", 3400), drops("series_limit", 12), drops("invalid", 0),
                                            metrics[-1] | {"points": [[ts, 1]]}])[0] == 200
    assert health()["status"] == "degraded"
    assert health()["problems"] == ["12 samples dropped"]
    assert health()["dropped_samples"] == 12 and health()["relabel_dropped_samples"] == 3400


def test_a_small_write_into_reused_wal_blocks_does_not_end_the_failure(small_disk):
    """After a checkpoint a small write (a background job's) fits into WAL blocks SQLite
    already holds and succeeds on a full disk: that alone must not end the write failure,
    or /readyz answers ready while the disk is still full."""
    harness = ConsoleHarness(small_disk / "data", storage_retry_after=7).start()
    try:
        token = harness.agent_token("disk-3")
        assert harness.push("disk-3", token, GAUGE)[0] == 200
        db = harness.services.db
        db.run(lambda s: s.execute(text("PRAGMA wal_checkpoint(FULL)")))
        filler = small_disk / "filler"
        fill(filler)
        logs = [{"ts": int(time.time() * 1000) + i, "source": "/var/log/big", "line": "x" * 500} for i in range(3000)]
        status, body = harness.push("disk-3", token, GAUGE, logs)
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        assert db.write_failure is not None
        small = asyncio.run_coroutine_threadsafe(db.write(lambda s: s.execute(text("PRAGMA user_version = 0"))),
                                                 harness.loop)
        small.result(10)  # the small write itself succeeds, in the WAL's own blocks
        assert db.write_failure is not None
        resp = http("GET", harness.url + "/readyz")
        assert resp.status == 503 and resp.json()["error"]["code"] == "storage_unavailable", resp.body
        filler.unlink()
        resp = http("GET", harness.url + "/readyz")
        assert resp.status == 200 and db.write_failure is None, resp.body
    finally:
        harness.close()


@pytest.mark.parametrize("checkpointed", [False, True], ids=["wal-growing", "after-checkpoint"])
def test_readyz_fails_while_storage_cannot_be_written(small_disk, checkpointed):
    """A full disk: /readyz answers 503 after a write failed (and its own write probe
    fails too), and ready again once the disk has room, without any ingest in between.
    After a checkpoint SQLite writes its WAL again into blocks it already holds, where
    one page fits on a full disk: the probe must still see the disk full."""
    harness = ConsoleHarness(small_disk / "data", storage_retry_after=7).start()
    try:
        token = harness.agent_token("disk-2")
        assert harness.push("disk-2", token, GAUGE)[0] == 200
        assert http("GET", harness.url + "/readyz").status == 200
        if checkpointed:
            harness.services.db.run(lambda s: s.execute(text("PRAGMA wal_checkpoint(FULL)")))
        filler = small_disk / "filler"
        fill(filler)
        logs = [{"ts": int(time.time() * 1000) + i, "source": "/var/log/big", "line": "x" * 500} for i in range(3000)]
        status, body = harness.push("disk-2", token, GAUGE, logs)
        assert status == 503 and body["error"]["code"] == "storage_unavailable", body
        for _ in range(3):  # each call probes with a write of its own, which fails too
            resp = http("GET", harness.url + "/readyz")
            assert resp.status == 503, resp.body
            assert resp.json()["error"]["code"] == "storage_unavailable"
            assert resp.headers["retry-after"] == "7"
        filler.unlink()
        resp = http("GET", harness.url + "/readyz")
        assert resp.status == 200, resp.body
        assert resp.json()["status"] == "ready"
        status, body = harness.push("disk-2", token, GAUGE, logs)
        assert status == 200 and body["accepted_logs"] == 3000, body
    finally:
        harness.close()
