"""The running console admits exactly the callers the hand-written policy names.

tests/api/policy.py ``POLICY`` says, for every route and method, who passes
authorisation. Every entry is requested from a real console over HTTP by every kind of
caller (no credentials, an enrolment token as a bearer, an agent token, and each user
role by API token and by browser session); the expected answer comes from the policy
alone: an allowed caller gets one of the entry's ``ok`` statuses, a refused one 401 (API)
or a redirect to /login (page) without valid credentials, 403 with them. The table and the
console's routes must list the same (route, method) pairs.
"""
from __future__ import annotations

import urllib.parse

import pytest
import tornado.web

from console.app import ROUTES
from tests.api.policy import ADMIN, AGENT, ANONYMOUS, API_PREFIXES, DEPLOYER, ENROL, POLICY, VIEWER, Rule
from tests.harness import ConsoleHarness, CookieSession, logged_in

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# (caller kind, who it is in the policy's terms)
CALLERS = [("anonymous", ANONYMOUS), ("enrol-token", ENROL), ("agent-token", AGENT),
           ("viewer-token", VIEWER), ("viewer-session", VIEWER), ("deployer-token", DEPLOYER),
           ("deployer-session", DEPLOYER), ("admin-token", ADMIN), ("admin-session", ADMIN)]
UNAUTHENTICATED = {ANONYMOUS, ENROL}  # no credentials the console accepts as a bearer or session


def served() -> set[tuple[str, str]]:
    """(pattern, method) for every method a route's handler class implements."""
    base = tornado.web.RequestHandler
    return {(pattern, method) for pattern, handler, _role in ROUTES for method in METHODS
            if getattr(handler, method.lower()) is not getattr(base, method.lower())}


def test_policy_lists_exactly_the_routes_the_console_serves():
    routes = served()
    missing = sorted(routes - set(POLICY))
    assert not missing, f"routes the console serves with no entry in tests/api/policy.py POLICY: {missing}"
    stale = sorted(set(POLICY) - routes)
    assert not stale, f"POLICY entries for routes or methods the console does not serve: {stale}"


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    # Each login probe fails on purpose once per kind of caller: the failed-login limits
    # are raised so that they never answer 429 here (tests/api/test_login_limits.py tests them).
    harness = ConsoleHarness(tmp_path_factory.mktemp("policy"), login_failures_per_user=10_000,
                             login_failures_per_ip=10_000).start()
    yield harness
    harness.close()


class Callers:
    """One client per kind of caller. Every one holds the login form's ``_xsrf`` cookie (so a
    login probe reaches the password check), which changes nothing elsewhere: the console
    checks ``_xsrf`` only on calls carrying a session cookie."""

    def __init__(self, console: ConsoleHarness) -> None:
        self.console = console
        enrol = console.services.db.run(console.services.auth.create_enrol_token, "test", "test", 3600.0)
        self.tokens = {"enrol-token": enrol["token"], "agent-token": console.agent_token("policy-host")}
        for role in (VIEWER, DEPLOYER, ADMIN):
            self.tokens[f"{role}-token"] = console.api_token(role, f"policy-{role}")
        self.clients: dict[str, CookieSession] = {}

    def client(self, kind: str) -> CookieSession:
        if kind not in self.clients:
            if kind.endswith("-session"):
                self.clients[kind] = logged_in(self.console, kind.split("-")[0])
            else:
                self.clients[kind] = CookieSession(self.console.url)
                self.clients[kind].request("GET", "/login")
        return self.clients[kind]

    def call(self, kind: str, method: str, rule: Rule):
        headers = {"Content-Type": rule.content_type} if rule.body is not None else {}
        if kind in self.tokens:
            headers["Authorization"] = f"Bearer {self.tokens[kind]}"
        resp = self.client(kind).request(method, rule.path, rule.body, headers)
        if rule.ends_session and kind.endswith("-session"):
            del self.clients[kind]  # logged out: the next call logs in again
        return resp


@pytest.fixture(scope="module")
def callers(console):
    return Callers(console)


def refusal(who: str, path: str) -> str:
    if who in UNAUTHENTICATED:
        return "401" if path.startswith(API_PREFIXES) else "redirect to /login"
    return "403"


def answer(status: int, headers: dict) -> str:
    if status in (301, 302, 303, 307) and urllib.parse.urlsplit(headers.get("location", "")).path == "/login":
        return "redirect to /login"
    return str(status)


@pytest.mark.parametrize("key", sorted(POLICY), ids=[f"{m} {p}" for p, m in sorted(POLICY)])
def test_route_admits_exactly_the_callers_in_the_policy(callers, key):
    pattern, method = key
    rule = POLICY[key]
    wrong = []
    for kind, who in CALLERS:
        resp = callers.call(kind, method, rule)
        got = answer(resp.status, resp.headers)
        if who in rule.who:
            expected = " or ".join(str(s) for s in rule.ok)
            good = resp.status in rule.ok
        else:
            expected = refusal(who, rule.path)
            good = got == expected
        if rule.path.startswith(API_PREFIXES) and not resp.headers.get("content-type", "").startswith(
                "application/json"):
            good = False
            expected += " (JSON)"
        if not good or resp.status >= 500:
            wrong.append(f"{kind}: expected {expected}, got {got} {resp.body[:160]!r}")
    assert not wrong, f"{method} {rule.path} ({pattern}), allowed {sorted(rule.who)}:\n  " + "\n  ".join(wrong)
