"""Users, sessions, login limits, tokens, enrolment, audit, secrets at rest and hostile
input, against a real in-process console over HTTP."""
from __future__ import annotations

import http.cookiejar
import time
import uuid

import pytest

from tests.harness import ConsoleHarness, CookieSession, OffsetClock, logged_in

class LoopbackIsSecure(http.cookiejar.DefaultCookiePolicy):
    def return_ok_secure(self, cookie, request):  # noqa: ANN001 - http.cookiejar's signature
        return True


SQL = "a'; DROP TABLE users; -- \" \\ % _ `x` ; SELECT 1 /* */"


def entries(console, action: str) -> list[dict]:
    token = console.api_token("admin")
    return [e for e in console.request("GET", "/api/v1/audit?limit=1000", token=token).json()["entries"]
            if e["action"] == action]


def test_login_is_audited_and_sets_hardened_cookie(console):
    session = CookieSession(console.url)
    assert session.login("admin", "wrong-password-xx").status == 401
    resp = session.login(console.admin_user, console.admin_password)
    assert resp.status == 302
    cookie = resp.headers["set-cookie"]
    assert "fleetdeck_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "expires=" in cookie.lower()
    assert any(e["target"] == "user:admin" for e in entries(console, "login.failure"))
    assert any(e["actor"] == "user:admin" for e in entries(console, "login.success"))


def test_logout_kills_a_copied_cookie(console):
    session = logged_in(console, "viewer")
    stolen = CookieSession(console.url)
    for c in session.jar:
        stolen.jar.set_cookie(c)
    assert stolen.request("GET", "/api/v1/me").status == 200
    assert session.request("POST", "/logout", b"").status == 302
    assert stolen.request("GET", "/api/v1/me").status == 401
    assert stolen.request("GET", "/").status == 302


def test_secure_cookie_flag_when_configured(tmp_path):
    harness = ConsoleHarness(tmp_path, cookie_secure=True).start()
    try:
        session = CookieSession(harness.url)
        # Like browsers, count loopback as a secure context, so the Secure _xsrf cookie the
        # login form needs is sent back over plain HTTP.
        session.jar.set_policy(LoopbackIsSecure())
        resp = session.login(harness.admin_user, harness.admin_password)
        assert resp.status == 302 and "Secure" in resp.headers["set-cookie"]
    finally:
        harness.close()


def test_login_rate_limit_per_user_and_per_ip(tmp_path):
    harness = ConsoleHarness(tmp_path, login_failures_per_user=3, login_failures_per_ip=5).start()
    try:
        session = CookieSession(harness.url)
        assert [session.login("admin", "bad-password-1").status for _ in range(3)] == [401, 401, 401]
        limited = session.login("admin", harness.admin_password)  # even the right password waits
        assert limited.status == 429 and int(limited.headers["retry-after"]) > 0
        assert session.login("someone", "bad-password-1").status == 401
        assert session.login("other", "bad-password-1").status == 401
        assert session.login("third", "bad-password-1").status == 429  # the address is now limited
    finally:
        harness.close()


def test_role_change_and_disable_end_sessions_and_last_admin_is_kept(console):
    admin = console.api_token("admin")
    name = "ops-" + uuid.uuid4().hex[:6]
    created = console.request("POST", "/api/v1/users", {"username": name, "password": "a-long-password",
                                                        "role": "deployer", "apps": ["web", "api"]}, token=admin)
    assert created.status == 201 and created.json()["apps"] == ["api", "web"]
    assert console.request("POST", "/api/v1/users", {"username": name, "password": "a-long-password",
                                                     "role": "viewer"}, token=admin).status == 409
    session = CookieSession(console.url)
    assert session.login(name, "a-long-password").status == 302
    me = session.request("GET", "/api/v1/me").json()
    assert (me["role"], me["apps"]) == ("deployer", ["api", "web"])
    assert console.request("DELETE", f"/api/v1/users/{name}", token=admin).json()["disabled"] is True
    assert session.request("GET", "/api/v1/me").status == 401
    last = console.request("PATCH", "/api/v1/users/admin", {"role": "viewer"}, token=admin)
    assert last.status == 409 and last.json()["error"]["code"] == "last_admin"


def test_api_tokens_shown_once_capped_revocable_with_last_use(console):
    admin = console.api_token("admin")
    created = console.request("POST", "/api/v1/tokens", {"name": "ci", "role": "viewer", "expires_in": 3600},
                              token=admin)
    assert created.status == 201 and created.headers["cache-control"] == "no-store"
    body = created.json()
    plaintext, token_id = body["token"], body["id"]
    assert body["expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    assert console.request("GET", "/api/v1/hosts", token=plaintext).status == 200
    assert console.request("GET", "/api/v1/users", token=plaintext).status == 403  # capped at viewer
    listed = console.request("GET", "/api/v1/tokens", token=admin)
    assert plaintext.encode() not in listed.body and b'"token"' not in listed.body
    mine = next(t for t in listed.json()["tokens"] if t["id"] == token_id)
    assert mine["last_used_at"] is not None and mine["created_by"].startswith("api:")
    for other in ("%C2%B2", "2147483648"):  # no 500 for ids int() or a 32-bit column refuse
        assert console.request("DELETE", f"/api/v1/tokens/{other}", token=admin).status == 404
    assert console.request("DELETE", f"/api/v1/tokens/{token_id}", token=admin).status == 200
    assert console.request("GET", "/api/v1/hosts", token=plaintext).status == 401
    actions = {e["target"] for e in entries(console, "token.revoke")}
    assert f"token:{token_id}" in actions


def test_deeply_nested_or_nul_bodies_are_400_without_login(console):
    # orjson decodes up to 1,024 levels; checking the strings must not recurse that deep
    deep = b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"
    resp = console.request("POST", "/api/v1/enrol", deep, headers={"Content-Type": "application/json"})
    assert resp.status == 400 and resp.json()["error"]["code"] == "missing_field", resp.body
    nul = b'{"enrol_token": "x\\u0000", "host": "h"}'
    resp = console.request("POST", "/api/v1/enrol", nul, headers={"Content-Type": "application/json"})
    assert resp.status == 400 and resp.json()["error"]["code"] == "invalid_json", resp.body


def test_enrolment_is_one_time_host_bound_and_audited(console):
    admin = console.api_token("admin")
    enrol = console.request("POST", "/api/v1/tokens", {"kind": "enrol", "expires_in": 600}, token=admin).json()
    assert enrol["token"].startswith("fde_")
    # An enrolment token opens nothing but the enrolment route.
    assert console.request("GET", "/api/v1/hosts", token=enrol["token"]).status == 401
    first = console.request("POST", "/api/v1/enrol", {"enrol_token": enrol["token"], "host": "enrolled-1"})
    assert first.status == 201, first.body
    agent_token = first.json()["token"]
    assert console.push("enrolled-1", agent_token, [])[0] == 200
    assert console.push("someone-else", agent_token, [])[0] == 403  # bound to its host
    again = console.request("POST", "/api/v1/enrol", {"enrol_token": enrol["token"], "host": "enrolled-2"})
    assert again.status == 403 and again.json()["error"]["code"] == "enrolment_refused"
    bound = console.request("POST", "/api/v1/tokens", {"kind": "enrol", "host": "only-this"}, token=admin).json()
    wrong = console.request("POST", "/api/v1/enrol", {"enrol_token": bound["token"], "host": "not-this"})
    assert wrong.status == 403
    assert console.request("POST", "/api/v1/enrol", {"enrol_token": bound["token"], "host": "only-this"}).status == 201
    assert any(e["target"] == "host:enrolled-1" for e in entries(console, "agent.enrol"))


def test_expired_enrolment_token_and_failed_enrolment_limit(tmp_path):
    clock = OffsetClock()  # moved on below instead of sleeping
    harness = ConsoleHarness(tmp_path, login_failures_per_ip=3, clock=clock).start()
    try:
        _, token = harness.services.db.run(harness.services.tokens.create_enrol_token, 1.0)
        clock.offset = 1.2
        assert harness.request("POST", "/api/v1/enrol", {"enrol_token": token, "host": "late"}).status == 403
        for _ in range(2):
            harness.request("POST", "/api/v1/enrol", {"enrol_token": "fde_guess", "host": "h"})
        limited = harness.request("POST", "/api/v1/enrol", {"enrol_token": "fde_guess", "host": "h"})
        assert limited.status == 429 and int(limited.headers["retry-after"]) > 0
    finally:
        harness.close()


def test_audit_api_pages_and_verifies(console):
    admin = console.api_token("admin")
    for k in range(2):  # entries of its own: the module's other tests may not have run yet
        made = console.request("POST", "/api/v1/tokens", {"name": f"audit-page-{k}", "role": "viewer"}, token=admin)
        assert made.status == 201, made.body
    first = console.request("GET", "/api/v1/audit?limit=1", token=admin).json()
    assert len(first["entries"]) == 1 and first["next"] == first["entries"][0]["id"]
    older = console.request("GET", f"/api/v1/audit?limit=1&before={first['next']}", token=admin).json()
    assert older["entries"][0]["id"] < first["next"]
    assert console.request("GET", "/api/v1/audit/verify", token=admin).json()["ok"] is True
    assert console.request("GET", "/api/v1/audit?limit=0", token=admin).status == 400
    for bad in ("limit=%C2%B2", "before=%C2%B2", "before=2147483648"):
        resp = console.request("GET", f"/api/v1/audit?{bad}", token=admin)
        assert resp.status == 400 and resp.json()["error"]["code"] == "invalid_parameter", (bad, resp.body)


def test_body_caps_answer_413_json(console):
    resp = console.request("POST", "/api/v1/enrol", b'{"enrol_token": "' + b"x" * 5000 + b'", "host": "h"}')
    assert resp.status == 413 and resp.json()["error"]["code"] == "body_too_large"
    big = console.request("POST", "/api/v1/users", b"{" + b" " * (70 * 1024) + b"}", token=console.api_token("admin"))
    assert big.status == 413


def test_sql_metacharacters_are_stored_and_returned_byte_for_byte(console):
    admin = console.api_token("admin")
    created = console.request("POST", "/api/v1/tokens", {"name": SQL, "role": "viewer"}, token=admin).json()
    listed = console.request("GET", "/api/v1/tokens", token=admin).json()["tokens"]
    assert next(t for t in listed if t["id"] == created["id"])["name"] == SQL
    token = console.agent_token("sql-host")
    status, _ = console.push("sql-host", token, [{"name": "node_load1", "type": "gauge", "labels": {"q": SQL},
                                                  "points": [[int(time.time() * 1000), 1.0]]}],
                             logs=[{"ts": int(time.time() * 1000), "source": SQL, "line": SQL, "labels": {}}])
    assert status == 200
    range_ = console.request("GET", "/api/v1/metrics/range?metric=node_load1&host=sql-host", token=admin).json()
    assert [s["labels"]["q"] for s in range_["series"]] == [SQL]
    CookieSession(console.url).login(SQL, "wrong-password-x")
    assert any(e["target"] == f"user:{SQL[:64]}" for e in entries(console, "login.failure"))
    assert console.count("users") >= 1  # still there


def test_secrets_are_never_stored_or_answered_in_plaintext(console):
    admin = console.api_token("admin")
    plaintext = {"deploy-ssh": ("ssh_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA" + uuid.uuid4().hex),
                 "prod-kube": ("kubeconfig", "apiVersion: v1\nusers:\n- name: ci\n  user:\n    token: kube-"
                               + uuid.uuid4().hex),
                 "registry": ("registry_password", "reg-pass-" + uuid.uuid4().hex),
                 "slack": ("webhook_url", "https://hooks.example.com/services/" + uuid.uuid4().hex)}
    for name, (kind, value) in plaintext.items():
        resp = console.request("POST", "/api/v1/secrets", {"name": name, "kind": kind, "value": value}, token=admin)
        assert resp.status == 201 and value.encode() not in resp.body
    listed = console.request("GET", "/api/v1/secrets", token=admin).json()["secrets"]
    assert {s["name"] for s in listed} >= set(plaintext)
    # Every GET route of the API, and the database file with its WAL.
    bodies = [console.request("GET", path, token=admin).body for path in (
        "/api/v1/secrets", "/api/v1/audit?limit=1000", "/api/v1/tokens?include_revoked=true", "/api/v1/users",
        "/api/v1/hosts", "/api/v1/me", "/api/v1/openapi.json", "/api/v1/audit/verify", "/metrics")]
    data_dir = console.config.data_dir
    files = [p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("fleetdeck.db")]
    for _, value in plaintext.values():
        for blob in bodies + files:
            assert value.encode() not in blob
    assert console.services.db.run(console.services.secrets.reveal, "registry") == plaintext["registry"][1]
    assert (console.config.data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
