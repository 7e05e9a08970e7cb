"""Deploys against the real dockerd: rolling updates, automatic and manual rollback,
concurrent deploys, a daemon stopped mid-deploy, and the CLI end to end."""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.docker_images import RUN_ID, RUN_LABEL, remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness

REPO = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")
REPLICAS = 3
# This run's app names: the driver finds containers by app name, so a user's app "web" (the
# example name in config.yaml) on the same daemon is never stopped or removed by these tests.
WEB, SOLO, TIGHT = run_app("web"), run_app("solo"), run_app("tight")


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    for base in range(23000, 60000, 97):
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def web_app(repository: str, base_port: int, **overrides) -> dict:
    app = {
        "driver": "docker",
        "hosts": ["web-1"],
        "target": {"image": repository, "replicas": REPLICAS, "labels": run_labels(),
                   "ports": [f"127.0.0.1:{base_port}-{base_port + REPLICAS}:8080"], "stop_timeout": 1},
        "health_check": {"type": "http", "path": "/healthz", "port": 8080, "interval": 0.3, "timeout": 1,
                         "retries": 3, "start_period": 1},
        "strategy": {"type": "rolling", "max_surge": 1, "max_unavailable": 0},
        "timeout": 120,
    }
    app.update(overrides)
    return app


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images):
    base = free_port_range(REPLICAS + 1)
    apps = {
        WEB: web_app(docker_images, base),
        SOLO: {"driver": "docker", "target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()},
               "strategy": {"type": "recreate"}, "on_conflict": "queue", "timeout": 60},
        TIGHT: {"driver": "docker", "target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()},
                "timeout": 3},
    }
    remove_run_containers(docker_client)
    harness = ConsoleHarness(tmp_path_factory.mktemp("deploy-console"), apps=apps).start()
    harness.deployer = harness.api_token("deployer", "test-deployer")
    harness.viewer = harness.api_token("viewer", "test-viewer")
    harness.base_port = base
    yield harness
    harness.close()
    remove_run_containers(docker_client)


def deploy(env, app: str, version: str, wait: bool = True, **body) -> dict:
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version, **body}, token=env.deployer)
    assert resp.status == 202, resp.body
    return wait_final(env, resp.json()["id"]) if wait else resp.json()


def wait_final(env, deploy_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.viewer).json()
        if d["state"] in FINAL:
            return d
        time.sleep(0.2)
    raise AssertionError(f"deploy {deploy_id} did not finish: {d}")


def containers(client, app: str, **labels) -> list:
    filters = [f"fleetdeck.app={app}"] + [f"{k}={v}" for k, v in labels.items()]
    return client.containers.list(all=True, filters={"label": filters})


def get_body(port: int) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        return resp.read().decode().strip() if resp.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


class PoolProbe(threading.Thread):
    """Fetch / from every port of the pool, round after round, recording what answered."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.rounds: list[list[str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.rounds.append([b for b in (get_body(p) for p in self.ports) if b])
            time.sleep(0.05)


def test_rolling_update_keeps_the_pool_answering_and_replaces_every_container(env, docker_client):
    first = deploy(env, WEB, "1.0", reason="first release")
    assert first["state"] == "succeeded", first
    old_ids = {c.id for c in containers(docker_client, WEB)}
    assert len(old_ids) == REPLICAS

    probe = PoolProbe(list(range(env.base_port, env.base_port + REPLICAS + 1)))
    probe.start()
    second = deploy(env, WEB, "2.0", reason="new body")
    probe.stop.set()
    probe.join()

    assert second["state"] == "succeeded", second
    assert second["previous_version"] == "1.0"
    assert [s["name"] for s in second["steps"]] == ["connect", "image", "rolling update", "cleanup"]
    assert {s["state"] for s in second["steps"]} == {"succeeded"}
    now = containers(docker_client, WEB)
    assert len(now) == REPLICAS and not old_ids & {c.id for c in now}
    for c in now:
        c.reload()
        assert c.labels["fleetdeck.version"] == "2.0" and c.labels["fleetdeck.deploy"] == str(second["id"])
        assert c.status == "running"
        # The app's restart policy (default unless-stopped) is applied once it is healthy.
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert len(probe.rounds) > 5
    assert all(probe.rounds), "a probe round found no replica answering"
    assert probe.rounds[0] and set(probe.rounds[0]) == {"web 1.0"}
    assert set(probe.rounds[-1]) == {"web 2.0"}

    events = env.request("GET", f"/api/v1/deploys/{second['id']}/events?after=0", token=env.viewer).json()
    assert events["finished"] and events["state"] == "succeeded"
    assert [e["seq"] for e in events["events"]] == list(range(1, len(events["events"]) + 1))
    assert sum("is healthy" in e["message"] for e in events["events"]) == REPLICAS
    later = env.request("GET", f"/api/v1/deploys/{second['id']}/events?after=3", token=env.viewer).json()
    assert later["events"][0]["seq"] == 4

    audit = env.services.db.run(env.services.audit.entries)
    mine = [a for a in audit if a["action"] == "deploy.create" and a["details"]["deploy_id"] == second["id"]]
    assert mine and mine[0]["actor"] == "api:test-deployer" and mine[0]["source"] == "127.0.0.1"
    assert mine[0]["details"]["version"] == "2.0" and mine[0]["details"]["reason"] == "new body"


@pytest.mark.parametrize("version, error", [("bad", "failed its health check"), ("crash", "exited with code 3")])
def test_failing_version_is_rolled_back_automatically(env, docker_client, version, error):
    good = deploy(env, WEB, "2.0")
    assert good["state"] == "succeeded"
    serving = {c.id for c in containers(docker_client, WEB)}

    failed = deploy(env, WEB, version)

    assert failed["state"] == "rolled_back", failed
    assert error in failed["error"]
    assert [s["name"] for s in failed["steps"]][-1] == "rollback"
    assert failed["steps"][-1]["state"] == "succeeded"
    assert containers(docker_client, WEB, **{"fleetdeck.deploy": failed["id"]}) == []
    now = containers(docker_client, WEB)
    assert {c.id for c in now} == serving
    assert all(c.status == "running" for c in now)
    bodies = {get_body(p) for p in range(env.base_port, env.base_port + REPLICAS + 1)} - {None}
    assert bodies == {"web 2.0"}
    apps = {a["name"]: a for a in env.request("GET", "/api/v1/apps", token=env.viewer).json()}
    assert apps[WEB]["current"]["version"] == "2.0" and apps[WEB]["active"] is None


def test_manual_rollback_to_previous_and_to_a_chosen_version(env, docker_client):
    assert deploy(env, WEB, "1.0")["state"] == "succeeded"
    assert deploy(env, WEB, "2.0")["state"] == "succeeded"

    resp = env.request("POST", f"/api/v1/apps/{WEB}/rollback", {}, token=env.deployer)
    assert resp.status == 202, resp.body
    back = wait_final(env, resp.json()["id"])
    assert back["state"] == "succeeded" and back["kind"] == "rollback"
    assert back["version"] == "1.0" and back["previous_version"] == "2.0"
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, WEB)} == {"1.0"}

    resp = env.request("POST", f"/api/v1/apps/{WEB}/rollback", {"to": "2.0", "reason": "undo"}, token=env.deployer)
    assert resp.status == 202
    assert wait_final(env, resp.json()["id"])["version"] == "2.0"
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, WEB)} == {"2.0"}

    never = env.request("POST", f"/api/v1/apps/{WEB}/rollback", {"to": "bad"}, token=env.deployer)
    assert never.status == 422 and never.json()["error"]["code"] == "unknown_version"
    audit = env.services.db.run(env.services.audit.entries)
    assert any(a["action"] == "deploy.rollback" and a["details"]["reason"] == "undo" for a in audit)


def test_a_second_deploy_of_a_busy_app_gets_409_and_cancel_cleans_up(env, docker_client):
    slow = deploy(env, WEB, "slow", wait=False)
    second = env.request("POST", f"/api/v1/apps/{WEB}/deploys", {"version": "1.0"}, token=env.deployer)
    assert second.status == 409
    assert second.json()["error"]["details"]["active_deploy"] == slow["id"]

    deadline = time.monotonic() + 30
    while not containers(docker_client, WEB, **{"fleetdeck.deploy": slow["id"]}):
        assert time.monotonic() < deadline, "the slow deploy started no container"
        time.sleep(0.2)
    cancel = env.request("POST", f"/api/v1/deploys/{slow['id']}/cancel", token=env.deployer)
    assert cancel.status == 202
    done = wait_final(env, slow["id"])
    assert done["state"] == "cancelled" and "cancelled by api:test-deployer" in done["error"]
    assert containers(docker_client, WEB, **{"fleetdeck.deploy": slow["id"]}) == []
    again = env.request("POST", f"/api/v1/deploys/{slow['id']}/cancel", token=env.deployer)
    assert again.status == 409
    assert deploy(env, WEB, "1.0")["state"] == "succeeded"  # the lock was released


def test_an_app_configured_to_queue_runs_deploys_one_after_another(env, docker_client):
    first = deploy(env, SOLO, "1.0", wait=False)
    second = deploy(env, SOLO, "2.0", wait=False)
    assert second["state"] == "queued"
    a, b = wait_final(env, first["id"]), wait_final(env, second["id"])
    assert a["state"] == b["state"] == "succeeded"
    assert b["started_at"] >= a["finished_at"]
    assert b["previous_version"] == "1.0"
    assert [c.labels["fleetdeck.version"] for c in containers(docker_client, SOLO)] == ["2.0"]


def test_a_deploy_that_outlives_its_timeout_fails_and_leaves_nothing(env, docker_client):
    d = deploy(env, TIGHT, "slow")
    assert d["state"] == "failed" and "timed out after 3 s" in d["error"]
    assert containers(docker_client, TIGHT) == []


def test_cli_deploy_wait_rollback_and_listing(env, docker_client):
    assert deploy(env, WEB, "1.0")["state"] == "succeeded"
    cli_env = dict(os.environ, FLEETDECK_URL=env.url, FLEETDECK_TOKEN=env.deployer, PYTHONPATH=str(REPO))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "console.cli", *args], env=cli_env, capture_output=True,
                              text=True, timeout=180)

    ok = cli("deploy", WEB, "2.0", "--reason", "from the cli", "--wait")
    assert ok.returncode == 0, ok.stderr
    assert "rolling update" in ok.stdout and "succeeded" in ok.stdout
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, WEB)} == {"2.0"}

    bad = cli("deploy", WEB, "bad", "--wait")
    assert bad.returncode == 1
    assert "rolled_back" in bad.stdout + bad.stderr and "failed its health check" in bad.stdout + bad.stderr

    listing = cli("deploys", WEB)
    assert listing.returncode == 0 and "from the cli" in listing.stdout and "rolled_back" in listing.stdout
    apps = cli("apps", "--json")
    assert apps.returncode == 0 and '"current"' in apps.stdout

    back = cli("rollback", WEB, "--wait")
    assert back.returncode == 0, back.stderr
    assert {c.labels["fleetdeck.version"] for c in containers(docker_client, WEB)} == {"1.0"}

    refused = cli("deploy", WEB, "1.0;rm -rf /")
    assert refused.returncode == 1 and "422" in refused.stderr


def test_cleanup_removes_only_this_runs_containers(env, docker_client, docker_images):
    """A container of someone else's app ``web`` on the same daemon survives this module's
    deploys and its cleanup; only this run's containers go."""
    assert deploy(env, SOLO, "1.0")["state"] == "succeeded"
    foreign = docker_client.containers.create(f"{docker_images}:1.0", name=f"fd-foreign-{uuid.uuid4().hex[:8]}",
                                              labels={"fleetdeck.app": "web", "fleetdeck.version": "1.0"})
    try:
        assert deploy(env, SOLO, "2.0")["state"] == "succeeded"
        assert remove_run_containers(docker_client) >= 1
        assert docker_client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}) == []
        assert containers(docker_client, SOLO) == []
        foreign.reload()  # raises docker.errors.NotFound had it been removed
        assert foreign.labels["fleetdeck.app"] == "web"
        assert [c.id for c in containers(docker_client, "web") if c.id == foreign.id] == [foreign.id]
    finally:
        foreign.remove(force=True)


# -- a daemon that dies mid-deploy: on a private dockerd, so others' containers are safe ---
@pytest.fixture
def private_dockerd(tmp_path):
    """A second dockerd on its own socket, data root and bridge (no iptables), stopped and
    started by the test; yields (socket path, start, stop).

    Its bridge is one it is given, never ``--bridge none``: a daemon started with no bridge
    deletes the host's default ``docker0`` interface, which the shared dockerd needs."""
    from tests.conftest import need

    dockerd, ip = shutil.which("dockerd"), shutil.which("ip")
    if dockerd is None or ip is None:
        need("docker", "no dockerd or ip binary")
    root = Path(f"/tmp/fd-dockerd-{os.getpid()}")
    sock = root / "docker.sock"
    bridge = f"fdtest{os.getpid() % 100000}"
    subnet = f"10.253.{os.getpid() % 250}.1/24"
    for args in (["link", "add", bridge, "type", "bridge"], ["addr", "add", subnet, "dev", bridge],
                 ["link", "set", bridge, "up"]):
        made = subprocess.run([ip, *args], capture_output=True, text=True)
        if made.returncode != 0:
            subprocess.run([ip, "link", "delete", bridge], capture_output=True)
            need("docker", f"cannot create bridge {bridge}: {made.stderr.strip()}")
    argv = [dockerd, "-H", f"unix://{sock}", "--data-root", str(root / "data"), "--exec-root",
            str(root / "exec"), "--pidfile", str(root / "docker.pid"), "--bridge", bridge, "--iptables=false",
            "--ip-masq=false", "--storage-driver", "vfs"]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        root.mkdir(exist_ok=True)
        log = open(tmp_path / "dockerd.log", "ab")
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        import docker

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                docker.DockerClient(base_url=f"unix://{sock}", timeout=5).ping()
                return
            except Exception:  # not up yet
                time.sleep(0.3)
        raise RuntimeError(f"private dockerd did not start: {(tmp_path / 'dockerd.log').read_text()[-2000:]}")

    def stop() -> None:
        proc = procs[-1]
        proc.terminate()
        proc.wait(60)

    try:
        start()
    except RuntimeError as exc:
        subprocess.run([ip, "link", "delete", bridge], capture_output=True)
        need("docker", str(exc))
    yield sock, start, stop
    if procs[-1].poll() is None:
        import docker

        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
        for c in client.containers.list(all=True):
            c.remove(force=True)
        stop()
    subprocess.run([ip, "link", "delete", bridge], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_daemon_stopped_mid_deploy_fails_the_deploy_and_cleanup_follows(tmp_path, private_dockerd):
    import docker

    from tests.docker_images import build_test_images

    sock, start, stop = private_dockerd
    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
    build_test_images(client, "fleetdeck-test/web", ("1.0", "slow"))
    app = {"driver": "docker", "target": {"image": "fleetdeck-test/web", "engine": f"unix://{sock}",
                                          "network": "none", "stop_timeout": 1, "api_timeout": 10},
           "strategy": {"type": "rolling", "max_surge": 1, "max_unavailable": 0}, "timeout": 120}
    harness = ConsoleHarness(tmp_path / "console", apps={"edge": app}).start()
    harness.services.deploys._cleanup_interval = 0.5  # retry the cleanup often in this test
    token = harness.api_token("deployer")
    try:
        def wait(deploy_id: int, cond, timeout: float = 90) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                d = harness.request("GET", f"/api/v1/deploys/{deploy_id}", token=token).json()
                if cond(d):
                    return d
                time.sleep(0.2)
            raise AssertionError(f"deploy {deploy_id}: {d}")

        first = harness.request("POST", "/api/v1/apps/edge/deploys", {"version": "1.0"}, token=token).json()
        assert wait(first["id"], lambda d: d["state"] in FINAL)["state"] == "succeeded"
        slow = harness.request("POST", "/api/v1/apps/edge/deploys", {"version": "slow"}, token=token).json()
        deadline = time.monotonic() + 30
        while not client.containers.list(filters={"label": f"fleetdeck.deploy={slow['id']}"}):
            assert time.monotonic() < deadline
            time.sleep(0.2)

        stop()
        failed = wait(slow["id"], lambda d: d["state"] in FINAL)
        assert failed["state"] == "failed"
        assert "Docker engine unreachable" in failed["error"]
        assert failed["cleanup_pending"] is True
        # The lock is released: the next request is accepted (and fails fast while the engine is down).
        nxt = harness.request("POST", "/api/v1/apps/edge/deploys", {"version": "1.0"}, token=token)
        assert nxt.status == 202
        assert wait(nxt.json()["id"], lambda d: d["state"] in FINAL)["state"] == "failed"

        start()
        client = docker.DockerClient(base_url=f"unix://{sock}", timeout=60)
        cleaned = wait(slow["id"], lambda d: not d["cleanup_pending"])
        assert cleaned["state"] == "failed"
        assert client.containers.list(all=True, filters={"label": f"fleetdeck.deploy={slow['id']}"}) == []
        serving = client.containers.list(all=True, filters={"label": "fleetdeck.app=edge"})
        assert [c.labels["fleetdeck.deploy"] for c in serving] == [str(first["id"])]
        assert serving[0].status == "running"
    finally:
        harness.close()
