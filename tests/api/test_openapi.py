"""The OpenAPI document covers every /api/ route and is generated from the request models
the handlers validate with; schemathesis with every check (``--checks all``) against a live
console finds no disagreement: no 5xx, no schema-valid input refused, no invalid input
accepted, no undocumented status, content type, header or body, and 405s carry Allow.
The ingest body, checked by its own fast parser, is held to the document by posting
batches generated from it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.app import ROUTES
from console.auth.roles import role_for
from console.openapi import API_PATHS, build_document, openapi_path
from console.schemas import REQUESTS
from tests.conftest import need
from tests.harness import ConsoleHarness, http

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# Each run takes its whole time budget (fuzzing repeats until it is spent); both together
# stay within about two minutes, console start-up included.
API_SECONDS = int(os.environ.get("FLEETDECK_SCHEMATHESIS_SECONDS", "75"))
INGEST_SECONDS = int(os.environ.get("FLEETDECK_SCHEMATHESIS_INGEST_SECONDS", "25"))


def schemathesis_cli() -> Path:
    cli = Path(sys.executable).parent / "st"
    if not cli.exists():
        need("schemathesis", f"no schemathesis command beside {sys.executable} (pip install -e '.[test]')")
    return cli


def test_every_api_route_is_in_the_document(console):
    api_routes = [(p, role) for p, _h, role in ROUTES if p.startswith("/api/")]
    missing = [p for p, _ in api_routes if p not in API_PATHS]
    assert not missing, f"describe these routes in console/openapi.py API_PATHS: {missing}"
    served = console.request("GET", "/api/v1/openapi.json").json()
    assert served == build_document(ROUTES, strict=True)
    assert served["openapi"].startswith("3.1.")
    assert "x-undocumented" not in served
    for pattern, role in api_routes:
        for method, op in API_PATHS[pattern].items():
            request = REQUESTS.get((pattern, method))
            path = openapi_path(pattern, list(request.path) if request else [])
            served_op = served["paths"][path][method]
            method_role = role_for(role, method.upper())
            assert served_op["x-fleetdeck-role"] == method_role
            assert (served_op["security"] == []) == (method_role == "public")
    # Every request model in the table belongs to a documented route and method.
    assert {key for key in REQUESTS} <= {(p, m) for p, ops in API_PATHS.items() for m in ops}


def test_request_side_of_the_document_comes_from_the_models(console):
    served = console.request("GET", "/api/v1/openapi.json").json()
    schemas = served["components"]["schemas"]
    # A body model is a component with its constraints; the handler refuses what it refuses.
    secret = schemas["NewSecret"]
    assert secret["additionalProperties"] is False and set(secret["required"]) == {"name", "kind", "value"}
    audit = {p["name"]: p for p in served["paths"]["/api/v1/audit"]["get"]["parameters"]}
    assert audit["before"]["schema"]["minimum"] == 1 and audit["limit"]["schema"]["maximum"] == 1000
    token_kinds = served["paths"]["/api/v1/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(token_kinds["oneOf"]) == 4


def test_405_answers_list_the_allowed_methods(console):
    admin = console.api_token("admin", "allow-check")
    for method, path, allowed in (("TRACE", "/api/v1/users", {"GET", "POST"}),
                                  ("PUT", "/api/v1/users/someone", {"PATCH", "DELETE"}),
                                  ("DELETE", "/api/v1/hosts", {"GET"}),
                                  ("POST", "/api/v1/openapi.json", {"GET"})):
        resp = console.request(method, path, b"{}" if method in ("PUT", "POST") else None, token=admin)
        assert resp.status == 405, (method, path, resp.status)
        assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed, (method, path, resp.headers)
        assert resp.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method, path, body, status, code", [
    ("GET", "/api/v1/audit?before=0", None, 400, "invalid_parameter"),  # ids start at 1
    ("GET", "/api/v1/tokens?include_revoked=null", None, 400, "invalid_parameter"),
    ("GET", "/api/v1/deploys?app=%C3%88", None, 400, "invalid_parameter"),  # not an app name: was 422
    ("GET", "/api/v1/metrics/range?metric=up&start=0&end=0&step=5e-324", None, 400, "invalid_parameter"),  # was 500
    ("POST", "/api/v1/tokens", {"name": "t", "role": "admin", "expires_in": 5e-324}, 400, "invalid_field"),
    ("POST", "/api/v1/tokens", {"name": "t", "role": "viewer", "apps": ["web"]}, 400, "invalid_field"),
    ("POST", "/api/v1/tokens", {"kind": "agent", "host": "h", "name": "x"}, 400, "unknown_field"),
    ("POST", "/api/v1/users", {"username": "u1", "password": "p" * 12, "role": "admin", "apps": []},
     400, "invalid_field"),
    ("POST", "/api/v1/users", {"username": "u1", "password": "p" * 12}, 400, "missing_field"),
    ("POST", "/api/v1/secrets", {"name": "s", "kind": "generic", "value": "v", "extra": 1}, 400, "unknown_field"),
])
def test_bad_requests_are_refused_as_the_document_says(console, method, path, body, status, code):
    resp = console.request(method, path, body, token=console.api_token("admin", "bad-requests"))
    assert resp.status == status, resp.body
    assert resp.json()["error"]["code"] == code


def test_an_app_list_for_a_user_who_is_not_a_deployer_is_a_conflict(console):
    admin = console.api_token("admin", "apps-conflict")
    created = console.request("POST", "/api/v1/users", {"username": "viewer-apps", "password": "p" * 12,
                                                        "role": "viewer"}, token=admin)
    assert created.status == 201, created.body
    resp = console.request("PATCH", "/api/v1/users/viewer-apps", {"apps": ["web"]}, token=admin)
    assert resp.status == 409 and resp.json()["error"]["code"] == "apps_need_deployer"


def _run_schemathesis(harness: ConsoleHarness, token: str, seconds: int, select: list[str], env: dict,
                      tmp_path: Path, name: str) -> None:
    report = tmp_path / f"{name}.txt"
    cmd = [str(schemathesis_cli()), "--config-file", str(HERE / "schemathesis.toml"), "run",
           f"{harness.url}/api/v1/openapi.json", "--checks", "all", "--header", f"Authorization: Bearer {token}",
           "--max-examples", "10", "--max-time", str(seconds), "--workers", "1", "--no-color",
           "--seed", os.environ.get("FLEETDECK_SCHEMATHESIS_SEED", "1"), *select]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks", **env}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=seconds + 240)
    report.write_text(proc.stdout)
    assert "Tested:" in proc.stdout, proc.stdout[-3000:]
    assert proc.returncode == 0, f"schemathesis found failures ({report}):\n{proc.stdout[-12000:]}"


def test_schemathesis_all_checks_pass(tmp_path):
    """Every operation but the WebSocket, as an admin; then ingest, as an agent."""
    harness = ConsoleHarness(tmp_path / "console").start()
    try:
        admin = harness.api_token("admin", "schemathesis")
        agent = harness.agent_token("fuzz-host")
        ids = [str(t["id"]) for t in harness.services.db.run(harness.services.tokens.list, True)]
        # Data in the answers, so that response bodies have something to be checked against.
        now_ms = int(time.time() * 1000)
        status, _ = harness.push("fuzz-host", agent, [{"name": "node_load1", "type": "gauge", "labels": {"a": "b"},
                                                       "points": [[now_ms - 10_000, 0.5], [now_ms, 0.7]]}],
                                 logs=[{"ts": now_ms, "source": "syslog", "line": "fuzz started"}])
        assert status == 200
        keep = {"FLEETDECK_ST_KEEP_TOKEN_IDS": ",".join(ids)}
        # Remote write bodies are any bytes to the document (snappy protobuf), so every
        # generated body is "schema-valid" and rightly refused: tests/api/test_remote_write.py
        # covers that route's answers.
        _run_schemathesis(harness, admin, API_SECONDS, ["--exclude-path", "/api/v1/live",
                                                        "--exclude-path", "/api/v1/ingest",
                                                        "--exclude-path", "/api/v1/write"], keep, tmp_path, "api")
        _run_schemathesis(harness, agent, INGEST_SECONDS, ["--include-path", "/api/v1/ingest"],
                          {**keep, "FLEETDECK_ST_AGENT_HOST": "fuzz-host"}, tmp_path, "ingest")
        # The run kept its credentials to the end (else most answers were 401s, and proved little).
        assert harness.request("GET", "/api/v1/me", token=admin).status == 200
    finally:
        harness.close()


def test_ingest_accepts_batches_generated_from_the_document(console):
    """The ingest body is validated by console/ingest/batch.py, not by its model: every batch
    the document allows (for the token's own host) is accepted."""
    try:
        import schemathesis
    except ImportError as exc:
        need("schemathesis", f"schemathesis is not installed ({exc}; pip install -e '.[test]')")
    from hypothesis import HealthCheck, given, settings

    agent = console.agent_token("gen-host")
    document = console.request("GET", "/api/v1/openapi.json").json()
    operation = schemathesis.openapi.from_dict(document)["/api/v1/ingest"]["POST"]
    answers: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def post(case) -> None:  # noqa: ANN001
        body = dict(case.body, host="gen-host")
        resp = http("POST", console.url + "/api/v1/ingest", json.dumps(body).encode(),
                    {"Content-Type": "application/json", "Authorization": f"Bearer {agent}"})
        answers.append(resp.status)
        assert resp.status == 200, (resp.status, resp.body[:500], json.dumps(body)[:2000])

    post()
    assert len(answers) >= 20


def test_a_deleted_user_is_gone_and_its_name_is_not_reused(console):
    # schemathesis' use-after-free check: DELETE used to disable only, and the user still answered.
    admin = console.api_token("admin", "delete-user")
    new = {"username": "leaver", "password": "p" * 12, "role": "viewer"}
    assert console.request("POST", "/api/v1/users", new, token=admin).status == 201
    deleted = console.request("DELETE", "/api/v1/users/leaver", token=admin)
    assert deleted.status == 200 and deleted.json()["disabled"] is True
    for method, body in (("PATCH", {"disabled": False}), ("DELETE", None)):
        resp = console.request(method, "/api/v1/users/leaver", body, token=admin)
        assert resp.status == 404 and resp.json()["error"]["code"] == "user_not_found", (method, resp.body)
    users = console.request("GET", "/api/v1/users", token=admin).json()["users"]
    assert "leaver" not in {u["username"] for u in users}
    again = console.request("POST", "/api/v1/users", new, token=admin)
    assert again.status == 409 and again.json()["error"]["code"] == "user_exists"
    actions = [e["action"] for e in console.request("GET", "/api/v1/audit", token=admin).json()["entries"]
               if e["target"] == "user:leaver"]
    assert actions[0] == "user.delete"
