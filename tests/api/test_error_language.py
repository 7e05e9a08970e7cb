"""Error messages in the request's language, over HTTP against a real console: the JSON
error of the console's API is in Simplified Chinese for ``Accept-Language: zh-CN`` (or the
``fleetdeck_lang`` cookie), with the same status, ``code`` and ``details`` as in English;
English without either. The Prometheus- and Alertmanager-compatible APIs, whose clients
read the message, stay English for token callers whatever they send; the console's own
pages (a signed-in session) get theirs translated."""
from __future__ import annotations

import html
from urllib.parse import quote

import pytest

from tests.harness import logged_in

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


@pytest.fixture(scope="module")
def admin(console):  # noqa: ANN001
    return console.api_token("admin")


# (method, path, body, status, code, English message, Chinese message)
CASES = [
    ("GET", "/api/v1/no-such-route-zz", None, 404, "not_found", "no route for /api/v1/no-such-route-zz",
     "没有 /api/v1/no-such-route-zz 的路由"),
    ("POST", "/api/v1/users", {"username": "short-pw-user", "password": "x", "role": "viewer"}, 400, "invalid_field",
     "password: String should have at least 10 characters", "password：至少需要 10 个字符"),
    ("POST", "/api/v1/users", {"username": "no-role-user", "password": "long-enough-password-1"}, 400,
     "missing_field", "role is required", "role 为必填项"),
    ("GET", "/api/v1/logs?level=error,loud", None, 400, "invalid_parameter",
     "level: Value error, 'loud' is not a log level: one of trace, debug, info, warn, error, fatal, "
     "in any usual spelling (WARNING, err, crit)",
     "level：'loud' 不是日志级别：应为 trace, debug, info, warn, error, fatal 之一，常见写法均可（WARNING、err、crit）"),
    # the roles of every member of the user union, not only the viewer-or-admin one's
    ("POST", "/api/v1/users", {"username": "bad-role-user", "password": "long-enough-password-1", "role": "root"},
     400, "invalid_field", "role: Input should be 'viewer', 'deployer' or 'admin'",
     "role：应为 'viewer'、'deployer' 或 'admin'"),
    ("POST", "/api/v1/tokens", {"kind": "api", "name": "bad-role-token", "role": "root"},
     400, "invalid_field", "role: Input should be 'viewer', 'deployer' or 'admin'",
     "role：应为 'viewer'、'deployer' 或 'admin'"),
    ("POST", "/api/v1/users", {"username": "apps-viewer", "password": "long-enough-password-1", "role": "viewer",
                               "apps": ["web"]},
     400, "invalid_field", "apps: Value error, an app allow-list applies to the deployer role only",
     "apps：应用允许列表只适用于 deployer 角色"),
    ("POST", "/api/v1/users", b"{not json", 400, "invalid_json", None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "english", "chinese"), CASES,
                         ids=[f"{c[0]} {c[1]} {c[4]}" for c in CASES])
def test_console_api_errors_follow_accept_language(console, admin, method, path, body, status, code,  # noqa: ANN001
                                                   english, chinese):
    en = console.request(method, path, body, token=admin)
    zh = console.request(method, path, body, token=admin, headers=ZH)
    assert (en.status, zh.status) == (status, status), (en.body, zh.body)
    en_err, zh_err = en.json()["error"], zh.json()["error"]
    assert en_err["code"] == zh_err["code"] == code
    assert en_err["details"] == zh_err["details"]
    assert not has_chinese(en_err["message"]), en_err
    assert has_chinese(zh_err["message"]), zh_err
    if english is not None:
        assert en_err["message"] == english
        assert zh_err["message"] == chinese


def test_the_language_cookie_wins_over_accept_language(console, admin):  # noqa: ANN001
    path = "/api/v1/users"
    body = {"username": "cookie-user", "password": "long-enough-password-1"}
    by_cookie = console.request("POST", path, body, token=admin, headers={"Cookie": "fleetdeck_lang=zh-CN"})
    assert by_cookie.json()["error"]["message"] == "role 为必填项"
    english = console.request("POST", path, body, token=admin,
                              headers={**ZH, "Cookie": "fleetdeck_lang=en"})
    assert english.json()["error"]["message"] == "role is required"


def test_a_forbidden_role_and_a_missing_token_in_chinese(console):  # noqa: ANN001
    viewer = console.api_token("viewer")
    refused = console.request("POST", "/api/v1/users", {"username": "x-user", "password": "y" * 14, "role": "viewer"},
                              token=viewer, headers=ZH)
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden"
    assert refused.json()["error"]["message"] == "此操作需要 admin 角色"
    anonymous = console.request("GET", "/api/v1/hosts", headers=ZH)
    assert anonymous.status == 401 and anonymous.json()["error"] == {
        "code": "unauthorized", "message": "缺少凭据或凭据无效", "details": {}}


def test_a_missing_host_page_says_so_in_chinese(console):  # noqa: ANN001
    session = logged_in(console, "viewer")
    zh = session.request("GET", "/hosts/no-such-host-zz", headers=ZH)
    assert zh.status == 404
    assert "没有名为 'no-such-host-zz' 的主机向此控制台上报过数据" in html.unescape(zh.body.decode())
    en = session.request("GET", "/hosts/no-such-host-zz")
    assert en.status == 404
    assert "no host named 'no-such-host-zz' has reported to this console" in html.unescape(en.body.decode())


PROM_BAD = "/prometheus/api/v1/query?query=" + quote("sum(rate(")


def test_prometheus_api_stays_english_for_token_callers(console):  # noqa: ANN001
    viewer = console.api_token("viewer")
    for headers in ({}, ZH, {**ZH, "Cookie": "fleetdeck_lang=zh-CN"}):
        answer = console.request("GET", PROM_BAD, token=viewer, headers=headers)
        assert answer.status == 400, answer.body
        doc = answer.json()
        assert doc["status"] == "error" and doc["errorType"] == "bad_data"
        assert doc["error"].startswith('invalid parameter "query": '), doc
        assert not has_chinese(doc["error"]), (headers, doc)
    silences = console.request("POST", "/alertmanager/api/v2/silences", {"matchers": []}, token=viewer, headers=ZH)
    assert silences.status == 403 and silences.json() == "this needs the deployer role"


def test_prometheus_api_answers_the_console_pages_in_their_language(console):  # noqa: ANN001
    session = logged_in(console, "viewer")  # the explore page's own requests carry the session
    zh = session.request("GET", PROM_BAD, headers=ZH)
    assert zh.status == 400 and zh.json()["errorType"] == "bad_data"
    assert zh.json()["error"].startswith('参数 "query" 无效：'), zh.json()
    en = session.request("GET", PROM_BAD)
    assert en.json()["error"].startswith('invalid parameter "query": ')


def test_prometheus_api_translates_for_a_client_asking_for_it(console):  # noqa: ANN001
    viewer = console.api_token("viewer")  # the CLI sends the header with its token
    asked = {**ZH, "Fleetdeck-Translate-Errors": "1"}
    zh = console.request("GET", PROM_BAD, token=viewer, headers=asked)
    assert zh.status == 400 and zh.json()["error"].startswith('参数 "query" 无效：'), zh.json()
    silences = console.request("POST", "/alertmanager/api/v2/silences", {"matchers": []}, token=viewer, headers=asked)
    assert silences.status == 403 and silences.json() == "此操作需要 deployer 角色"
    english = console.request("GET", PROM_BAD, token=viewer, headers={"Fleetdeck-Translate-Errors": "1"})
    assert english.json()["error"].startswith('invalid parameter "query": ')
