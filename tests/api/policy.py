"""Who may call each route of the console, written by hand.

This table is the access policy as the product intends it, kept apart from the route
table it checks (console/app.py ``ROUTES`` and the role function of console/auth/roles.py):
a route declared there with the wrong role answers differently from what is written here,
and tests/api/test_policy.py fails. Do not compute an entry from the route table.

One entry per (route pattern, HTTP method) the console serves:

    (pattern, method): Rule(who may call it, a path that reaches it, what they get[, body])

- ``who``: the callers that pass authorisation, from ``ANYONE`` (every caller, even one
  without credentials), ``AGENTS`` (an agent token), ``VIEWERS`` / ``DEPLOYERS`` /
  ``ADMINS`` (users, by session or API token, of at least that role), or a set of your own
  from the caller names ``anonymous``, ``enrol``, ``agent``, ``viewer``, ``deployer``,
  ``admin``.
- ``path``: a concrete path for the pattern (a name that does not exist is fine: the
  answer then proves the caller got past authorisation).
- ``ok``: the statuses an allowed caller may get (400 for an empty body, 404 for a missing
  object...). A refused caller without valid credentials (``anonymous``, or an ``enrol``
  token used as a bearer) gets 401 on the API (``API_PREFIXES``) and a redirect to /login
  on a page; one whose credentials do not carry the right (a viewer on an admin route, an
  agent on a user route) gets 403. A new family of API paths goes into ``API_PREFIXES``.

A route the console starts serving (say ``POST /api/v1/silences``) fails the test until
its line is here; a route with several methods has one line per method.
"""
from __future__ import annotations

from dataclasses import dataclass

# The callers tests/api/test_policy.py tries every entry with. Users have each role twice:
# by API token and by browser session.
ANONYMOUS, ENROL, AGENT, VIEWER, DEPLOYER, ADMIN = "anonymous", "enrol", "agent", "viewer", "deployer", "admin"

ANYONE = frozenset({ANONYMOUS, ENROL, AGENT, VIEWER, DEPLOYER, ADMIN})
AGENTS = frozenset({AGENT})
VIEWERS = frozenset({VIEWER, DEPLOYER, ADMIN})
DEPLOYERS = frozenset({DEPLOYER, ADMIN})
ADMINS = frozenset({ADMIN})

# Paths answered in JSON: a caller without valid credentials gets 401 there, and a
# redirect to /login on every other path (the pages).
API_PREFIXES = ("/api/", "/prometheus/api/", "/alertmanager/api/", "/-/")

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Rule:
    who: frozenset[str]  # callers that pass authorisation
    path: str  # a concrete request path for the pattern
    ok: tuple[int, ...]  # statuses an allowed caller may get
    body: bytes | None = None
    content_type: str = JSON
    ends_session: bool = False  # the call logs its session out (the test logs in again)


POLICY: dict[tuple[str, str], Rule] = {
    # -- probes and monitoring --------------------------------------------------------------
    ("/healthz", "GET"): Rule(ANYONE, "/healthz", (200,)),
    ("/readyz", "GET"): Rule(ANYONE, "/readyz", (200,)),
    ("/metrics", "GET"): Rule(ANYONE, "/metrics", (200,)),
    ("/api/v1/openapi.json", "GET"): Rule(ANYONE, "/api/v1/openapi.json", (200,)),
    # -- signing in -------------------------------------------------------------------------
    ("/login", "GET"): Rule(ANYONE, "/login", (200, 302)),  # 302: already signed in
    ("/login", "POST"): Rule(ANYONE, "/login", (401,), b"username=policy-nobody&password=wrong-password",
                             content_type=FORM),
    ("/logout", "POST"): Rule(VIEWERS, "/logout", (302,), b"", ends_session=True),
    ("/api/v1/enrol", "POST"): Rule(ANYONE, "/api/v1/enrol", (400,), b"{}"),  # the enrol token is in the body
    ("/api/v1/me", "GET"): Rule(VIEWERS, "/api/v1/me", (200,)),
    ("/api/v1/me", "PATCH"): Rule(VIEWERS, "/api/v1/me", (200, 409), b'{"language": null}'),
    # -- pages ------------------------------------------------------------------------------
    ("/", "GET"): Rule(VIEWERS, "/", (200,)),
    ("/hosts/([^/]+)", "GET"): Rule(VIEWERS, "/hosts/example-host", (404,)),  # no such host
    ("/explore", "GET"): Rule(VIEWERS, "/explore", (200,)),
    ("/deploys", "GET"): Rule(VIEWERS, "/deploys", (200,)),
    ("/deploys/([^/]+)", "GET"): Rule(VIEWERS, "/deploys/999999", (200, 404)),
    ("/logs", "GET"): Rule(VIEWERS, "/logs", (200,)),
    ("/alerts", "GET"): Rule(VIEWERS, "/alerts", (200,)),
    ("/alerts/rules/([^/]+)/([^/]+)", "GET"): Rule(VIEWERS, "/alerts/rules/no-such-group/NoSuchRule", (404,)),
    ("/audit", "GET"): Rule(ADMINS, "/audit", (200,)),
    # -- agents -----------------------------------------------------------------------------
    ("/api/v1/ingest", "POST"): Rule(AGENTS, "/api/v1/ingest", (400,), b"{}"),
    ("/api/v1/write", "POST"): Rule(AGENTS, "/api/v1/write", (415,), b"{}"),
    ("/prometheus/api/v1/write", "POST"): Rule(AGENTS, "/prometheus/api/v1/write", (415,), b"{}"),
    # -- hosts and metrics ------------------------------------------------------------------
    ("/api/v1/hosts", "GET"): Rule(VIEWERS, "/api/v1/hosts", (200,)),
    ("/api/v1/hosts/([^/]+)", "DELETE"): Rule(ADMINS, "/api/v1/hosts/no-such-host", (404,)),
    ("/api/v1/metrics/names", "GET"): Rule(VIEWERS, "/api/v1/metrics/names", (200,)),
    ("/api/v1/metrics/range", "GET"): Rule(VIEWERS, "/api/v1/metrics/range?metric=node_load1", (200,)),
    ("/api/v1/live", "GET"): Rule(VIEWERS, "/api/v1/live", (400,)),  # authorised, then "use a WebSocket"
    ("/api/v1/logs", "GET"): Rule(VIEWERS, "/api/v1/logs", (200,)),
    # -- deploys ----------------------------------------------------------------------------
    ("/api/v1/apps", "GET"): Rule(VIEWERS, "/api/v1/apps", (200,)),
    ("/api/v1/apps/([^/]+)", "GET"): Rule(VIEWERS, "/api/v1/apps/no-such-app", (404,)),
    ("/api/v1/apps/([^/]+)/deploys", "POST"): Rule(DEPLOYERS, "/api/v1/apps/no-such-app/deploys", (404,), b"{}"),
    ("/api/v1/apps/([^/]+)/rollback", "POST"): Rule(DEPLOYERS, "/api/v1/apps/no-such-app/rollback", (404,), b"{}"),
    ("/api/v1/deploys", "GET"): Rule(VIEWERS, "/api/v1/deploys", (200,)),
    ("/api/v1/deploys/([^/]+)", "GET"): Rule(VIEWERS, "/api/v1/deploys/999999", (404,)),
    ("/api/v1/deploys/([^/]+)/events", "GET"): Rule(VIEWERS, "/api/v1/deploys/999999/events", (404,)),
    ("/api/v1/deploys/([^/]+)/cancel", "POST"): Rule(DEPLOYERS, "/api/v1/deploys/999999/cancel", (404,), b"{}"),
    ("/api/v1/deploys/([^/]+)/approve", "POST"): Rule(DEPLOYERS, "/api/v1/deploys/999999/approve", (404,), b"{}"),
    ("/api/v1/deploys/([^/]+)/reject", "POST"): Rule(DEPLOYERS, "/api/v1/deploys/999999/reject", (404,), b"{}"),
    ("/api/v1/apps/([^/]+)/promote", "POST"): Rule(DEPLOYERS, "/api/v1/apps/no-such-app/promote", (404,),
                                                    b'{"from": "staging", "to": "production"}'),
    ("/api/v1/apps/reload", "GET"): Rule(VIEWERS, "/api/v1/apps/reload", (404,)),
    ("/api/v1/apps/reload", "POST"): Rule(ADMINS, "/api/v1/apps/reload", (200,), b"{}"),
    # -- administration ---------------------------------------------------------------------
    ("/api/v1/users", "GET"): Rule(ADMINS, "/api/v1/users", (200,)),
    ("/api/v1/users", "POST"): Rule(ADMINS, "/api/v1/users", (400,), b"{}"),
    ("/api/v1/users/([^/]+)", "PATCH"): Rule(ADMINS, "/api/v1/users/nobody-here", (404,), b"{}"),
    ("/api/v1/users/([^/]+)", "DELETE"): Rule(ADMINS, "/api/v1/users/nobody-here", (404,)),
    ("/api/v1/tokens", "GET"): Rule(ADMINS, "/api/v1/tokens", (200,)),
    ("/api/v1/tokens", "POST"): Rule(ADMINS, "/api/v1/tokens", (400,), b'{"kind": "nope"}'),
    ("/api/v1/tokens/([^/]+)", "DELETE"): Rule(ADMINS, "/api/v1/tokens/999999", (404,)),
    ("/api/v1/audit", "GET"): Rule(ADMINS, "/api/v1/audit", (200,)),
    ("/api/v1/audit/verify", "GET"): Rule(ADMINS, "/api/v1/audit/verify", (200,)),
    ("/api/v1/secrets", "GET"): Rule(ADMINS, "/api/v1/secrets", (200,)),
    ("/api/v1/settings", "GET"): Rule(ADMINS, "/api/v1/settings", (200,)),
    ("/users", "GET"): Rule(ADMINS, "/users", (200,)),
    ("/tokens", "GET"): Rule(ADMINS, "/tokens", (200,)),
    ("/secrets", "GET"): Rule(ADMINS, "/secrets", (200,)),
    ("/settings", "GET"): Rule(ADMINS, "/settings", (200,)),
    ("/api/v1/secrets", "POST"): Rule(ADMINS, "/api/v1/secrets", (400,), b"{}"),
    ("/api/v1/secrets/([^/]+)", "DELETE"): Rule(ADMINS, "/api/v1/secrets/no-such-secret", (404,)),
    ("/-/reload", "POST"): Rule(ADMINS, "/-/reload", (200,), b""),
    # -- PromQL and alerting (Prometheus' HTTP API takes GET or a form POST) ----------------
    ("/prometheus/api/v1/query", "GET"): Rule(VIEWERS, "/prometheus/api/v1/query?query=vector(1)", (200,)),
    ("/prometheus/api/v1/query", "POST"): Rule(VIEWERS, "/prometheus/api/v1/query", (200,), b"query=vector(1)",
                                               content_type=FORM),
    ("/prometheus/api/v1/query_range", "GET"): Rule(
        VIEWERS, "/prometheus/api/v1/query_range?query=1&start=0&end=60&step=15", (200,)),
    ("/prometheus/api/v1/query_range", "POST"): Rule(VIEWERS, "/prometheus/api/v1/query_range", (200,),
                                                     b"query=1&start=0&end=60&step=15", content_type=FORM),
    ("/prometheus/api/v1/series", "GET"): Rule(VIEWERS, "/prometheus/api/v1/series?match[]=up", (200,)),
    ("/prometheus/api/v1/series", "POST"): Rule(VIEWERS, "/prometheus/api/v1/series", (200,), b"match[]=up",
                                                content_type=FORM),
    ("/prometheus/api/v1/labels", "GET"): Rule(VIEWERS, "/prometheus/api/v1/labels", (200,)),
    ("/prometheus/api/v1/labels", "POST"): Rule(VIEWERS, "/prometheus/api/v1/labels", (200,), b"",
                                                content_type=FORM),
    ("/prometheus/api/v1/label/([^/]+)/values", "GET"): Rule(VIEWERS, "/prometheus/api/v1/label/job/values", (200,)),
    ("/prometheus/api/v1/query_exemplars", "GET"): Rule(VIEWERS, "/prometheus/api/v1/query_exemplars?query=up",
                                                        (200,)),
    ("/prometheus/api/v1/query_exemplars", "POST"): Rule(VIEWERS, "/prometheus/api/v1/query_exemplars", (200,),
                                                         b"query=up", content_type=FORM),
    ("/prometheus/api/v1/metadata", "GET"): Rule(VIEWERS, "/prometheus/api/v1/metadata", (200,)),
    ("/prometheus/api/v1/status/buildinfo", "GET"): Rule(VIEWERS, "/prometheus/api/v1/status/buildinfo", (200,)),
    ("/prometheus/api/v1/status/runtimeinfo", "GET"): Rule(VIEWERS, "/prometheus/api/v1/status/runtimeinfo", (200,)),
    ("/prometheus/api/v1/rules", "GET"): Rule(VIEWERS, "/prometheus/api/v1/rules", (200,)),
    ("/prometheus/api/v1/alerts", "GET"): Rule(VIEWERS, "/prometheus/api/v1/alerts", (200,)),
    ("/api/v1/alerts/history", "GET"): Rule(VIEWERS, "/api/v1/alerts/history", (200,)),
    # -- silences and Alertmanager's API v2 ---------------------------------------------------
    ("/alerts/silences", "GET"): Rule(VIEWERS, "/alerts/silences", (200,)),
    ("/alerts/silences/new", "GET"): Rule(VIEWERS, "/alerts/silences/new", (200,)),
    ("/alertmanager/api/v2/status", "GET"): Rule(VIEWERS, "/alertmanager/api/v2/status", (200,)),
    ("/alertmanager/api/v2/alerts", "GET"): Rule(VIEWERS, "/alertmanager/api/v2/alerts", (200,)),
    ("/alertmanager/api/v2/alerts", "POST"): Rule(AGENTS | DEPLOYERS, "/alertmanager/api/v2/alerts", (200,), b"[]"),
    ("/alertmanager/api/v2/silences", "GET"): Rule(VIEWERS, "/alertmanager/api/v2/silences", (200,)),
    ("/alertmanager/api/v2/silences", "POST"): Rule(DEPLOYERS, "/alertmanager/api/v2/silences", (400,), b"{}"),
    ("/alertmanager/api/v2/silence/([^/]+)", "GET"): Rule(VIEWERS, "/alertmanager/api/v2/silence/no-such-silence",
                                                          (404,)),
    ("/alertmanager/api/v2/silence/([^/]+)", "DELETE"): Rule(
        DEPLOYERS, "/alertmanager/api/v2/silence/no-such-silence", (404,)),
    # -- notifications ----------------------------------------------------------------------
    ("/notifications", "GET"): Rule(VIEWERS, "/notifications", (200,)),
    ("/api/v1/notifications", "GET"): Rule(VIEWERS, "/api/v1/notifications", (200,)),
    ("/api/v1/notifications/test", "POST"): Rule(ADMINS, "/api/v1/notifications/test", (400,), b"{}"),
    # -- maintenance windows ------------------------------------------------------------------
    ("/maintenance", "GET"): Rule(VIEWERS, "/maintenance", (200,)),
    ("/api/v1/maintenance/windows", "GET"): Rule(VIEWERS, "/api/v1/maintenance/windows", (200,)),
    ("/api/v1/maintenance/windows", "POST"): Rule(DEPLOYERS, "/api/v1/maintenance/windows", (400,), b"{}"),
    ("/api/v1/maintenance/windows/([^/]+)", "GET"): Rule(VIEWERS, "/api/v1/maintenance/windows/no-such-window",
                                                         (404,)),
    ("/api/v1/maintenance/windows/([^/]+)", "DELETE"): Rule(DEPLOYERS, "/api/v1/maintenance/windows/no-such-window",
                                                            (404,)),
}
