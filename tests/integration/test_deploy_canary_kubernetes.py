"""Canary analysis of Kubernetes deploys through the real console over HTTP, with the
official client talking real HTTP to the KMock API mock (tests/k8s_mock.py). The canary
is a second Deployment, ``web-canary``, created beside the app's; the test reports it
available (the mock runs no controllers), the checks read metrics ingested through the
console's API, and the app's own Deployment changes only after the analysis passed.
Verified only against this mock."""
from __future__ import annotations

import time

import pytest
import yaml

from tests.harness import ConsoleHarness, wait_for
from tests.k8s_mock import DEPLOYMENTS, KubeMock

NS, NAME, CANARY = "prod", "web", "web-canary"
REPO = "registry.example.com/web"
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")


@pytest.fixture
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("k8s-canary")
    mock = KubeMock().start()
    try:
        mock.seed(NS, NAME, f"{REPO}:1.0", replicas=4)
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "mock",
                      "clusters": [{"name": "mock", "cluster": {"server": mock.url}}],
                      "users": [{"name": "ci", "user": {"token": "test-token"}}],
                      "contexts": [{"name": "mock", "context": {"cluster": "mock", "user": "ci", "namespace": NS}}]}
        apps = {"web": {"driver": "kubernetes", "timeout": 60, "target": {
            "image": REPO, "deployment": NAME, "kubeconfig_secret": "kube-mock", "context": "mock",
            "poll_interval": 0.05},
            "canary": {"replicas": "25%", "duration": 3, "interval": 1, "checks": [
                {"name": "p99", "query": 'max(canary_k8s_latency_p99{deployment="web"})', "op": "<=",
                 "threshold": 0.3}]}}}
        harness = ConsoleHarness(root / "console", apps=apps).start()
        s = harness.services
        s.db.run(s.secrets.put, "kube-mock", "kubeconfig", yaml.safe_dump(kubeconfig), "test")
        harness.token = harness.api_token("deployer", "ci")
        harness.agent = harness.agent_token("k8s-metrics")
        harness.mock = mock
        yield harness
        harness.close()
    finally:
        mock.stop()


def image(dep: dict) -> str:
    return dep["spec"]["template"]["spec"]["containers"][0]["image"]


def push_latency(env, value: float) -> None:
    status, body = env.push("k8s-metrics", env.agent, [{"name": "canary_k8s_latency_p99", "type": "gauge",
                                                         "labels": {"deployment": "web"},
                                                         "points": [[int(time.time() * 1000), value]]}])
    assert status == 200 and not body.get("rejected"), body


def canary_deployment(mock: KubeMock) -> dict | None:
    def get() -> dict | None:
        for (resource, ns, name), obj in mock.emulator.objects.items():
            if resource == DEPLOYMENTS and ns == NS and name == CANARY and not obj.deleted:
                return dict(obj.raw)
        return None
    return mock._run(get)


def report_available(mock: KubeMock, replicas: int) -> None:
    """What the deployment controller would write once the canary pods are ready."""
    def change() -> None:
        mock.emulator.objects[DEPLOYMENTS, NS, CANARY].patch({"status": {
            "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas}})
    mock._run(change)


def deploy(env, version: str) -> int:
    resp = env.request("POST", "/api/v1/apps/web/deploys", {"version": version}, token=env.token)
    assert resp.status == 202, resp.body
    return resp.json()["id"]


def get(env, deploy_id: int) -> dict:
    return env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.token).json()


def final(env, deploy_id: int) -> dict:
    return wait_for(lambda: (d := get(env, deploy_id))["state"] in FINAL and d, 60, f"deploy {deploy_id} ends")


def released(env, version: str) -> None:
    """The first release (no canary: nothing serves yet that it could be compared with)."""
    deploy_id = deploy(env, version)
    env.mock.wait_for(NS, NAME, lambda d: image(d) == f"{REPO}:{version}")
    env.mock.complete(NS, NAME)
    assert final(env, deploy_id)["state"] == "succeeded"


def test_the_canary_deployment_is_analysed_before_the_apps_deployment_changes(env):
    m = env.mock
    released(env, "2.0")
    push_latency(env, 0.12)
    deploy_id = deploy(env, "3.0")
    canary = wait_for(lambda: canary_deployment(m), 30, "the canary deployment")
    assert canary["spec"]["replicas"] == 1  # 25 % of 4
    assert image(canary) == f"{REPO}:3.0"
    assert canary["spec"]["selector"]["matchLabels"] == {"app": NAME, "fleetdeck.io/canary": "true"}
    assert canary["spec"]["template"]["metadata"]["labels"] == {"app": NAME, "fleetdeck.io/canary": "true"}
    time.sleep(0.5)
    assert image(m.deployment(NS, NAME)) == f"{REPO}:2.0"  # not before the canary is analysed
    report_available(m, 1)
    m.wait_for(NS, NAME, lambda d: image(d) == f"{REPO}:3.0")
    # The driver emits the verdict before it patches the app's deployment; the console
    # stores a driver's events from a queue, so the API may show it a moment after the patch.
    d = wait_for(lambda: (d := get(env, deploy_id))["canary"]["verdict"] != "running" and d, 10,
                 "the canary's verdict to be stored")
    assert d["canary"]["verdict"] == "passed", d
    m.complete(NS, NAME)
    d = final(env, deploy_id)
    assert d["state"] == "succeeded", d
    assert [(a["check"], a["op"], a["threshold"], [v for _, v in a["values"]], a["passed"]) for a in d["analysis"]] \
        == [("p99", "<=", 0.3, [0.12, 0.12, 0.12], True)]
    assert canary_deployment(m) is None  # deleted when the deploy ended


def test_a_failing_check_leaves_the_apps_deployment_untouched(env):
    m = env.mock
    released(env, "2.0")
    push_latency(env, 0.9)
    patches = len(m.patches)
    deploy_id = deploy(env, "4.0")
    wait_for(lambda: canary_deployment(m), 30, "the canary deployment")
    report_available(m, 1)
    d = final(env, deploy_id)
    assert d["state"] == "rolled_back", d
    assert d["error"] == "canary analysis failed: check p99 = 0.9 (wanted <= 0.3)"
    assert image(m.deployment(NS, NAME)) == f"{REPO}:2.0"
    assert len(m.patches) == patches  # the app's Deployment was never patched
    assert canary_deployment(m) is None


def test_cancel_during_the_analysis_deletes_the_canary_deployment(env):
    m = env.mock
    released(env, "2.0")
    push_latency(env, 0.1)
    deploy_id = deploy(env, "5.0")
    wait_for(lambda: canary_deployment(m), 30, "the canary deployment")
    report_available(m, 1)
    wait_for(lambda: (d := get(env, deploy_id))["canary"] and d["canary"]["state"] == "running", 30,
             "the canary analysis")
    resp = env.request("POST", f"/api/v1/deploys/{deploy_id}/cancel", {}, token=env.token)
    assert resp.status == 202, resp.body
    d = final(env, deploy_id)
    assert d["state"] == "cancelled", d
    assert d["canary"]["verdict"] == "cancelled"
    assert image(m.deployment(NS, NAME)) == f"{REPO}:2.0"
    assert canary_deployment(m) is None
