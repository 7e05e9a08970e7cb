"""Deny by default: every route of the one route table, with every kind of credential.

``PROBES`` is the table of expectations: for each route pattern, the requests to make
and the status an ALLOWED caller gets (chosen so that it proves the request passed
authentication and the role check, e.g. 400 for an empty body). A route missing from
``PROBES`` fails ``test_every_route_declares_its_probes``: a new route must say how it is
reached. Denied callers must get 401 (API, no credentials), a redirect to /login
(pages, no credentials) or 403 (wrong role, or an agent token on a user route).
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from console.app import ROUTES
from console.auth.roles import Principal
from tests.harness import CookieSession, logged_in


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    ok: tuple[int, ...]  # statuses an allowed caller may get
    body: bytes | None = None
    ends_session: bool = False


J = b"{}"
API_PREFIXES = ("/api/", "/prometheus/api/")  # answered in JSON, 401 without credentials
PROBES: dict[str, list[Probe]] = {
    r"/healthz": [Probe("GET", "/healthz", (200,))],
    r"/readyz": [Probe("GET", "/readyz", (200,))],
    r"/metrics": [Probe("GET", "/metrics", (200,))],
    r"/login": [Probe("GET", "/login", (200, 302))],
    r"/logout": [Probe("POST", "/logout", (302,), b"", ends_session=True)],
    r"/": [Probe("GET", "/", (200,))],
    r"/hosts/([^/]+)": [Probe("GET", "/hosts/example-host", (200,))],
    r"/audit": [Probe("GET", "/audit", (200,))],
    r"/deploys": [Probe("GET", "/deploys", (200,))],
    r"/deploys/([^/]+)": [Probe("GET", "/deploys/999999", (200, 404))],
    r"/logs": [Probe("GET", "/logs", (200,))],
    r"/alerts": [Probe("GET", "/alerts", (200,))],
    r"/alerts/rules/([^/]+)/([^/]+)": [Probe("GET", "/alerts/rules/no-such-group/NoSuchRule", (404,))],
    r"/api/v1/apps": [Probe("GET", "/api/v1/apps", (200,))],
    r"/api/v1/apps/([^/]+)": [Probe("GET", "/api/v1/apps/no-such-app", (404,))],
    r"/api/v1/apps/([^/]+)/deploys": [Probe("POST", "/api/v1/apps/no-such-app/deploys", (404,), J)],
    r"/api/v1/apps/([^/]+)/rollback": [Probe("POST", "/api/v1/apps/no-such-app/rollback", (404,), J)],
    r"/api/v1/deploys": [Probe("GET", "/api/v1/deploys", (200,))],
    r"/api/v1/deploys/([^/]+)": [Probe("GET", "/api/v1/deploys/999999", (404,))],
    r"/api/v1/deploys/([^/]+)/events": [Probe("GET", "/api/v1/deploys/999999/events", (404,))],
    r"/api/v1/deploys/([^/]+)/cancel": [Probe("POST", "/api/v1/deploys/999999/cancel", (404,), J)],
    r"/api/v1/logs": [Probe("GET", "/api/v1/logs", (200,))],
    r"/api/v1/ingest": [Probe("POST", "/api/v1/ingest", (400,), J)],
    r"/api/v1/write": [Probe("POST", "/api/v1/write", (415,), J)],
    r"/prometheus/api/v1/write": [Probe("POST", "/prometheus/api/v1/write", (415,), J)],
    r"/api/v1/hosts": [Probe("GET", "/api/v1/hosts", (200,))],
    r"/api/v1/hosts/([^/]+)": [Probe("DELETE", "/api/v1/hosts/no-such-host", (404,))],
    r"/api/v1/metrics/names": [Probe("GET", "/api/v1/metrics/names", (200,))],
    r"/api/v1/metrics/range": [Probe("GET", "/api/v1/metrics/range?metric=node_load1", (200,))],
    r"/api/v1/live": [Probe("GET", "/api/v1/live", (400,))],  # authenticated, then "use WebSocket"
    r"/api/v1/openapi.json": [Probe("GET", "/api/v1/openapi.json", (200,))],
    r"/api/v1/me": [Probe("GET", "/api/v1/me", (200,))],
    r"/api/v1/users": [Probe("GET", "/api/v1/users", (200,)), Probe("POST", "/api/v1/users", (400,), J)],
    r"/api/v1/users/([^/]+)": [Probe("PATCH", "/api/v1/users/nobody-here", (404,), J),
                               Probe("DELETE", "/api/v1/users/nobody-here", (404,))],
    r"/api/v1/tokens": [Probe("GET", "/api/v1/tokens", (200,)),
                        Probe("POST", "/api/v1/tokens", (400,), b'{"kind": "nope"}')],
    r"/api/v1/tokens/([^/]+)": [Probe("DELETE", "/api/v1/tokens/999999", (404,))],
    r"/api/v1/enrol": [Probe("POST", "/api/v1/enrol", (400,), J)],
    r"/api/v1/audit": [Probe("GET", "/api/v1/audit", (200,))],
    r"/api/v1/audit/verify": [Probe("GET", "/api/v1/audit/verify", (200,))],
    r"/api/v1/secrets": [Probe("GET", "/api/v1/secrets", (200,)), Probe("POST", "/api/v1/secrets", (400,), J)],
    r"/api/v1/secrets/([^/]+)": [Probe("DELETE", "/api/v1/secrets/no-such-secret", (404,))],
    r"/prometheus/api/v1/query": [Probe("GET", "/prometheus/api/v1/query?query=vector(1)", (200,))],
    r"/prometheus/api/v1/query_range": [Probe("GET", "/prometheus/api/v1/query_range?query=1&start=0&end=60&step=15",
                                              (200,))],
    r"/prometheus/api/v1/series": [Probe("GET", "/prometheus/api/v1/series?match[]=up", (200,))],
    r"/prometheus/api/v1/labels": [Probe("GET", "/prometheus/api/v1/labels", (200,))],
    r"/prometheus/api/v1/label/([^/]+)/values": [Probe("GET", "/prometheus/api/v1/label/job/values", (200,))],
    r"/prometheus/api/v1/query_exemplars": [Probe("GET", "/prometheus/api/v1/query_exemplars?query=up", (200,))],
    r"/prometheus/api/v1/metadata": [Probe("GET", "/prometheus/api/v1/metadata", (200,))],
    r"/prometheus/api/v1/status/buildinfo": [Probe("GET", "/prometheus/api/v1/status/buildinfo", (200,))],
    r"/prometheus/api/v1/status/runtimeinfo": [Probe("GET", "/prometheus/api/v1/status/runtimeinfo", (200,))],
    r"/prometheus/api/v1/rules": [Probe("GET", "/prometheus/api/v1/rules", (200,))],
    r"/prometheus/api/v1/alerts": [Probe("GET", "/prometheus/api/v1/alerts", (200,))],
    r"/api/v1/alerts/history": [Probe("GET", "/api/v1/alerts/history", (200,))],
    r"/-/reload": [Probe("POST", "/-/reload", (200,), b"")],
    r"/api/v1/notifications": [Probe("GET", "/api/v1/notifications", (200,))],
    r"/api/v1/notifications/test": [Probe("POST", "/api/v1/notifications/test", (400,), J)],
    r"/notifications": [Probe("GET", "/notifications", (200,))],
}

API_PREFIXES = ("/api/", "/prometheus/api/", "/-/")  # JSON answers (401, never a login redirect)
CREDENTIALS = ("anonymous", "agent", "viewer-token", "deployer-token", "admin-token",
               "viewer-session", "deployer-session", "admin-session")
ROLE_OF = {"viewer": "viewer", "deployer": "deployer", "admin": "admin"}


def test_every_route_declares_its_probes():
    patterns = [pattern for pattern, _handler, _role in ROUTES]
    missing = [p for p in patterns if p not in PROBES]
    assert not missing, f"add these routes to PROBES in tests/api/test_routes.py: {missing}"
    stale = sorted(set(PROBES) - set(patterns))
    assert not stale, f"PROBES lists routes that no longer exist: {stale}"


def allowed(role: str, credential: str) -> bool:
    if role == "public":
        return True
    if credential == "anonymous":
        return False
    if credential == "agent":
        return role == "agent"
    principal = Principal("user", "x", credential.split("-")[0])
    return principal.allows(role)


@pytest.fixture(scope="module")
def tokens(console):
    out = {"agent": console.agent_token("routes-host")}
    for role in ROLE_OF:
        out[f"{role}-token"] = console.api_token(role, f"routes-{role}")
    return out


def call(console, tokens, credential: str, probe: Probe):
    if credential.endswith("-session"):
        session = logged_in(console, credential.split("-")[0])
        return session.request(probe.method, probe.path, probe.body)
    return console.request(probe.method, probe.path, probe.body, token=tokens.get(credential))


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("pattern, handler, role", ROUTES, ids=[r[0] for r in ROUTES])
def test_route_answers_each_credential(console, tokens, pattern, handler, role, credential):
    probes = PROBES.get(pattern)
    if probes is None:
        pytest.fail(f"route {pattern} has no PROBES entry")
    for probe in probes:
        resp = call(console, tokens, credential, probe)
        where = (probe.method, probe.path, credential, resp.status, resp.body[:200])
        if allowed(role, credential):
            assert resp.status in probe.ok, where
        elif credential == "anonymous":
            if probe.path.startswith(API_PREFIXES):
                assert resp.status == 401, where
            else:
                assert resp.status == 302 and resp.headers["location"].startswith("/login"), where
        else:
            assert resp.status == 403, where
        if probe.path.startswith(API_PREFIXES):
            assert resp.headers["content-type"].startswith("application/json"), where
        assert resp.status < 500, where


def test_cookie_authenticated_unsafe_call_needs_xsrf(console):
    session = logged_in(console, "admin")
    bare = session.request("POST", "/api/v1/tokens", {"kind": "enrol"}, xsrf=False)
    assert bare.status == 403 and bare.json()["error"]["code"] == "xsrf_invalid"
    with_xsrf = session.request("POST", "/api/v1/tokens", {"kind": "enrol"})
    assert with_xsrf.status == 201, with_xsrf.body
    # A bearer token carries no ambient authority: no _xsrf needed.
    by_token = console.request("POST", "/api/v1/tokens", {"kind": "enrol"}, token=console.api_token("admin"))
    assert by_token.status == 201


def test_unknown_api_paths_and_methods_answer_json(console):
    token = console.api_token("admin")
    missing = console.request("GET", "/api/v1/nothing-here", token=token)
    assert missing.status == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = console.request("PUT", "/api/v1/hosts", b"{}", token=token)
    assert wrong_method.status == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    page = CookieSession(console.url).request("GET", "/no-such-page")
    assert page.status == 404 and page.headers["content-type"].startswith("text/html")
