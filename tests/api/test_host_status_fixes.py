"""Host status over HTTP as a user reads it: a host that stopped reporting does not keep
its agent's last "ok" health, two agents with two configurations are not both drifting,
and the page of a host that never reported is a 404 page."""
from __future__ import annotations

import html
import json
import time
import uuid

from tests.harness import ConsoleHarness, http, logged_in, wait_for


def ingest(console, host: str, agent: dict, metrics: list, labels: dict | None = None) -> None:
    body = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": time.time(), "agent": agent,
            "labels": labels or {}, "metrics": metrics, "logs": []}
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(body).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {console.agent_token(host)}"})
    assert resp.status == 200, resp.body


def hosts(console) -> dict[str, dict]:
    resp = console.request("GET", "/api/v1/hosts", token=console.api_token("viewer"))
    assert resp.status == 200, resp.body
    return {h["host"]: h for h in resp.json()}


def test_a_down_host_has_no_healthy_agent(console):
    host = "gone-" + uuid.uuid4().hex[:6]
    ts = int(time.time() * 1000)
    healthy = [{"name": "fleetdeck_agent_batches_queued", "type": "gauge", "labels": {}, "points": [[ts, 0]]},
               {"name": "fleetdeck_agent_collector_success", "type": "gauge", "labels": {"collector": "host"},
                "points": [[ts, 1]]}]
    ingest(console, host, {"version": "test", "interval": 0.2}, healthy)  # down after 3 x 0.2 s
    seen = hosts(console)[host]
    assert seen["up"] is True and seen["agent_health"]["status"] == "ok"
    down = wait_for(lambda: (h := hosts(console)[host])["up"] is False and h, 10, "the host to be down")
    health = down["agent_health"]
    assert health["status"] == "unknown"
    assert health["problems"][0].startswith("no report for ") and "its last report said ok" in health["problems"][0]


def test_two_agents_with_two_configs_are_not_both_drifting(tmp_path):
    console = ConsoleHarness(tmp_path / "data").start()  # a fleet of its own: these hosts only
    try:
        ingest(console, "first", {"version": "0.1.0", "interval": 10, "config_hash": "aaaa"}, [])
        ingest(console, "second", {"version": "0.1.0", "interval": 10, "config_hash": "bbbb"}, [])
        fleet = hosts(console)
        assert [fleet[h]["drift"] for h in ("first", "second")] == [False, False]
        assert fleet["first"]["drift_baseline"] == {"agent_version": "0.1.0", "config_hash": None}
        # A third host of the first one's config: the second is now the odd one out.
        ingest(console, "third", {"version": "0.1.0", "interval": 10, "config_hash": "aaaa"}, [])
        fleet = hosts(console)
        assert [h for h in fleet if fleet[h]["drift"]] == ["second"]
        assert fleet["second"]["drift_fields"] == ["config_hash"]
        # Hosts of another group (agent label group=db) are compared among themselves.
        for name in ("db-1", "db-2"):
            ingest(console, name, {"version": "0.1.0", "interval": 10, "config_hash": "dddd"}, [], {"group": "db"})
        fleet = hosts(console)
        assert sorted(h for h in fleet if fleet[h]["drift"]) == ["second"]
        assert fleet["db-1"]["drift_baseline"]["config_hash"] == "dddd"
    finally:
        console.close()


def test_the_page_of_an_unknown_host_is_a_404_page(console):
    host = "known-" + uuid.uuid4().hex[:6]
    ingest(console, host, {"version": "test", "interval": 10}, [])
    session = logged_in(console, "viewer")
    missing = session.request("GET", "/hosts/nosuchhost")
    assert missing.status == 404
    assert "text/html" in missing.headers.get("content-type", "")
    assert "no host named 'nosuchhost' has reported" in html.unescape(missing.body.decode())
    assert session.request("GET", f"/hosts/{host}").status == 200
