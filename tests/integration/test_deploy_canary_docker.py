"""Canary analysis of Docker deploys through the real console over HTTP, against the real
dockerd (busybox images FROM scratch, tests/docker_images.py): metrics reach the console
through its ingest API, the checks are PromQL evaluated by the console's engine, and a
firing alert comes from a real alerting rule evaluated every second. Each app moves one
of its two replicas first and is analysed every second for a few seconds."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.config import AlertingConfig
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, wait_for

REPO = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")
PASS, FAIL, ALERT, CANCEL, NODATA = (run_app(n) for n in ("cpass", "cfail", "calert", "ccancel", "cnodata"))
ALERT_HOST = f"{ALERT}-host"
METRICS_HOST = "canary-metrics"
RULES = """groups:
  - name: canary
    interval: 1s
    rules:
      - alert: CanaryHostErrors
        expr: canary_host_errors > 5
"""


def check(name: str, query: str, op: str, threshold: float, **extra) -> dict:
    return {"name": name, "query": query, "op": op, "threshold": threshold, **extra}


def app(repository: str, canary: dict, hosts: list[str] | None = None) -> dict:
    return {"driver": "docker", "hosts": hosts or [], "timeout": 120,
            "target": {"image": repository, "replicas": 2, "stop_timeout": 0, "labels": run_labels()},
            "health_check": {"type": "none"},  # running is enough here: the canary's checks are under test
            "strategy": {"type": "rolling", "max_surge": 1, "max_unavailable": 0},
            "canary": {"replicas": 1, "duration": 3, "interval": 1, **canary}}


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images):
    root = tmp_path_factory.mktemp("canary-docker")
    rules = root / "rules.yml"
    rules.write_text(RULES)
    apps = {
        PASS: app(docker_images, {"checks": [
            check("latency", 'max(canary_latency{app="{{app}}", version="{{ version }}"})', "<", 0.5)]}),
        FAIL: app(docker_images, {"duration": 8, "checks": [
            check("errors", f'sum(canary_errors{{app="{FAIL}"}})', "<", 1)]}),
        ALERT: app(docker_images, {"no_firing_alerts": True}, hosts=[ALERT_HOST]),
        CANCEL: app(docker_images, {"duration": 60, "checks": [
            check("latency", f'max(canary_latency{{app="{CANCEL}"}})', "<", 0.5)]}),
        NODATA: app(docker_images, {"checks": [check("missing", 'sum(canary_never_sent{job="none"})', "<", 1)]}),
    }
    remove_run_containers(docker_client)
    config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=1.0, default_rules=False)
    harness = ConsoleHarness(root / "console", apps=apps, alerting=config).start()
    harness.deployer = harness.api_token("deployer", "canary-deployer")
    harness.viewer = harness.api_token("viewer", "canary-viewer")
    harness.agent = harness.agent_token(METRICS_HOST)
    yield harness
    harness.close()
    remove_run_containers(docker_client)


def push(env, name: str, value: float, labels: dict, host: str = METRICS_HOST, token: str | None = None) -> None:
    status, body = env.push(host, token or env.agent, [{"name": name, "type": "gauge", "labels": labels,
                                                         "points": [[int(time.time() * 1000), float(value)]]}])
    assert status == 200 and not body.get("rejected"), body


def start(env, app_name: str, version: str) -> int:
    resp = env.request("POST", f"/api/v1/apps/{app_name}/deploys", {"version": version}, token=env.deployer)
    assert resp.status == 202, resp.body
    return resp.json()["id"]


def get(env, deploy_id: int) -> dict:
    resp = env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.viewer)
    assert resp.status == 200, resp.body
    return resp.json()


def final(env, deploy_id: int, timeout: float = 120) -> dict:
    return wait_for(lambda: (d := get(env, deploy_id))["state"] in FINAL and d, timeout, f"deploy {deploy_id} ends")


def canary_running(env, deploy_id: int) -> dict:
    return wait_for(lambda: (d := get(env, deploy_id))["canary"] and d["canary"]["state"] == "running" and d,
                    60, f"deploy {deploy_id} reaches its canary analysis")


def versions(docker_client, app_name: str) -> list[str]:
    found = docker_client.containers.list(filters={"label": [f"fleetdeck.app={app_name}"]})
    return sorted(c.labels["fleetdeck.version"] for c in found)


def first_release(env, app_name: str) -> None:
    """1.0 is the release a test starts from: an app's first release has no canary stage."""
    d = final(env, start(env, app_name, "1.0"))
    assert d["state"] == "succeeded", d
    assert d["canary"] is None and d["analysis"] == [], d


def test_passing_checks_let_the_deploy_continue_to_every_replica(env, docker_client):
    first_release(env, PASS)
    # the query selects the new version's series: the old one's latency is not the canary's
    push(env, "canary_latency", 0.9, {"app": PASS, "version": "1.0"})
    push(env, "canary_latency", 0.2, {"app": PASS, "version": "2.0"})
    deploy_id = start(env, PASS, "2.0")
    during = canary_running(env, deploy_id)
    # the analysis runs with one replica moved: one new, two old (maxSurge 1)
    assert versions(docker_client, PASS) == ["1.0", "1.0", "2.0"], during
    d = final(env, deploy_id)
    assert d["state"] == "succeeded", d
    assert versions(docker_client, PASS) == ["2.0", "2.0"]
    assert d["canary"]["verdict"] == "passed"
    [analysis] = d["analysis"]
    assert analysis["check"] == "latency" and analysis["op"] == "<" and analysis["threshold"] == 0.5
    assert analysis["query"] == f'max(canary_latency{{app="{PASS}", version="2.0"}})'  # as evaluated
    assert analysis["passed"] is True
    assert [v for _, v in analysis["values"]] == [0.2, 0.2, 0.2]  # duration 3 / interval 1
    times = [t for t, _ in analysis["values"]]
    assert all(0.5 < b - a < 2.5 for a, b in zip(times, times[1:])), times
    events = env.request("GET", f"/api/v1/deploys/{deploy_id}/events", token=env.viewer).json()["events"]
    steps = [(e["step"], e["data"].get("state")) for e in events if e["kind"] == "step"]
    assert ("canary", "running") in steps and ("canary", "succeeded") in steps
    # the canary stage ends before the rolling update goes on to the second replica
    assert steps.index(("canary", "succeeded")) < steps.index(("rolling update", "succeeded"))


def test_a_metric_crossing_its_threshold_rolls_the_deploy_back_with_the_check_as_reason(env, docker_client):
    push(env, "canary_errors", 0, {"app": FAIL})
    first_release(env, FAIL)
    push(env, "canary_errors", 0, {"app": FAIL})
    deploy_id = start(env, FAIL, "2.0")
    canary_running(env, deploy_id)
    push(env, "canary_errors", 7, {"app": FAIL})  # the canary starts failing
    d = final(env, deploy_id)
    assert d["state"] == "rolled_back", d
    assert d["error"] == "canary analysis failed: check errors = 7 (wanted < 1)"
    assert d["canary"]["verdict"] == "failed"
    [analysis] = d["analysis"]
    assert analysis["passed"] is False and analysis["values"][-1][1] == 7
    assert all(v == 0 for _, v in analysis["values"][:-1])
    assert versions(docker_client, FAIL) == ["1.0", "1.0"]


def test_a_firing_alert_on_the_apps_host_fails_the_canary(env, docker_client):
    first_release(env, ALERT)
    push(env, "canary_host_errors", 9, {}, host=ALERT_HOST, token=env.agent_token(ALERT_HOST))
    wait_for(lambda: any(a["state"] == "firing" and a["labels"].get("instance") == ALERT_HOST
                         for a in env.request("GET", "/prometheus/api/v1/alerts", token=env.viewer)
                         .json()["data"]["alerts"]), 30, "CanaryHostErrors fires")
    d = final(env, start(env, ALERT, "2.0"))
    assert d["state"] == "rolled_back", d
    assert d["error"].startswith("canary analysis failed: check no_firing_alerts = 1 (wanted <= 0; CanaryHostErrors")
    [analysis] = d["analysis"]
    assert analysis["check"] == "no_firing_alerts" and analysis["values"][-1][1] == 1
    assert versions(docker_client, ALERT) == ["1.0", "1.0"]


def test_cancel_during_the_analysis_rolls_back(env, docker_client):
    first_release(env, CANCEL)
    push(env, "canary_latency", 0.1, {"app": CANCEL})
    deploy_id = start(env, CANCEL, "2.0")
    canary_running(env, deploy_id)
    began = time.monotonic()
    resp = env.request("POST", f"/api/v1/deploys/{deploy_id}/cancel", {}, token=env.deployer)
    assert resp.status == 202, resp.body
    d = final(env, deploy_id)
    assert d["state"] == "cancelled", d
    assert time.monotonic() - began < 20  # not the 60 s of the analysis
    assert d["canary"]["verdict"] == "cancelled"
    assert versions(docker_client, CANCEL) == ["1.0", "1.0"]


def test_no_data_fails_by_default_and_the_cli_names_the_verdict(env, docker_client):
    first_release(env, NODATA)
    cli_env = dict(os.environ, FLEETDECK_URL=env.url, FLEETDECK_TOKEN=env.deployer, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "console.cli", "deploy", NODATA, "2.0", "--wait"], env=cli_env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "canary verdict: failed (canary analysis failed: check missing = no data (wanted < 1; " \
           "on_no_data: fail))" in out.stdout
    assert "rolled_back" in out.stderr
    assert versions(docker_client, NODATA) == ["1.0", "1.0"]
