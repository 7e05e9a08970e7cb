"""Deploys of Docker apps behind a real HAProxy (runtime API) and a real nginx (upstream
file and graceful reload), started on loopback by these tests (tests/balancers.py), with
a client sending requests through the balancer without pause during a deploy, a manual
rollback, a cancel and automatic rollbacks: not one request may fail, and no request may
reach a container that has not passed its health check."""
from __future__ import annotations

import csv
import io
import time
import uuid
from pathlib import Path

import pytest

from console.deploy.balancers.haproxy import HaproxyRuntime
from tests.balancers import Client, Haproxy, Nginx
from tests.docker_images import build_test_images, remove_run_containers, run_app
from tests.harness import ConsoleHarness
from tests.integration.test_deploy_docker import containers, free_port_range, wait_final, web_app
from tests.integration.test_deploy_docker_rollback import started_by

REPLICAS = 3  # web_app: 3 replicas, maxSurge 1, maxUnavailable 0
BALANCERS = ("haproxy", "nginx")
APPS = {kind: run_app(f"lb-{kind}") for kind in BALANCERS}
MISNAMED = run_app("lb-misnamed")


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images):
    root = tmp_path_factory.mktemp("balancers")
    build_test_images(docker_client, docker_images, ("flaky",))
    haproxy = Haproxy(root / "haproxy", REPLICAS + 1)
    nginx = Nginx(root / "nginx")
    balancers = {"haproxy": haproxy, "nginx": nginx}
    apps, states = {}, {}
    base = free_port_range(REPLICAS + 1)
    for i, kind in enumerate(BALANCERS):
        states[kind] = Path(f"/tmp/fd-lb-{uuid.uuid4().hex[:8]}")
        states[kind].mkdir()
        app = web_app(docker_images, base + 97 * i)
        app["target"].update(volumes=[f"{states[kind]}:/state"], env={"GOOD_STARTS": 2})
        app["target"]["stop_timeout"] = 0  # drained first: nothing to wait for
        app["load_balancer"] = balancers[kind].config(drain_timeout=10)
        apps[APPS[kind]] = app
    misnamed = web_app(docker_images, base + 97 * len(BALANCERS))
    misnamed["load_balancer"] = haproxy.config(backend="nope")
    apps[MISNAMED] = misnamed
    harness = ConsoleHarness(root / "console", apps=apps).start()
    harness.deployer = harness.viewer = harness.api_token("deployer")
    harness.balancers, harness.states = balancers, states
    yield harness
    harness.close()
    for lb in balancers.values():
        lb.close()
    remove_run_containers(docker_client, MISNAMED)
    for kind in BALANCERS:
        remove_run_containers(docker_client, APPS[kind])
        for f in states[kind].iterdir():
            f.unlink()
        states[kind].rmdir()
    docker_client.images.remove(f"{docker_images}:flaky", force=True)


def deploy(env, app: str, version: str, wait: bool = True) -> dict:
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=env.deployer)
    assert resp.status == 202, resp.body
    return wait_final(env, resp.json()["id"]) if wait else resp.json()


def serving(env, kind: str, docker_client) -> None:
    """The balancer sends traffic to exactly the app's running containers."""
    running = containers(docker_client, APPS[kind])
    assert len(running) == REPLICAS and all(c.status == "running" for c in running)
    slots = {int(c.labels["fleetdeck.slot"]) for c in running}
    if kind == "haproxy":
        stat = HaproxyRuntime(env.balancers[kind].socket, 5).command("show stat app 4 -1")
        rows = csv.DictReader(io.StringIO(stat[2:]))
        # Without health checks in the backend a server taking traffic shows "no check".
        up = {int(r["svname"][len("srv"):]) - 1 for r in rows if r["status"] == "no check"}
        assert up == slots, stat
    else:
        text = Path(env.balancers[kind].upstream_file).read_text()
        assert text.count("server 127.0.0.1:") == REPLICAS, text
        assert all(c.name in text for c in running), text


def ready(env, kind: str, docker_client) -> Client:
    """The app on 1.0 with a client sending requests through its balancer."""
    for f in env.states[kind].iterdir():
        f.unlink()
    if {c.labels["fleetdeck.version"] for c in containers(docker_client, APPS[kind])} != {"1.0"}:
        assert deploy(env, APPS[kind], "1.0")["state"] == "succeeded"
    client = Client(env.balancers[kind].port)
    client.start()
    time.sleep(0.3)
    return client


@pytest.mark.parametrize("kind", BALANCERS)
def test_deploy_and_manual_rollback_through_the_balancer_fail_no_request(env, docker_client, kind):
    client = ready(env, kind, docker_client)
    up = deploy(env, APPS[kind], "2.0")
    resp = env.request("POST", f"/api/v1/apps/{APPS[kind]}/rollback", {}, token=env.deployer)
    back = wait_final(env, resp.json()["id"])
    client.stop()

    assert up["state"] == "succeeded" and back["state"] == "succeeded", (up, back)
    assert client.failures == [], client.failures[:5]
    assert client.ok > 50 and {"web 1.0", "web 2.0"} <= set(client.bodies), client.bodies
    serving(env, kind, docker_client)


@pytest.mark.parametrize("kind", BALANCERS)
def test_cancel_through_the_balancer_fails_no_request(env, docker_client, kind):
    client = ready(env, kind, docker_client)
    d = deploy(env, APPS[kind], "2.0", wait=False)
    deadline = time.monotonic() + 30
    while started_by(docker_client, APPS[kind], d["id"]) < 2:
        assert time.monotonic() < deadline, "the deploy did not reach its second round"
        time.sleep(0.05)
    assert env.request("POST", f"/api/v1/deploys/{d['id']}/cancel", token=env.deployer).status == 202
    done = wait_final(env, d["id"])
    time.sleep(0.3)
    client.stop()

    assert done["state"] == "cancelled", done
    assert client.failures == [], client.failures[:5]
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, APPS[kind])} == {"1.0"}
    serving(env, kind, docker_client)


@pytest.mark.parametrize("kind", BALANCERS)
def test_automatic_rollbacks_through_the_balancer_fail_no_request(env, docker_client, kind):
    client = ready(env, kind, docker_client)
    bad = deploy(env, APPS[kind], "bad")  # serves / but never passes its health check
    flaky = deploy(env, APPS[kind], "flaky")  # crashes in the third round, two old containers stopped
    time.sleep(0.3)
    client.stop()

    assert bad["state"] == flaky["state"] == "rolled_back", (bad, flaky)
    assert client.failures == [], client.failures[:5]
    assert "web bad" not in client.bodies, "the balancer sent requests to a container failing its health check"
    assert "web flaky" in client.bodies  # the healthy new containers did serve before the rollback
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, APPS[kind])} == {"1.0"}
    serving(env, kind, docker_client)


def test_a_backend_haproxy_does_not_know_fails_the_deploy_before_any_container_starts(env, docker_client):
    d = deploy(env, MISNAMED, "1.0")

    assert d["state"] == "failed", d
    assert "HAProxy refused 'set server nope/srv1 state maint': No such backend." in d["error"]
    assert containers(docker_client, MISNAMED) == []
