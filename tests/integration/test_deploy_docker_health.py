"""The Docker driver's ``tcp`` and ``none`` health checks against the real dockerd, with
this run's test images (tests/docker_images.py) and app names (``run_app``): a ``tcp``
check passes once the container accepts connections on its port and fails (rolling back)
when nothing listens there; ``none`` takes a running container as healthy whatever the
image's own HEALTHCHECK says."""
from __future__ import annotations

import socket
import time

import pytest

from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness

TCP, NONE = run_app("tcp"), run_app("none")
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images):
    common = {"driver": "docker", "strategy": {"type": "recreate"}, "timeout": 60}
    apps = {
        TCP: {**common, "target": {"image": docker_images, "labels": run_labels(), "stop_timeout": 1,
                                   "ports": [f"127.0.0.1:{free_port()}:8080"]},
              "health_check": {"type": "tcp", "port": 8080, "interval": 0.3, "timeout": 1, "retries": 3,
                               "start_period": 1}},
        NONE: {**common, "target": {"image": docker_images, "labels": run_labels(), "stop_timeout": 1},
               "health_check": {"type": "none"}},
    }
    harness = ConsoleHarness(tmp_path_factory.mktemp("docker-health"), apps=apps).start()
    harness.deployer = harness.api_token("deployer")
    yield harness
    harness.close()
    for app in (TCP, NONE):
        remove_run_containers(docker_client, app)


def deploy(env, app: str, version: str) -> tuple[dict, list[str]]:
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=env.deployer)
    assert resp.status == 202, resp.body
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        d = env.request("GET", f"/api/v1/deploys/{resp.json()['id']}", token=env.deployer).json()
        if d["state"] in FINAL:
            events = env.request("GET", f"/api/v1/deploys/{d['id']}/events", token=env.deployer).json()["events"]
            return d, [e["message"] for e in events]
        time.sleep(0.2)
    raise AssertionError(f"deploy {d['id']} still {d['state']}")


def running(docker_client, app: str) -> list:
    return docker_client.containers.list(filters={"label": [f"fleetdeck.app={app}"]})


def test_tcp_check_passes_when_the_port_accepts_and_fails_when_nothing_listens(env, docker_client):
    final, messages = deploy(env, TCP, "1.0")
    assert final["state"] == "succeeded", messages
    assert "waiting for 1 container(s) to pass the tcp health check" in messages
    # the container's own address and port: Docker's proxy on the published port accepts
    # connections even when nothing listens behind it
    assert any("is healthy (tcp " in m and ":8080 accepts connections" in m for m in messages), messages
    # "slow" sleeps 600 s before it listens on 8080: the container runs, the port does not answer
    failed, messages = deploy(env, TCP, "slow")
    assert failed["state"] == "rolled_back", (failed, messages)
    assert "failed its health check: tcp " in failed["error"] and ":8080: " in failed["error"], failed["error"]
    assert [c.labels["fleetdeck.version"] for c in running(docker_client, TCP)] == ["1.0"]


def test_none_check_takes_a_running_container_as_healthy(env, docker_client):
    # "slow"'s own HEALTHCHECK stays "starting" for 600 s; with type none it does not matter
    final, messages = deploy(env, NONE, "slow")
    assert final["state"] == "succeeded", messages
    assert "waiting for 1 container(s) to pass the none health check" in messages
    assert any(m.endswith("is healthy (running)") for m in messages), messages
    (container,) = running(docker_client, NONE)
    assert container.labels["fleetdeck.version"] == "slow"
    assert container.attrs["State"]["Health"]["Status"] == "starting"
