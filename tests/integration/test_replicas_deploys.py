"""Leased deploys across two real console processes on one PostgreSQL schema, with a Docker
app on the real dockerd (this run's test images and app names, tests/docker_images.py):

- a deploy running on a replica killed with SIGKILL is taken over by the other within 30 s:
  it ends failed with the reason and its containers are removed by the driver's recovery;
- deploys queued through both replicas at once each run exactly once, one after another;
- a deploy running on one replica is cancelled through the other.
"""
from __future__ import annotations

import json
import time

import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess

HUNG, QUEUE = run_app("lease-hung"), run_app("lease-queue")
FINAL = ("succeeded", "failed", "rolled_back", "cancelled")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_url, docker_client, docker_images):
    tmp_path = tmp_path_factory.mktemp("replicas-deploys")
    target = {"image": docker_images, "labels": run_labels(), "stop_timeout": 1}
    apps = {HUNG: {"driver": "docker", "strategy": {"type": "recreate"}, "timeout": 300, "target": target},
            QUEUE: {"driver": "docker", "strategy": {"type": "recreate"}, "timeout": 60, "on_conflict": "queue",
                    "target": target, "health_check": {"type": "none"}}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"apps": apps}))
    env = {"FLEETDECK_DATABASE_URL": postgres_url, "FLEETDECK_CONFIG": str(config)}
    consoles = [ConsoleProcess(tmp_path / f"replica-{i}", **env) for i in range(2)]
    for console in consoles:
        console.data_dir.mkdir()
    consoles[0].start()  # the first migrates the schema
    consoles[1].start()
    yield consoles, consoles[0].api_token("lease", "deployer")
    for console in consoles:
        console.stop()
    for app in apps:
        remove_run_containers(docker_client, app)


def call(console: ConsoleProcess, token: str, method: str, path: str, body: dict | None = None) -> dict:
    resp = http(method, console.url + path, body=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, timeout=10)
    assert resp.status < 300, (resp.status, resp.body)
    return json.loads(resp.body)


def deploy_containers(docker_client, app: str, deploy_id: int) -> list:
    # sparse: the list's own answer, with no inspect per container afterwards, so a container
    # removed between the two (a rollback's clean-up) cannot raise NotFound here.
    return docker_client.containers.list(all=True, sparse=True, filters={"label": [f"fleetdeck.app={app}",
                                                                                   f"fleetdeck.deploy={deploy_id}"]})


def runner_of(postgres_url: str, deploy_id: int) -> str:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT runner FROM deploys WHERE id = :id"), {"id": deploy_id}).scalar_one()
    finally:
        engine.dispose()


def test_a_deploy_of_a_killed_replica_is_taken_over_and_cleaned_up(replicas, docker_client, postgres_url):
    (first, second), token = replicas
    # "slow" stays "starting" for 600 s: the deploy waits on its health check until the kill
    d = call(first, token, "POST", f"/api/v1/apps/{HUNG}/deploys", {"version": "slow"})
    wait_for(lambda: [c.status for c in deploy_containers(docker_client, HUNG, d["id"])] == ["running"], 60,
             "the deploy's container to run")
    assert f":{first.proc.pid}:" in runner_of(postgres_url, d["id"])  # run by the replica that accepted it
    assert call(second, token, "GET", f"/api/v1/deploys/{d['id']}")["state"] == "running"
    first.kill9()
    killed = time.monotonic()
    try:
        wait_for(lambda: call(second, token, "GET", f"/api/v1/deploys/{d['id']}")["state"] != "running", 30,
                 "the other replica to take the deploy over")
        took = time.monotonic() - killed
    finally:
        first.start()  # for the other tests of the module
    ended = call(second, token, "GET", f"/api/v1/deploys/{d['id']}")
    assert ended["state"] == "failed" and "the console running it stopped" in ended["error"], ended
    assert took < 30
    wait_for(lambda: not deploy_containers(docker_client, HUNG, d["id"]), 30, "the deploy's container removed")
    wait_for(lambda: not call(second, token, "GET", f"/api/v1/deploys/{d['id']}")["cleanup_pending"], 10,
             "the cleanup to be recorded")
    messages = [e["message"] for e in call(second, token, "GET", f"/api/v1/deploys/{d['id']}/events")["events"]]
    assert any(m.startswith("cleanup done: removed 1 container") for m in messages), messages


def test_deploys_queued_through_both_replicas_run_once_each(replicas, postgres_url):
    (first, second), token = replicas
    made = [call(console, token, "POST", f"/api/v1/apps/{QUEUE}/deploys", {"version": version})
            for console, version in ((first, "1.0"), (second, "2.0"), (first, "1.0"), (second, "2.0"))]

    def states() -> list[str]:
        return [call(second, token, "GET", f"/api/v1/deploys/{d['id']}")["state"] for d in made]

    wait_for(lambda: all(s in FINAL for s in states()), 120, "the queued deploys to finish")
    assert states() == ["succeeded"] * 4
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            started = conn.execute(text(
                "SELECT e.deploy_id, COUNT(*) FROM deploy_events e JOIN deploys d ON d.id = e.deploy_id "
                "WHERE d.app = :app AND e.kind = 'state' AND e.message LIKE 'running%' GROUP BY e.deploy_id"),
                {"app": QUEUE}).all()
            spans = conn.execute(text(
                "SELECT started_at, finished_at, runner FROM deploys WHERE app = :app ORDER BY started_at"),
                {"app": QUEUE}).all()
    finally:
        engine.dispose()
    assert sorted(n for _, n in started) == [1, 1, 1, 1], started  # each deploy started once
    assert all(runner for _, _, runner in spans)
    for (_, finished, _), (started_next, _, _) in zip(spans, spans[1:]):
        assert started_next >= finished  # one at a time in the lane, whichever replica ran it


def test_a_deploy_running_on_one_replica_is_cancelled_through_the_other(replicas, docker_client, postgres_url):
    (first, second), token = replicas
    d = call(first, token, "POST", f"/api/v1/apps/{HUNG}/deploys", {"version": "slow"})
    wait_for(lambda: [c.status for c in deploy_containers(docker_client, HUNG, d["id"])] == ["running"], 60,
             "the deploy's container to run")
    assert f":{first.proc.pid}:" in runner_of(postgres_url, d["id"])
    assert call(second, token, "POST", f"/api/v1/deploys/{d['id']}/cancel")["state"] == "running"
    wait_for(lambda: call(second, token, "GET", f"/api/v1/deploys/{d['id']}")["state"] in FINAL, 15,
             "the replica running the deploy to cancel it")
    ended = call(first, token, "GET", f"/api/v1/deploys/{d['id']}")
    assert ended["state"] == "cancelled" and "cancelled by" in ended["error"], ended
    assert not deploy_containers(docker_client, HUNG, d["id"])  # rolled back by its runner
