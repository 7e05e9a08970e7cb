"""Drift over HTTP: agents report version and config hash; GET /api/v1/hosts flags the odd ones."""
from __future__ import annotations

import json
import time
import uuid

from tests.harness import http


def push(console, host: str, agent: dict) -> tuple[int, dict]:
    body = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(), "agent": agent,
            "metrics": [{"name": "node_load1", "type": "gauge", "labels": {},
                         "points": [[int(time.time() * 1000), 0.5]]}], "logs": []}
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(body).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {console.agent_token(host)}"})
    return resp.status, resp.json()


def test_hosts_expose_config_hash_and_drift(console):
    for host, version, chash in (("drift-a", "0.1.0", "aaaa"), ("drift-b", "0.1.0", "aaaa"),
                                 ("drift-c", "0.1.0", "aaaa"), ("drift-d", "0.0.9", "aaaa"),
                                 ("drift-e", "0.1.0", "bbbb")):
        status, body = push(console, host, {"version": version, "interval": 10, "config_hash": chash})
        assert status == 200, body
    # An older agent without config_hash is still accepted and not judged on it.
    status, body = push(console, "drift-old", {"version": "0.1.0", "interval": 10})
    assert status == 200, body
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts",
                                                   token=console.api_token("viewer")).json()}
    assert hosts["drift-a"]["config_hash"] == "aaaa" and hosts["drift-a"]["drift"] is False
    assert hosts["drift-d"]["drift"] is True and hosts["drift-d"]["drift_fields"] == ["agent_version"]
    assert hosts["drift-e"]["drift"] is True and hosts["drift-e"]["drift_fields"] == ["config_hash"]
    assert hosts["drift-old"]["config_hash"] is None and hosts["drift-old"]["drift"] is False


def test_invalid_config_hash_is_rejected_whole(console):
    before = console.count("samples")
    status, body = push(console, "drift-bad", {"version": "0.1.0", "config_hash": 12})
    assert status == 400
    assert body["error"]["details"]["path"] == "agent.config_hash"
    status, body = push(console, "drift-bad", {"version": "0.1.0", "config_hash": "x" * 65})
    assert status == 400
    assert console.count("samples") == before
