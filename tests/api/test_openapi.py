"""The OpenAPI document covers every /api/ route, and a schemathesis run against the live
console (authenticated as admin; the agent token for ingest) finds no 5xx and no answer
outside the document: status codes, content types and response bodies."""
from __future__ import annotations

import time

import pytest

from console.app import ROUTES
from console.openapi import API_PATHS, build_document

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance,  # noqa: E402
                                               response_schema_conformance, status_code_conformance)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 12


def test_every_api_route_is_in_the_document(console):
    api_routes = [(p, role) for p, _h, role in ROUTES if p.startswith("/api/")]
    missing = [p for p, _ in api_routes if p not in API_PATHS]
    assert not missing, f"describe these routes in console/openapi.py API_PATHS: {missing}"
    served = console.request("GET", "/api/v1/openapi.json").json()
    assert served == build_document(ROUTES, strict=True)
    assert "x-undocumented" not in served
    for pattern, role in api_routes:
        path = API_PATHS[pattern][0]
        for method, op in served["paths"][path].items():
            if method == "parameters":
                continue
            assert op["x-fleetdeck-role"] == role
            assert (op["security"] == []) == (role == "public")


def test_schemathesis_finds_no_server_error_or_schema_violation(console):
    admin = console.api_token("admin", "schemathesis")
    agent = console.agent_token("fuzz-host")
    # Data in every answer, so that response bodies have something to be checked against.
    now_ms = int(time.time() * 1000)
    status, _ = console.push("fuzz-host", agent, [{"name": "node_load1", "type": "gauge", "labels": {"a": "b"},
                                                   "points": [[now_ms - 10_000, 0.5], [now_ms, 0.7]]}])
    assert status == 200
    console.request("POST", "/api/v1/secrets", {"name": "fuzz", "kind": "generic", "value": "v"}, token=admin)
    document = console.request("GET", "/api/v1/openapi.json").json()
    # Remote write bodies are bytes (snappy-compressed protobuf), sent as they are generated.
    schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
    schema = schemathesis.openapi.from_dict(document)
    admin_token_ids = {t["id"] for t in console.request("GET", "/api/v1/tokens", token=admin).json()["tokens"]}
    failures: list[str] = []
    calls: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/v1/live":
            continue  # a WebSocket: covered by the route walk and the live socket tests
        token = agent if operation.path in ("/api/v1/ingest", "/api/v1/write") else admin
        tested += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # noqa: ANN001
            if case.path_parameters and case.path_parameters.get("id") in admin_token_ids:
                case.path_parameters["id"] = 999_999_999  # keep the token this run authenticates with
            if case.path_parameters and case.path_parameters.get("username") == "admin":
                case.path_parameters["username"] = "not-admin"
            calls.append(operation.path)
            case.call_and_validate(base_url=console.url, headers={"Authorization": f"Bearer {token}"},
                                   checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert tested >= len(document["paths"]) - 1
    assert set(calls) == {p for p in document["paths"] if p != "/api/v1/live"}, sorted(set(calls))
    assert not failures, "\n\n".join(failures)
