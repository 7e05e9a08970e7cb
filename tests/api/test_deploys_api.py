"""The deploy API's contract where no Docker engine is needed: validation before any side
effect, roles, errors, and a deploy against an unreachable engine."""
from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from tests.harness import ConsoleHarness

APPS = {
    "web": {"driver": "docker", "hosts": ["web-1"],
            "target": {"image": "registry.example.com/team/web", "engine": "unix:///nonexistent/docker.sock",
                       "replicas": 2, "ports": ["127.0.0.1:18080-18082:8080"], "env": {"SECRET": "hunter2"}},
            "health_check": {"type": "http", "path": "/healthz", "port": 8080}},
}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    harness = ConsoleHarness(tmp_path_factory.mktemp("deploy-api"), apps=APPS).start()
    harness.deployer = harness.api_token("deployer", "ci")
    harness.viewer = harness.api_token("viewer", "watcher")
    yield harness
    harness.close()


def side_effects(api) -> tuple[int, int]:
    return api.count("deploys"), api.count("audit_log")


@pytest.mark.parametrize("version", ["1.0;rm -rf /", "$(id)", "`id`", "../etc", "1.0/../../x", "-rf", ".hidden",
                                     "a" * 129, "", " 1.0", "1.0\n", "sha256:abc"])
def test_malformed_versions_get_422_before_any_side_effect(api, version):
    before = side_effects(api)
    resp = api.request("POST", "/api/v1/apps/web/deploys", {"version": version}, token=api.deployer)
    assert resp.status == 422, resp.body
    assert resp.json()["error"]["code"] == "invalid_version"
    assert side_effects(api) == before


@pytest.mark.parametrize("version", [1.0, None, ["1.0"], {"v": 1}])
def test_versions_that_are_not_strings_get_422(api, version):
    resp = api.request("POST", "/api/v1/apps/web/deploys", {"version": version}, token=api.deployer)
    assert resp.status == 422 and resp.json()["error"]["code"] == "invalid_version"


@pytest.mark.parametrize("app", ["web;ls", "$(id)", "`id`", "..", "Web", "w" * 64, "web app"])
def test_malformed_app_names_get_422_before_any_side_effect(api, app):
    before = side_effects(api)
    for path, body in ((f"/api/v1/apps/{quote(app, safe='')}/deploys", {"version": "1.0"}),
                       (f"/api/v1/apps/{quote(app, safe='')}/rollback", {})):
        resp = api.request("POST", path, body, token=api.deployer)
        assert resp.status == 422, (app, resp.status, resp.body)
        assert resp.json()["error"]["code"] == "invalid_app"
    assert side_effects(api) == before


def test_rollback_target_is_validated_like_a_version(api):
    resp = api.request("POST", "/api/v1/apps/web/rollback", {"to": "1.0;reboot"}, token=api.deployer)
    assert resp.status == 422 and resp.json()["error"]["code"] == "invalid_version"


def test_unknown_app_is_404_and_lists_the_known_ones(api):
    resp = api.request("POST", "/api/v1/apps/nope/deploys", {"version": "1.0"}, token=api.deployer)
    assert resp.status == 404
    assert resp.json()["error"]["details"]["apps"] == ["web"]


def test_bad_bodies_get_json_errors(api):
    assert api.request("POST", "/api/v1/apps/web/deploys", b"{nope", token=api.deployer).status == 400
    assert api.request("POST", "/api/v1/apps/web/deploys", [1], token=api.deployer).status == 400
    nul = api.request("POST", "/api/v1/apps/web/deploys", {"version": "1.0", "reason": ["x", {"k": "a\x00"}]},
                      token=api.deployer)
    assert nul.status == 400 and nul.json()["error"]["code"] == "invalid_json"
    missing = api.request("POST", "/api/v1/apps/web/deploys", {}, token=api.deployer)
    assert missing.status == 422 and "required" in missing.json()["error"]["message"]
    long_reason = api.request("POST", "/api/v1/apps/web/deploys", {"version": "1.0", "reason": "x" * 1001},
                              token=api.deployer)
    assert long_reason.status == 422 and long_reason.json()["error"]["code"] == "invalid_reason"
    for path in ("/api/v1/deploys/999999", "/api/v1/deploys/abc", "/api/v1/deploys/999999/events",
                 "/api/v1/deploys/%C2%B2", "/api/v1/deploys/99999999999999999999",
                 "/api/v1/deploys/2147483648"):  # past a 32-bit column: PostgreSQL would refuse it
        resp = api.request("GET", path, token=api.viewer)
        assert resp.status == 404 and resp.json()["error"]["code"] == "unknown_deploy"
    bad_since = api.request("GET", "/api/v1/deploys?since=yesterday", token=api.viewer)
    assert bad_since.status == 400 and bad_since.json()["error"]["code"] == "invalid_parameter"
    for query in ("/api/v1/deploys?before=2147483648", "/api/v1/deploys?limit=%C2%B2",
                  "/api/v1/deploys/1/events?after=2147483648", "/api/v1/deploys?before=-1"):
        resp = api.request("GET", query, token=api.viewer)
        assert resp.status == 400 and resp.json()["error"]["code"] == "invalid_parameter", (query, resp.body)


def test_a_viewer_cannot_deploy_roll_back_or_cancel(api):
    before = side_effects(api)
    assert api.request("POST", "/api/v1/apps/web/deploys", {"version": "1.0"}, token=api.viewer).status == 403
    assert api.request("POST", "/api/v1/apps/web/rollback", {}, token=api.viewer).status == 403
    assert api.request("POST", "/api/v1/deploys/1/cancel", {}, token=api.viewer).status == 403
    # No deploy is stored; each refusal is audited (outcome denied), nothing else.
    assert side_effects(api) == (before[0], before[1] + 3)
    denied = api.services.db.run(api.services.audit.entries, 3)
    assert [(e["action"], e["actor"], e["details"]["outcome"]) for e in reversed(denied)] == [
        ("deploy.create", "api:watcher", "denied"), ("deploy.rollback", "api:watcher", "denied"),
        ("deploy.cancel", "api:watcher", "denied")]


def test_rollback_without_history_is_a_409(api):
    resp = api.request("POST", "/api/v1/apps/web/rollback", {}, token=api.deployer)
    assert resp.status == 409 and resp.json()["error"]["code"] == "nothing_to_roll_back"


def test_apps_listing_hides_env_values(api):
    apps = api.request("GET", "/api/v1/apps", token=api.viewer).json()
    assert [a["name"] for a in apps] == ["web"]
    web = apps[0]
    assert web["target"]["env_keys"] == ["SECRET"] and "hunter2" not in str(apps)
    assert web["target"]["ports"] == ["127.0.0.1:18080-18082:8080/tcp"]
    assert web["strategy"] == {"type": "rolling", "max_unavailable": 0, "max_surge": 1}
    assert web["current"] is None and web["active"] is None
    detail = api.request("GET", "/api/v1/apps/web", token=api.viewer).json()
    assert detail["instances"] is None and "Docker engine unreachable" in detail["error"]


def test_an_unreachable_engine_fails_the_deploy_with_the_reason_and_releases_the_lock(api):
    started = time.time()
    resp = api.request("POST", "/api/v1/apps/web/deploys", {"version": "1.4.2", "reason": "try"},
                       token=api.deployer)
    assert resp.status == 202
    assert resp.headers["location"] == f"/api/v1/deploys/{resp.json()['id']}"
    deploy_id = resp.json()["id"]
    deadline = time.monotonic() + 30
    while (d := api.request("GET", f"/api/v1/deploys/{deploy_id}", token=api.viewer).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert d["state"] == "failed" and "Docker engine unreachable" in d["error"]
    assert d["requested_by"] == "api:ci" and d["reason"] == "try"
    step = d["steps"][0]
    error = step["i18n"]["values"]["error"]  # the Docker library's own text, kept as it is
    assert d["steps"] == [{"name": "connect", "state": "failed", "message": f"Docker engine unreachable: {error}",
                           "started_at": step["started_at"], "finished_at": step["finished_at"],
                           "i18n": {"template": "Docker engine unreachable: {error}", "values": {"error": error}},
                           "message_parts": [{"text": "Docker engine unreachable: ", "value": False},
                                             {"text": error, "value": True}]}]
    again = api.request("POST", "/api/v1/apps/web/deploys", {"version": "1.4.3"}, token=api.deployer)
    assert again.status == 202  # the per-app lock was released

    listing = api.request("GET", f"/api/v1/deploys?app=web&since={started - 1}", token=api.viewer).json()
    assert [x["id"] for x in listing["deploys"]][-1] == deploy_id
    by_host = api.request("GET", "/api/v1/deploys?host=web-1", token=api.viewer).json()
    assert deploy_id in [x["id"] for x in by_host["deploys"]]
    other_host = api.request("GET", "/api/v1/deploys?host=db-1", token=api.viewer).json()
    assert other_host["deploys"] == []
    future = api.request("GET", f"/api/v1/deploys?since={time.time() + 3600}", token=api.viewer).json()
    assert future["deploys"] == []
