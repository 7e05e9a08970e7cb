"""An agent whose token was revoked is shown as such on the hosts view: its own metrics
cannot reach the console, so the console counts the refused attempts itself."""
from __future__ import annotations

import time

from tests.harness import ConsoleHarness


def _health(console: ConsoleHarness, admin: str, host: str) -> dict:
    hosts = console.request("GET", "/api/v1/hosts", token=admin).json()
    return next(h for h in hosts if h["host"] == host)["agent_health"]


def test_a_revoked_agent_token_shows_on_the_hosts_view_until_the_agent_is_back(tmp_path):
    console = ConsoleHarness(tmp_path).start()
    try:
        admin = console.api_token("admin", "refusals")
        token = console.agent_token("refused-1")
        metric = {"name": "node_load1", "type": "gauge", "labels": {}, "points": [[int(time.time() * 1000), 0.5]]}
        assert console.push("refused-1", token, [metric])[0] == 200
        assert "auth_refused" not in _health(console, admin, "refused-1")

        tokens = console.request("GET", "/api/v1/tokens", token=admin).json()["tokens"]
        token_id = next(t["id"] for t in tokens if t["host"] == "refused-1")
        assert console.request("DELETE", f"/api/v1/tokens/{token_id}", token=admin).status == 200
        for _ in range(3):
            assert console.push("refused-1", token, [metric])[0] == 401

        health = _health(console, admin, "refused-1")
        assert health["status"] == "degraded"
        assert health["auth_refused"]["count"] == 3
        assert any("agent token refused" in p for p in health["problems"]), health["problems"]

        # A new token: the next batch is stored and the host is no longer flagged.
        fresh = console.agent_token("refused-1")
        assert console.push("refused-1", fresh, [metric])[0] == 200
        assert "auth_refused" not in _health(console, admin, "refused-1")
    finally:
        console.close()
