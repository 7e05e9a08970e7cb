"""Approvals, environments with promotion, and audited refusals, through the real console
over HTTP and the CLI, with Docker apps deployed on the real dockerd (docs/deploys.md,
"Approvals and environments")."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import database_url
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, CookieSession, logged_in, wait_for
from tests.integration.test_deploy_docker import REPO, containers

FINAL = ("succeeded", "failed", "rolled_back", "cancelled", "rejected", "expired")
PROT, SHORT, SHOP = run_app("prot"), run_app("short"), run_app("shop")


def docker_target(image: str) -> dict:
    return {"image": image, "stop_timeout": 1, "labels": run_labels()}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request, tmp_path_factory, docker_client, docker_images):
    apps = {
        PROT: {"target": docker_target(docker_images), "strategy": {"type": "recreate"}, "timeout": 60,
               "approval": {"required": True, "approver_role": "admin", "timeout": 120}},
        SHORT: {"target": docker_target(docker_images), "strategy": {"type": "recreate"}, "timeout": 60,
                "approval": {"approver_role": "deployer", "timeout": 2}},
        SHOP: {"strategy": {"type": "recreate"}, "timeout": 60,
               "environments": {"staging": {"target": docker_target(docker_images)},
                                "production": {"target": docker_target(docker_images),
                                               "approval": {"approver_role": "admin", "timeout": 120}}}},
    }
    remove_run_containers(docker_client)
    with database_url(request.param, tmp_path_factory) as url:
        harness = ConsoleHarness(tmp_path_factory.mktemp("approvals-console"), database_url=url, apps=apps).start()
        try:
            yield prepared(harness)
        finally:
            harness.close()
            remove_run_containers(docker_client)


def prepared(harness: ConsoleHarness) -> ConsoleHarness:
    """The harness with users alice (deployer), bob (admin), carol (deployer) and their
    tokens, a viewer, an operator token acting for nobody and a deployer limited to SHOP."""
    services = harness.services
    for name, role in (("alice", "deployer"), ("bob", "admin"), ("carol", "deployer")):
        services.db.run(services.users.create, name, f"{name}-password-123", role)
        setattr(harness, name, services.db.run(functools.partial(services.tokens.create_api_token, owner=name),
                                               f"{name}-ci", role, None))
    harness.viewer = harness.api_token("viewer", "test-viewer")
    harness.operator = harness.api_token("admin", "test-operator")  # no owner: its own identity
    harness.shop_only = services.db.run(functools.partial(services.tokens.create_api_token, apps=[SHOP]),
                                        "shop-only", "deployer", None)
    return harness


def get(env, deploy_id: int) -> dict:
    return env.request("GET", f"/api/v1/deploys/{deploy_id}", token=env.viewer).json()


def wait_final(env, deploy_id: int, timeout: float = 90) -> dict:
    return wait_for(lambda: (lambda d: d if d["state"] in FINAL else None)(get(env, deploy_id)), timeout,
                    f"deploy {deploy_id} to finish")


def audit(env, action: str, **details) -> list[dict]:
    entries = env.services.db.run(env.services.audit.entries, 1000)
    return [e for e in entries if e["action"] == action
            and all(e["details"].get(k) == v for k, v in details.items())]


def cli(env, token: str, *args: str) -> subprocess.CompletedProcess:
    child = dict(os.environ, FLEETDECK_URL=env.url, FLEETDECK_TOKEN=token, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env=child, cwd=REPO, capture_output=True,
                          text=True, timeout=180)


def test_protected_app_waits_for_another_users_approval(env, docker_client):
    resp = env.request("POST", f"/api/v1/apps/{PROT}/deploys", {"version": "1.0"}, token=env.alice)
    assert resp.status == 202, resp.body
    d = resp.json()
    assert d["state"] == "awaiting_approval"
    approval = d["approval"]
    assert approval["required"] is True and approval["state"] == "pending"
    assert approval["requested_by"] == "user:alice" and approval["approver_role"] == "admin"
    assert approval["decided_by"] is None and approval["expires_at"] == pytest.approx(time.time() + 120, abs=10)
    assert audit(env, "deploy.approval.request", deploy_id=d["id"])[0]["actor"] == "api:alice-ci"

    time.sleep(2)  # nothing starts while it waits
    assert get(env, d["id"])["state"] == "awaiting_approval"
    assert containers(docker_client, PROT) == []

    # A deployer is below the approver role: refused, and the refusal is audited.
    denied = env.request("POST", f"/api/v1/deploys/{d['id']}/approve", {}, token=env.carol)
    assert denied.status == 403 and denied.json()["error"]["code"] == "approver_role"
    [entry] = audit(env, "deploy.approve", deploy_id=d["id"], outcome="denied")
    assert entry["actor"] == "api:carol-ci" and entry["target"] == f"app:{PROT}"
    assert get(env, d["id"])["state"] == "awaiting_approval"

    done = cli(env, env.bob, "approve", str(d["id"]), "--reason", "release notes read")
    assert done.returncode == 0, done.stderr
    assert f"deploy #{d['id']} of {PROT} 1.0: approved, now queued" in done.stdout
    final = wait_final(env, d["id"])
    assert final["state"] == "succeeded", final
    assert final["approval"]["state"] == "approved" and final["approval"]["decided_by"] == "user:bob"
    assert final["approval"]["reason"] == "release notes read"
    running = containers(docker_client, PROT)
    assert [c.labels["fleetdeck.version"] for c in running] == ["1.0"]
    [entry] = audit(env, "deploy.approve", deploy_id=d["id"], requested_by="user:alice")
    assert entry["actor"] == "api:bob-ci" and "outcome" not in entry["details"]

    # The requester cannot approve their own deploy, even as an admin.
    mine = env.request("POST", f"/api/v1/apps/{PROT}/deploys", {"version": "2.0"}, token=env.bob).json()
    self_approval = env.request("POST", f"/api/v1/deploys/{mine['id']}/approve", {}, token=env.bob)
    assert self_approval.status == 403 and self_approval.json()["error"]["code"] == "self_approval"
    assert audit(env, "deploy.approve", deploy_id=mine["id"], outcome="denied", code="self_approval")
    # The deploy page shows the buttons to admins other than the requester only.
    as_bob = CookieSession(env.url)
    assert as_bob.login("bob", "bob-password-123").status == 302
    page = as_bob.request("GET", f"/deploys/{mine['id']}").body
    assert b'id="approval-state"' in page and b'id="approve-button"' not in page
    assert b'id="approve-button"' in logged_in(env, "admin").request("GET", f"/deploys/{mine['id']}").body

    rejected = cli(env, env.operator, "reject", str(mine["id"]), "--reason", "not on a Friday")
    assert rejected.returncode == 0, rejected.stderr
    final = get(env, mine["id"])
    assert final["state"] == "rejected" and final["approval"]["state"] == "rejected"
    assert final["approval"]["decided_by"] == "api:test-operator" and "not on a Friday" in final["error"]
    assert audit(env, "deploy.reject", deploy_id=mine["id"], reason="not on a Friday")
    again = env.request("POST", f"/api/v1/deploys/{mine['id']}/approve", {}, token=env.operator)
    assert again.status == 409 and again.json()["error"]["code"] == "not_awaiting_approval"
    time.sleep(1)
    assert [c.labels["fleetdeck.version"] for c in containers(docker_client, PROT)] == ["1.0"]


def test_an_undecided_request_expires_and_never_runs(env, docker_client):
    d = env.request("POST", f"/api/v1/apps/{SHORT}/deploys", {"version": "1.0"}, token=env.alice).json()
    assert d["state"] == "awaiting_approval"
    final = wait_for(lambda: (lambda x: x if x["state"] != "awaiting_approval" else None)(get(env, d["id"])), 15,
                     "the request to expire (2 s)")
    assert final["state"] == "expired" and final["approval"]["state"] == "expired"
    assert final["started_at"] is None and final["finished_at"] - final["created_at"] == pytest.approx(2, abs=1.5)
    assert [s["name"] for s in final["steps"]] == []
    [entry] = audit(env, "deploy.approval.expire", deploy_id=d["id"])
    assert entry["actor"] == "system" and entry["details"]["requested_by"] == "user:alice"
    late = env.request("POST", f"/api/v1/deploys/{d['id']}/approve", {}, token=env.carol)
    assert late.status == 409
    assert containers(docker_client, SHORT) == []


def test_environments_deploy_separately_and_promote_runs_the_staging_version(env, docker_client):
    unnamed = env.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": "1.0"}, token=env.alice)
    assert unnamed.status == 422 and unnamed.json()["error"]["code"] == "environment_required"
    assert unnamed.json()["error"]["details"]["environments"] == ["production", "staging"]
    unknown = env.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": "1.0", "environment": "qa"},
                          token=env.alice)
    assert unknown.status == 422 and unknown.json()["error"]["code"] == "unknown_environment"

    first = cli(env, env.alice, "deploy", SHOP, "1.0", "--env", "staging", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    second = env.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": "2.0", "environment": "staging"},
                         token=env.alice).json()
    assert second["state"] == "queued" and second["environment"] == "staging" and second["approval"] is None
    assert wait_final(env, second["id"])["state"] == "succeeded"
    staging = containers(docker_client, f"{SHOP}-staging")
    assert [c.labels["fleetdeck.version"] for c in staging] == ["2.0"]
    assert containers(docker_client, f"{SHOP}-production") == []

    promoted = cli(env, env.alice, "promote", SHOP, "--from", "staging", "--to", "production", "--json")
    assert promoted.returncode == 0, promoted.stderr
    p = json.loads(promoted.stdout)
    assert (p["kind"], p["environment"], p["version"], p["state"]) == ("promote", "production", "2.0",
                                                                      "awaiting_approval")
    assert p["reason"] == f"promoted from staging (deploy {second['id']})"
    assert env.request("POST", f"/api/v1/deploys/{p['id']}/approve", {}, token=env.bob).status == 200
    final = wait_final(env, p["id"])
    assert final["state"] == "succeeded", final
    production = containers(docker_client, f"{SHOP}-production")
    assert [c.labels["fleetdeck.version"] for c in production] == ["2.0"]
    assert {c.id for c in containers(docker_client, f"{SHOP}-staging")} == {c.id for c in staging}
    assert audit(env, "deploy.promote", deploy_id=p["id"], environment="production")

    app = next(a for a in env.request("GET", "/api/v1/apps", token=env.viewer).json() if a["name"] == SHOP)
    assert app["environments"]["staging"]["current"]["version"] == "2.0"
    assert app["environments"]["production"]["current"]["id"] == p["id"]
    assert app["environments"]["production"]["approval"]["approver_role"] == "admin"
    assert app["environments"]["staging"]["approval"] is None
    listing = cli(env, env.viewer, "apps")
    assert listing.returncode == 0, listing.stderr
    assert "staging=2.0 production=2.0" in next(line for line in listing.stdout.splitlines() if SHOP in line)
    history = env.request("GET", f"/api/v1/deploys?app={SHOP}", token=env.viewer).json()["deploys"]
    assert [(d["environment"], d["version"]) for d in history] == [("production", "2.0"), ("staging", "2.0"),
                                                                    ("staging", "1.0")]
    # Rollback stays in its environment: staging goes back to 1.0, production keeps 2.0.
    back = env.request("POST", f"/api/v1/apps/{SHOP}/rollback", {"environment": "staging"}, token=env.alice).json()
    assert back["version"] == "1.0" and wait_final(env, back["id"])["state"] == "succeeded"
    assert [c.labels["fleetdeck.version"] for c in containers(docker_client, f"{SHOP}-production")] == ["2.0"]
    nothing = env.request("POST", f"/api/v1/apps/{SHOP}/promote", {"from": "production", "to": "production"},
                          token=env.alice)
    assert nothing.status == 422


def test_denied_deploy_rollback_cancel_and_approve_attempts_are_audited(env):
    viewer = env.request("POST", f"/api/v1/apps/{PROT}/deploys", {"version": "2.0"}, token=env.viewer)
    assert viewer.status == 403
    [entry] = audit(env, "deploy.create", outcome="denied")
    assert entry["actor"] == "api:test-viewer" and entry["target"] == f"app:{PROT}"
    assert entry["source"] == "127.0.0.1"

    outside = env.request("POST", f"/api/v1/apps/{PROT}/rollback", {}, token=env.shop_only)
    assert outside.status == 403 and outside.json()["error"]["code"] == "app_not_allowed"
    [entry] = audit(env, "deploy.rollback", outcome="denied")
    assert entry["actor"] == "api:shop-only" and entry["target"] == f"app:{PROT}"
    assert entry["details"]["code"] == "app_not_allowed"

    waiting = env.request("POST", f"/api/v1/apps/{PROT}/deploys", {"version": "2.0"}, token=env.alice).json()
    cancel = env.request("POST", f"/api/v1/deploys/{waiting['id']}/cancel", {}, token=env.viewer)
    assert cancel.status == 403
    [entry] = audit(env, "deploy.cancel", outcome="denied")
    assert entry["actor"] == "api:test-viewer" and entry["details"]["deploy_id"] == waiting["id"]
    assert entry["target"] == f"app:{PROT}"
    approve = env.request("POST", f"/api/v1/deploys/{waiting['id']}/approve", {}, token=env.shop_only)
    assert approve.status == 403
    assert audit(env, "deploy.approve", outcome="denied", deploy_id=waiting["id"], code="app_not_allowed")
    # Cancelling a deploy that awaits approval ends it at once; it never runs.
    cancelled = env.request("POST", f"/api/v1/deploys/{waiting['id']}/cancel", {}, token=env.alice)
    assert cancelled.status == 202 and cancelled.json()["state"] == "cancelled"
