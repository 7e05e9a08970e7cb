"""The default rules over probes, clock skew and deploys, on a real console over HTTP:
samples and batches go through the real ingest API, deploys through the deploy API, and
each evaluation runs the service's real group evaluation at a time the test sets (see
tests/api/test_alerting.py)."""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlencode

from console.config import AlertingConfig
from tests.api.test_alerting import API, T0, Clock, alerts, evaluate, history, push
from tests.harness import ConsoleHarness, http

UNREACHABLE_APP = {"web": {"driver": "docker", "hosts": ["web-1"],
                           "target": {"image": "registry.example.com/team/web",
                                      "engine": "unix:///nonexistent/docker.sock"}}}


def defaults_console(tmp_path, **console):
    empty = tmp_path / "none.yml"
    empty.write_text("groups: []\n")
    clock = Clock(T0)
    config = AlertingConfig(rule_files=[str(empty)], evaluation_interval=3600.0, default_rules=True)
    return ConsoleHarness(tmp_path / "data", alerting=config, clock=clock, **console).start(), clock


def query(console, token: str, expr: str, at: float) -> list:
    resp = console.request("GET", f"{API}/query?" + urlencode({"query": expr, "time": at}), token=token)
    assert resp.status == 200, resp.body
    return resp.json()["data"]["result"]


def test_a_failing_probe_fires_probe_down_after_two_minutes_and_resolves(tmp_path):
    console, clock = defaults_console(tmp_path)
    try:
        agent, viewer = console.agent_token("prober-1"), console.api_token("viewer")
        target = {"instance": "https://shop.example.test", "job": "web"}
        push(console, agent, "prober-1", "probe_success",
             [(0, 1), (60, 0), (120, 0), (180, 0), (240, 1)], target)
        states = {}
        for t in (0, 60, 120, 180, 240):
            evaluate(console, clock, T0 + t)
            states[t] = alerts(console, viewer).get("ProbeDown", {}).get("state")
        assert states == {0: None, 60: "pending", 120: "pending", 180: "firing", 240: None}
        assert history(console, viewer, alertname="ProbeDown", instance="https://shop.example.test",
                       since=T0, until=T0 + 300) == [
            ("ProbeDown", "pending", T0 + 60), ("ProbeDown", "firing", T0 + 180),
            ("ProbeDown", "resolved", T0 + 240)]
    finally:
        console.close()


def test_a_certificate_expiring_within_14_days_fires_and_a_later_one_does_not(tmp_path):
    console, clock = defaults_console(tmp_path)
    try:
        agent, viewer = console.agent_token("prober-2"), console.api_token("viewer")
        day = 86400
        push(console, agent, "prober-2", "probe_ssl_earliest_cert_expiry", [(0, T0 + 10 * day)],
             {"instance": "https://soon.example.test", "job": "tls"})
        push(console, agent, "prober-2", "probe_ssl_earliest_cert_expiry", [(0, T0 + 30 * day)],
             {"instance": "https://later.example.test", "job": "tls"})
        evaluate(console, clock, T0)
        firing = [a for a in console.request("GET", f"{API}/alerts", token=viewer).json()["data"]["alerts"]
                  if a["labels"]["alertname"] == "TLSCertificateExpiresSoon"]
        assert [(a["state"], a["labels"]["instance"], a["labels"]["job"], a["labels"]["severity"]) for a in firing] == [
            ("firing", "https://soon.example.test", "tls", "warning")]
        assert float(firing[0]["value"]) == 10 * day  # the seconds left
        assert firing[0]["annotations"]["runbook_url"] == "docs/alerting.md#tlscertificateexpiressoon"
    finally:
        console.close()


def push_with_sent_at(console, token: str, host: str, skew: float) -> None:
    """A batch (one sample) sent by an agent whose clock is ``skew`` s ahead of the console's."""
    now = console.services.clock.now
    body = {"host": host, "batch_id": uuid.uuid4().hex, "sent_at": now + skew, "agent": {"version": "t", "interval": 60},
            "metrics": [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[int(now * 1000), 0.5]]}]}
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(body).encode(),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert resp.status == 200, resp.body


def test_a_host_whose_clock_is_off_fires_clock_skew_after_ten_minutes(tmp_path):
    console, clock = defaults_console(tmp_path)
    try:
        skewed, fine = console.agent_token("skew-1"), console.agent_token("skew-2")
        viewer = console.api_token("viewer")
        states = {}
        for t in range(0, 721, 60):
            clock.now = T0 + t
            push_with_sent_at(console, skewed, "skew-1", 120.0)
            push_with_sent_at(console, fine, "skew-2", 2.0)
            evaluate(console, clock, T0 + t)
            states[t] = alerts(console, viewer).get("ClockSkew", {}).get("state")
        assert (states[0], states[540], states[600]) == ("pending", "pending", "firing")
        firing = alerts(console, viewer)["ClockSkew"]
        assert (firing["labels"]["instance"], firing["labels"]["job"]) == ("skew-1", "node")
        assert float(firing["value"]) == 120.0
        series = query(console, viewer, "fleetdeck_host_clock_skew_seconds", T0 + 720)
        assert sorted((r["metric"]["host"], r["value"][1]) for r in series) == [("skew-1", "120"), ("skew-2", "2")]
        # the series ends with the host's reports (only the held offset is stored)
        assert query(console, viewer, 'fleetdeck_host_clock_skew_seconds{host="skew-1"}', T0 + 720 + 400) == []
    finally:
        console.close()


def test_a_failed_deploy_fires_deploy_failed_for_an_hour(tmp_path):
    console, clock = defaults_console(tmp_path, apps=UNREACHABLE_APP)
    try:
        deployer, viewer = console.api_token("deployer", "ci"), console.api_token("viewer")
        clock.now = T0
        resp = console.request("POST", "/api/v1/apps/web/deploys", {"version": "1.4.2"}, token=deployer)
        assert resp.status == 202, resp.body
        deploy_id = resp.json()["id"]
        deadline = time.monotonic() + 30
        while (d := console.request("GET", f"/api/v1/deploys/{deploy_id}", token=viewer).json())["state"] in (
                "queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert d["state"] == "failed" and d["finished_at"] == T0
        assert "DeployFailed" not in alerts(console, viewer)
        evaluate(console, clock, T0 + 30)
        a = alerts(console, viewer)["DeployFailed"]
        assert a["state"] == "firing"
        assert {k: a["labels"][k] for k in ("app", "deploy_id", "version", "state")} == {
            "app": "web", "deploy_id": str(deploy_id), "version": "1.4.2", "state": "failed"}
        evaluate(console, clock, T0 + 3599)
        assert alerts(console, viewer)["DeployFailed"]["state"] == "firing"
        evaluate(console, clock, T0 + 3600)
        assert "DeployFailed" not in alerts(console, viewer)
        assert [s for _, s, _ in history(console, viewer, alertname="DeployFailed", since=T0, until=T0 + 4000)] == [
            "pending", "firing", "resolved"]
    finally:
        console.close()


def test_agent_dropping_data_leaves_out_what_relabel_rules_drop_on_purpose(tmp_path):
    console, clock = defaults_console(tmp_path)
    try:
        viewer = console.api_token("viewer")
        for host, reason in (("relabeller-1", "relabel"), ("over-budget-1", "series_limit")):
            push(console, console.agent_token(host), host, "fleetdeck_agent_dropped_samples_total",
                 [(0, 0), (60, 500), (120, 1000)], {"collector": "host", "reason": reason})
        evaluate(console, clock, T0 + 120)
        firing = [a for a in alerts_list(console, viewer) if a["labels"]["alertname"] == "AgentDroppingData"]
        assert [(a["labels"]["instance"], a["state"]) for a in firing] == [("over-budget-1", "firing")]
    finally:
        console.close()


def alerts_list(console, token: str) -> list:
    resp = console.request("GET", f"{API}/alerts", token=token)
    assert resp.status == 200, resp.body
    return resp.json()["data"]["alerts"]
