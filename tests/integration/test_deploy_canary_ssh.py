"""Canary analysis of SSH deploys through the real console over HTTP, against a real
OpenSSH sshd (tests/sshd.py) that serves three inventory hosts (one server, a release
directory per host name): the first host is the canary, analysed before the other two
are touched. Metrics come through the ingest API; an alert is posted to the console's
Alertmanager API about one of the deploy's hosts."""
from __future__ import annotations

import os
import time

import pytest

from tests.harness import ConsoleHarness, wait_for

HOSTS = ("c1", "c2", "c3")
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")


@pytest.fixture(scope="module")
def env(tmp_path_factory, sshd):
    root = tmp_path_factory.mktemp("canary-ssh")
    inventory = {"defaults": {"user": sshd.user},
                 "hosts": {h: {"address": "127.0.0.1", "port": sshd.port, "key": "key-canary"} for h in HOSTS}}

    def app(name: str, canary: dict, on_failure: str = "rollback") -> dict:
        return {"driver": "ssh", "canary": {"duration": 2, "interval": 1, **canary},
                "target": {"hosts": list(HOSTS), "deploy_to": str(root / name / "{host}"),
                           "batches": {"type": "fixed", "size": 2, "on_failure": on_failure}}}

    def errors_below_1(name: str) -> list[dict]:
        return [{"name": "errors", "query": f'max(canary_ssh_errors{{app="{name}"}})', "op": "<", "threshold": 1}]

    apps = {"pass": app("pass", {"hosts": 1, "checks": errors_below_1("pass")}),
            # on_failure: stop leaves a failed host as it is, but a failed canary is always undone
            "fail": app("fail", {"hosts": 1, "checks": errors_below_1("fail")}, on_failure="stop"),
            "alerts": app("alerts", {"hosts": "34%", "no_firing_alerts": True})}
    harness = ConsoleHarness(root / "console", apps=apps, inventory=inventory).start()
    s = harness.services
    s.db.run(s.secrets.put, "key-canary", "ssh_key", sshd.client_key.read_text(), "test")
    key_type, key_b64 = sshd.known_hosts_line.split()[1:3]
    for h in HOSTS:
        s.db.run(s.known_hosts.trust, s.inventory.hosts[h], key_type, key_b64, "test")
    harness.token = harness.api_token("deployer", "canary-ci")
    harness.agent = harness.agent_token("canary-metrics")
    harness.root = root
    yield harness
    harness.close()


def deploy(env, app: str, version: str, during=None) -> dict:  # noqa: ANN001 - a callable
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=env.token)
    assert resp.status == 202, resp.body
    deploy_id = resp.json()["id"]

    def get() -> dict:
        return env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.token).json()

    if during is not None:
        during(wait_for(lambda: (d := get())["canary"] and d["canary"]["state"] == "running" and d, 60,
                        "the canary analysis"))
    return wait_for(lambda: (d := get())["state"] in FINAL and d, 90, f"deploy {deploy_id} ends")


def current(env, app: str, host: str) -> str | None:
    link = env.root / app / host / "current"
    return os.readlink(link) if link.is_symlink() else None


def push_errors(env, app: str, value: float) -> None:
    status, body = env.push("canary-metrics", env.agent, [{"name": "canary_ssh_errors", "type": "gauge",
                                                            "labels": {"app": app},
                                                            "points": [[int(time.time() * 1000), value]]}])
    assert status == 200 and not body.get("rejected"), body


def test_the_canary_host_is_analysed_before_the_others_and_the_deploy_continues(env):
    first = deploy(env, "pass", "1")
    assert first["state"] == "succeeded" and first["canary"] is None, first
    push_errors(env, "pass", 0)
    seen = {}

    def during(d: dict) -> None:  # while the canary is analysed only c1 runs release 2
        seen.update({h: current(env, "pass", h) for h in HOSTS})

    d = deploy(env, "pass", "2", during)
    assert seen == {"c1": "releases/2", "c2": "releases/1", "c3": "releases/1"}
    assert d["state"] == "succeeded", d
    assert d["canary"]["verdict"] == "passed"
    assert [(a["check"], a["passed"], [v for _, v in a["values"]]) for a in d["analysis"]] == [
        ("errors", True, [0, 0])]
    assert {h: current(env, "pass", h) for h in HOSTS} == {h: "releases/2" for h in HOSTS}


def test_a_failing_check_switches_the_canary_host_back(env):
    assert deploy(env, "fail", "3")["state"] == "succeeded"
    push_errors(env, "fail", 0)
    d = deploy(env, "fail", "4", lambda _: push_errors(env, "fail", 3))
    assert d["state"] == "rolled_back", d
    assert d["error"] == "canary analysis failed: check errors = 3 (wanted < 1)"
    assert {h: current(env, "fail", h) for h in HOSTS} == {h: "releases/3" for h in HOSTS}
    assert not (env.root / "fail" / "c2" / "releases" / "4").exists()  # the rest was never touched


def test_a_firing_alert_about_a_deploy_host_fails_the_canary(env):
    assert deploy(env, "alerts", "1")["state"] == "succeeded"
    # an alert about c3, which is not in the canary batch but is one of the deploy's hosts
    alert = [{"labels": {"alertname": "DiskAlmostFull", "instance": "c3", "severity": "warning"}}]
    resp = env.request("POST", "/alertmanager/api/v2/alerts", alert, token=env.token)
    assert resp.status == 200, resp.body
    d = deploy(env, "alerts", "2")
    assert d["state"] == "rolled_back", d
    assert d["error"] == "canary analysis failed: check no_firing_alerts = 1 (wanted <= 0; DiskAlmostFull)"
    assert {h: current(env, "alerts", h) for h in HOSTS} == {h: "releases/1" for h in HOSTS}
