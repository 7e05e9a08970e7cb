"""Rollbacks of the Docker driver against the real dockerd: the old containers are back
and healthy before the new ones go (cancel, automatic rollback, crash recovery), so the
number of answering replicas never falls below ``replicas - maxUnavailable``; a stopped
or crashed replica goes with its release at the next deploy; a removal dockerd reports as
already in progress (409) is waited for."""
from __future__ import annotations

import concurrent.futures
import contextlib
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from tests.docker_images import build_test_images, remove_run_containers, run_app
from tests.harness import ConsoleHarness
from tests.integration.test_deploy_docker import containers, free_port_range, get_body, wait_final, web_app

REPLICAS = 3  # web_app's replica count, with maxSurge 1 and maxUnavailable 0
CANCEL, FLAKY, RACY, STALE = run_app("cancel"), run_app("flaky"), run_app("racy"), run_app("stale")


class ReplicaProbe(threading.Thread):
    """Every 100 ms, GET / on every port of the pool at once; ``counts`` holds how many
    answered 200 in each round."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.counts: list[int] = []
        self.stop = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(len(ports))

    def run(self) -> None:
        while not self.stop.is_set():
            self.counts.append(sum(b is not None for b in self.pool.map(get_body, self.ports)))
            time.sleep(0.1)

    def finish(self) -> list[int]:
        self.stop.set()
        self.join(10)
        self.pool.shutdown()
        return self.counts


class DeleteRacer(threading.Thread):
    """A unix socket in front of dockerd that, when a client sends ``DELETE
    /containers/ID``, first sends the same removal itself and forwards the client's once
    dockerd shows the container as ``removing``: dockerd then answers the client's 409
    "removal of container ID is already in progress", as when a removal is retried or runs
    twice. ``conflicts`` counts the 409 answers the client got."""

    DELETE_RE = re.compile(rb"DELETE (?:/v[0-9.]+)?/containers/([0-9a-f]+)")  # .match: at the start

    def __init__(self, path: Path, docker_client) -> None:
        super().__init__(daemon=True)
        self.path, self.api = path, docker_client.api
        self.raced: list[str] = []
        self.conflicts = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect("/var/run/docker.sock")
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                m = self.DELETE_RE.match(data) if requests else None
                if m:
                    cid = m.group(1).decode()
                    self.raced.append(cid)
                    threading.Thread(target=self._remove, args=(cid,), daemon=True).start()
                    self._wait_removing(cid)
                if not requests and data.startswith(b"HTTP/1.1 409") and b"already in progress" in data:
                    self.conflicts += 1
                dst.sendall(data)
        except OSError:
            return  # one side closed or reset: the finally closes the other
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):  # already shut down by the other pump
                    s.shutdown(socket.SHUT_RDWR)

    def _remove(self, cid: str) -> None:
        """The racing removal. Either removal may finish first: the one that loses gets
        404 (gone) or 409 (in progress), which for this one is the race, not a fault."""
        try:
            self.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise

    def _wait_removing(self, cid: str) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if self.api.inspect_container(cid)["State"]["Status"] == "removing":
                    return
            except docker.errors.NotFound:
                return
            time.sleep(0.002)

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client, docker_images):
    build_test_images(docker_client, docker_images, ("flaky",))
    state = Path(f"/tmp/fd-flaky-{uuid.uuid4().hex[:8]}")
    state.mkdir()
    racer = DeleteRacer(Path(f"/tmp/fd-racer-{uuid.uuid4().hex[:8]}.sock"), docker_client)
    racer.start()
    bases = {}
    apps = {}
    for name in (CANCEL, FLAKY, RACY, STALE):
        bases[name] = free_port_range(REPLICAS + 1) if not bases else max(bases.values()) + 97
        apps[name] = web_app(docker_images, bases[name])
    apps[FLAKY]["target"].update(volumes=[f"{state}:/state"], env={"GOOD_STARTS": 2})
    apps[RACY]["target"]["engine"] = f"unix://{racer.path}"
    harness = ConsoleHarness(tmp_path_factory.mktemp("deploy-rollback"), apps=apps).start()
    harness.deployer = harness.viewer = harness.api_token("deployer")
    harness.bases, harness.state, harness.racer = bases, state, racer
    yield harness
    harness.close()
    racer.close()
    racer.path.unlink(missing_ok=True)
    for name in apps:
        remove_run_containers(docker_client, name)
    shutil.rmtree(state, ignore_errors=True)
    docker_client.images.remove(f"{docker_images}:flaky", force=True)


def started_by(docker_client, app: str, deploy_id: int) -> int:
    """How many containers deploy ``deploy_id`` of ``app`` has now (a plain listing: no
    inspect of each, which fails for a container removed meanwhile)."""
    labels = [f"fleetdeck.app={app}", f"fleetdeck.deploy={deploy_id}"]
    return len(docker_client.api.containers(all=True, filters={"label": labels}))


def deploy(env, app: str, version: str, wait: bool = True) -> dict:
    resp = env.request("POST", f"/api/v1/apps/{app}/deploys", {"version": version}, token=env.deployer)
    assert resp.status == 202, resp.body
    return wait_final(env, resp.json()["id"]) if wait else resp.json()


def pool(env, app: str) -> list[int]:
    return list(range(env.bases[app], env.bases[app] + REPLICAS + 1))


def messages(env, deploy_id: int) -> list[str]:
    events = env.request("GET", f"/api/v1/deploys/{deploy_id}/events", token=env.deployer).json()["events"]
    return [e["message"] for e in events]


def test_cancel_mid_update_restores_old_replicas_before_removing_new_ones(env, docker_client):
    assert deploy(env, CANCEL, "1.0")["state"] == "succeeded"
    old = {c.id for c in containers(docker_client, CANCEL)}
    probe = ReplicaProbe(pool(env, CANCEL))
    probe.start()
    d = deploy(env, CANCEL, "2.0", wait=False)
    deadline = time.monotonic() + 30
    # A second new container means an old one was stopped for it (maxSurge 1).
    while started_by(docker_client, CANCEL, d["id"]) < 2:
        assert time.monotonic() < deadline, "the deploy did not reach its second round"
        time.sleep(0.05)
    assert env.request("POST", f"/api/v1/deploys/{d['id']}/cancel", token=env.deployer).status == 202
    done = wait_final(env, d["id"])
    time.sleep(0.3)
    counts = probe.finish()

    assert done["state"] == "cancelled", done
    assert min(counts) >= REPLICAS, f"answering replicas fell to {min(counts)}: {counts}"
    now = containers(docker_client, CANCEL)
    assert {c.id for c in now} == old and all(c.status == "running" for c in now)
    log = messages(env, d["id"])
    restarted = [i for i, m in enumerate(log) if m.startswith("restarted old container")]
    healthy = [i for i, m in enumerate(log) if "is healthy" in m]
    removed = [i for i, m in enumerate(log) if m.startswith("removed ")]
    assert restarted and removed
    # Every restarted old container passed its health check, before the last new one went.
    assert all(any(h > r for h in healthy) for r in restarted)
    assert max(restarted) < max(removed)


def test_auto_rollback_mid_update_keeps_every_replica_answering(env, docker_client):
    assert deploy(env, FLAKY, "1.0")["state"] == "succeeded"
    old = {c.id for c in containers(docker_client, FLAKY)}
    probe = ReplicaProbe(pool(env, FLAKY))
    probe.start()
    # Two starts of "flaky" pass, the third crashes: two old containers are stopped by then.
    failed = deploy(env, FLAKY, "flaky")
    time.sleep(0.3)
    counts = probe.finish()

    assert failed["state"] == "rolled_back", failed
    assert "exited with code 3" in failed["error"]
    assert len(list(env.state.iterdir())) == 3
    assert min(counts) >= REPLICAS, f"answering replicas fell to {min(counts)}: {counts}"
    assert max(counts) == REPLICAS + 1  # the surge: old ones were back while new ones still served
    now = containers(docker_client, FLAKY)
    assert {c.id for c in now} == old and all(c.status == "running" for c in now)
    assert {get_body(p) for p in pool(env, FLAKY)} - {None} == {"web 1.0"}
    log = messages(env, failed["id"])
    assert sum(m.startswith("restarted old container") for m in log) == 2


def test_a_stopped_or_crashed_replica_goes_with_its_release(env, docker_client):
    first = deploy(env, STALE, "1.0")
    assert first["state"] == "succeeded"
    victim = containers(docker_client, STALE)[0]
    victim.kill()  # Exited (137), as a crashed replica
    victim.reload()
    assert victim.status == "exited"

    second = deploy(env, STALE, "2.0")

    assert second["state"] == "succeeded", second
    now = containers(docker_client, STALE)
    assert victim.id not in {c.id for c in now}
    assert len(now) == REPLICAS and {c.labels["fleetdeck.version"] for c in now} == {"2.0"}
    assert any(victim.name in m and "not running" in m for m in messages(env, second["id"]))


def test_a_removal_already_in_progress_is_waited_for_and_the_rollback_completes(env, docker_client):
    assert deploy(env, RACY, "1.0")["state"] == "succeeded"
    serving = {c.id for c in containers(docker_client, RACY)}
    # dockerd answers 409 only while the racer's removal is still in progress; one that
    # is already done answers 404 (seen once in CI). Every attempt must roll back cleanly,
    # and at least one must have met the 409.
    for _ in range(3):
        env.racer.raced.clear()
        conflicts = env.racer.conflicts

        failed = deploy(env, RACY, "bad")

        assert env.racer.raced, "no removal went through the racing socket"
        assert failed["state"] == "rolled_back", failed
        assert failed["cleanup_pending"] is False
        assert containers(docker_client, RACY, **{"fleetdeck.deploy": failed["id"]}) == []
        assert {c.id for c in containers(docker_client, RACY)} == serving
        if env.racer.conflicts > conflicts:
            break
    assert env.racer.conflicts >= 1, "dockerd never answered 409 already in progress"


def test_recovery_after_the_console_died_mid_update_restores_old_replicas_first(tmp_path, docker_client, docker_images):
    """kill -9 of a real console process while its rolling update has stopped an old
    container; the restarted console undoes the deploy (before the next one) without
    letting answering replicas fall below ``replicas``."""
    import json

    import yaml

    from tests.harness import http
    from tests.integration.procs import ConsoleProcess

    app = run_app("crash")
    base = free_port_range(REPLICAS + 1)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"apps": {app: web_app(docker_images, base)}}))
    console = ConsoleProcess(tmp_path, FLEETDECK_CONFIG=str(config)).start()
    token = console.api_token("crash", "deployer")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def api(method: str, path: str, body: dict | None = None) -> dict:
        resp = http(method, console.url + path, json.dumps(body).encode() if body is not None else None, headers)
        assert resp.status < 300, resp.body
        return json.loads(resp.body)

    def final(deploy_id: int) -> dict:
        deadline = time.monotonic() + 60
        while (d := api("GET", f"/api/v1/deploys/{deploy_id}"))["state"] not in ("succeeded", "failed",
                                                                                   "rolled_back", "cancelled"):
            assert time.monotonic() < deadline, d
            time.sleep(0.2)
        return d

    try:
        assert final(api("POST", f"/api/v1/apps/{app}/deploys", {"version": "1.0"})["id"])["state"] == "succeeded"
        old = {c.id for c in containers(docker_client, app)}
        probe = ReplicaProbe(list(range(base, base + REPLICAS + 1)))
        probe.start()
        d = api("POST", f"/api/v1/apps/{app}/deploys", {"version": "2.0"})
        deadline = time.monotonic() + 30
        while started_by(docker_client, app, d["id"]) < 2:
            assert time.monotonic() < deadline, "the deploy did not reach its second round"
            time.sleep(0.05)
        console.kill9()
        stopped = [c for c in containers(docker_client, app) if c.id in old and c.status != "running"]
        assert stopped, "no old container was stopped when the console died"
        console.start()
        # The next deploy first finishes the cleanup of the interrupted one (a version
        # that crashes at once keeps this one short).
        again = final(api("POST", f"/api/v1/apps/{app}/deploys", {"version": "crash"})["id"])
        counts = probe.finish()

        interrupted = api("GET", f"/api/v1/deploys/{d['id']}")
        assert interrupted["state"] == "failed" and interrupted["cleanup_pending"] is False
        assert again["state"] == "rolled_back", again
        assert containers(docker_client, app, **{"fleetdeck.deploy": d["id"]}) == []
        now = containers(docker_client, app)
        assert {c.id for c in now} == old and all(c.status == "running" for c in now)
        assert min(counts) >= REPLICAS, f"answering replicas fell to {min(counts)}: {counts}"
        events = api("GET", f"/api/v1/deploys/{d['id']}/events")["events"]
        assert any(e["message"].startswith("recovery: restarted old container") for e in events)
    finally:
        console.stop()
        remove_run_containers(docker_client, app)
