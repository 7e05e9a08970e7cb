"""Each user's dashboard language, over HTTP against a real console: kept with PATCH
/api/v1/me (what the top bar's switch sends), shown by GET /api/v1/me, and set as the
language cookie at each of that user's logins, from any browser; bad values refused."""
from __future__ import annotations

import uuid

from tests.harness import CookieSession


def new_user(console, role: str = "viewer") -> tuple[str, str]:  # noqa: ANN001
    username, password = f"lang-{uuid.uuid4().hex[:8]}", "test-password-" + uuid.uuid4().hex[:8]
    console.services.db.run(console.services.users.create, username, password, role)
    return username, password


def test_a_users_language_follows_them_to_their_next_login(console):  # noqa: ANN001
    username, password = new_user(console)
    first = CookieSession(console.url)
    assert first.login(username, password).status == 302
    assert first.cookie("fleetdeck_lang") is None  # nothing chosen yet: the browser's language
    me = first.request("GET", "/api/v1/me")
    assert me.status == 200 and me.json()["language"] is None

    kept = first.request("PATCH", "/api/v1/me", {"language": "zh-CN"})
    assert kept.status == 200, kept.body
    assert kept.json() == {"language": "zh-CN"}
    assert first.request("GET", "/api/v1/me").json()["language"] == "zh-CN"

    # Another browser, English by its header: the login sets the user's language.
    other = CookieSession(console.url)
    assert other.login(username, password).status == 302
    assert other.cookie("fleetdeck_lang") == "zh-CN"
    page = other.request("GET", "/", headers={"Accept-Language": "en-US"})
    assert page.status == 200 and '<html lang="zh-CN"' in page.body.decode()

    # Back to following the browser: the next login sets no language.
    assert other.request("PATCH", "/api/v1/me", {"language": None}).json() == {"language": None}
    third = CookieSession(console.url)
    assert third.login(username, password).status == 302
    assert third.cookie("fleetdeck_lang") is None


def test_bad_language_changes_are_refused_and_change_nothing(console):  # noqa: ANN001
    username, password = new_user(console, "deployer")
    session = CookieSession(console.url)
    assert session.login(username, password).status == 302
    assert session.request("PATCH", "/api/v1/me", {"language": "en"}).status == 200
    for body in ({"language": "fr"}, {"language": "zh-TW"}, {"language": 1}, {}, {"language": "en", "theme": "dark"}):
        resp = session.request("PATCH", "/api/v1/me", body)
        assert resp.status == 400, (body, resp.status, resp.body)
        error = resp.json()["error"]
        assert error["code"] and error["message"], error
    assert session.request("GET", "/api/v1/me").json()["language"] == "en"
    # Without the page's XSRF token a session's change is refused.
    assert session.request("PATCH", "/api/v1/me", {"language": "zh-CN"}, xsrf=False).status == 403
    assert session.request("GET", "/api/v1/me").json()["language"] == "en"


def test_a_token_of_no_user_has_no_language(console):  # noqa: ANN001
    token = console.api_token("viewer", "lang-no-owner")
    me = console.request("GET", "/api/v1/me", token=token)
    assert me.status == 200 and me.json()["language"] is None
    resp = console.request("PATCH", "/api/v1/me", {"language": "zh-CN"}, token=token)
    assert resp.status == 409, resp.body
    assert "acts for no user" in resp.json()["error"]["message"]
    agent = console.request("PATCH", "/api/v1/me", {"language": "zh-CN"}, token=console.agent_token("lang-host-1"))
    assert agent.status == 403
