"""Retiring a host: ``DELETE /api/v1/hosts/HOST`` (admin, audited) and ``fleetdeck hosts
delete HOST`` remove its series, samples, rollups and log lines, and revoke its agent
tokens; other hosts keep everything."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from tests.integration.procs import REPO, child_env


@pytest.fixture
def harness(db_console):
    """SQLite and PostgreSQL (tests/conftest.py)."""
    return db_console


def seed(h, host: str, word: str) -> str:
    token = h.agent_token(host)
    now = int(time.time() * 1000)
    metrics = [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[now - 2000, 0.5], [now - 1000, 0.6]]},
               {"name": "app_requests_total", "type": "counter", "labels": {"code": "200"}, "points": [[now - 1000, 7.0]]}]
    logs = [{"ts": now - 500 + i, "source": "/var/log/app.log", "line": f"{word} line {i}"} for i in range(5)]
    status, body = h.push(host, token, metrics, logs)
    assert status == 200 and (body["accepted_samples"], body["accepted_logs"]) == (3, 5), body
    return token


def stored(h, host: str) -> dict:
    def q(sql: str) -> int:
        return h.services.db.run(lambda s: s.execute(text(sql), {"n": host}).scalar_one())

    return {"hosts": q("SELECT COUNT(*) FROM hosts WHERE name = :n"),
            "series": q("SELECT COUNT(*) FROM series s JOIN hosts h ON h.id = s.host_id WHERE h.name = :n"),
            "samples": q("SELECT COUNT(*) FROM samples x JOIN series s ON s.id = x.series_id "
                         "JOIN hosts h ON h.id = s.host_id WHERE h.name = :n"),
            "logs": q("SELECT COUNT(*) FROM log_records l JOIN hosts h ON h.id = l.host_id WHERE h.name = :n")}


def cli(h, token: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=child_env(FLEETDECK_URL=h.url, FLEETDECK_TOKEN=token), timeout=60, stdin=subprocess.DEVNULL)


def test_only_admins_may_retire_a_host_and_unknown_hosts_are_404(harness):
    seed(harness, "guarded-1", "guarded")
    for role in ("viewer", "deployer"):
        resp = harness.request("DELETE", "/api/v1/hosts/guarded-1", token=harness.api_token(role, f"del-{role}"))
        assert resp.status == 403, resp.body
    assert harness.request("DELETE", "/api/v1/hosts/guarded-1").status == 401
    resp = harness.request("DELETE", "/api/v1/hosts/no-such-host", token=harness.api_token("admin", "del-admin-0"))
    assert resp.status == 404 and resp.json()["error"]["code"] == "host_not_found"
    assert stored(harness, "guarded-1") == {"hosts": 1, "series": 2, "samples": 3, "logs": 5}


def test_hosts_delete_retires_the_host_and_nothing_else(harness):
    seed(harness, "keep-1", "keeper")
    old_token = seed(harness, "retired-1", "retiree")
    admin = harness.api_token("admin", "del-admin-1")
    refused = cli(harness, admin, "hosts", "delete", "retired-1")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert stored(harness, "retired-1")["samples"] == 3
    done = cli(harness, admin, "hosts", "delete", "retired-1", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted host retired-1: 2 series, 3 samples, 0 rollup rows, 5 log lines; 1 agent token(s) revoked" \
        in done.stdout
    assert stored(harness, "retired-1") == {"hosts": 0, "series": 0, "samples": 0, "logs": 0}
    assert stored(harness, "keep-1") == {"hosts": 1, "series": 2, "samples": 3, "logs": 5}
    viewer = harness.api_token("viewer", "del-viewer-2")
    hosts = [h["host"] for h in harness.request("GET", "/api/v1/hosts", token=viewer).json()]
    assert "retired-1" not in hosts and "keep-1" in hosts
    # the search index forgot its lines too
    found = harness.request("GET", "/api/v1/logs?q=retiree", token=viewer).json()["logs"]
    assert found == []
    assert len(harness.request("GET", "/api/v1/logs?q=keeper", token=viewer).json()["logs"]) == 5
    # its agent token is revoked: a forgotten agent cannot bring it back
    status, body = harness.push("retired-1", old_token, [])
    assert status == 401, body
    entries = harness.request("GET", "/api/v1/audit", token=admin).json()["entries"]
    entry = next(e for e in entries if e["action"] == "hosts.delete")
    assert entry["target"] == "host:retired-1" and entry["actor"] == "api:del-admin-1"
    assert entry["details"] == {"series": 2, "samples": 3, "rollups": 0, "logs": 5, "revoked_tokens": 1}
    again = cli(harness, admin, "hosts", "delete", "retired-1", "--yes")
    assert again.returncode == 1 and "host_not_found" in again.stderr


def test_a_retired_host_enrolled_again_starts_empty(harness):
    seed(harness, "reborn-1", "first-life")
    admin = harness.api_token("admin", "del-admin-3")
    assert harness.request("DELETE", "/api/v1/hosts/reborn-1", token=admin).status == 200
    # A new host may get the old row id (SQLite); no cached series id of the old one is reused.
    seed(harness, "reborn-1", "second-life")
    assert stored(harness, "reborn-1") == {"hosts": 1, "series": 2, "samples": 3, "logs": 5}
    orphans = harness.services.db.run(lambda s: s.execute(text(
        "SELECT COUNT(*) FROM samples WHERE series_id NOT IN (SELECT id FROM series)")).scalar_one())
    assert orphans == 0
