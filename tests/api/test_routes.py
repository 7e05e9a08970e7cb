"""Answers that do not depend on who calls: the ``_xsrf`` rule of cookie-authenticated
calls, and JSON for unknown API paths and methods. Who may call each route is written by
hand in tests/api/policy.py and checked against a running console by
tests/api/test_policy.py."""
from __future__ import annotations

from tests.harness import CookieSession, logged_in


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
