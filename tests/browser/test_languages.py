"""The dashboard's language in a real headless Chromium against a real console: the top
bar's language switch overrides the browser's language (Accept-Language and
navigator.language from Playwright's ``locale``) and is kept across pages and logins; an
English browser still gets English. Every page in Chinese, on a laptop and a phone, in
both themes: tests/browser/test_page_layouts.py.
"""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, history, host_metrics, log_in, push_ok
from tests.browser.test_page_layouts import VIEWPORTS


@pytest.fixture(scope="module")
def zh_host(console) -> str:  # noqa: ANN001
    host = "zh-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    push_ok(console, host, token, host_metrics(history(time.time(), count=30)))
    status, body = console.push(host, token, [], logs=[
        {"ts": int(time.time() * 1000) - 5000, "source": "/var/log/syslog", "level": "info",
         "line": "sshd[812]: Accepted publickey for deploy from 192.0.2.4 port 51234 ssh2"}])
    assert status == 200, body
    return host


def test_language_switch_persists_and_english_stays_english(console, browser, zh_host):  # noqa: ANN001
    context = browser.new_context(viewport=VIEWPORTS["laptop"], locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        errors = PageErrors(page)
        log_in(page, console)
        # An English browser: English pages and scripts.
        assert page.evaluate("document.documentElement.lang") == "en"
        expect(page.locator("main h1")).to_have_text("Hosts")
        expect(page.locator("#hosts-count")).to_contain_text("host")
        expect(page.locator("#lang-switch")).to_have_text("中文")

        page.click("#lang-switch")  # reloads the page in Chinese
        expect(page.locator("main h1")).to_have_text("主机")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        for path, text in [(f"/hosts/{zh_host}", "文件系统"), ("/logs", "日志"), ("/settings", "当前生效的配置")]:
            page.goto(console.url + path)  # kept across pages: a cookie the console reads
            expect(page.locator("main")).to_contain_text(text)
            assert page.evaluate("document.documentElement.lang") == "zh-CN", path
        # ... and across a logout and login.
        page.locator(".logout-form button").click()
        page.wait_for_url(re.compile(r"/login"))
        expect(page.locator("#login-title")).to_have_text("登录 Fleetdeck")
        log_in(page, console)
        expect(page.locator("main h1")).to_have_text("主机")

        page.click("#lang-switch")  # back to English, over the same browser
        expect(page.locator("main h1")).to_have_text("Hosts")
        page.goto(console.url + "/logs")
        expect(page.locator("main h1")).to_have_text("Logs")
        errors.assert_clean()
    finally:
        context.close()

    # A zh-CN browser that chose English keeps English; a fresh one gets Chinese.
    context = browser.new_context(viewport=VIEWPORTS["phone"], locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(console.url + "/login")
        expect(page.locator("#login-title")).to_have_text("登录 Fleetdeck")
        context.add_cookies([{"name": "fleetdeck_lang", "value": "en", "url": console.url}])
        page.reload()
        expect(page.locator("#login-title")).to_have_text("Log in to Fleetdeck")
        assert page.evaluate("document.documentElement.lang") == "en"
    finally:
        context.close()


def test_the_switch_is_kept_for_the_user_and_follows_them_to_another_browser(console, browser):  # noqa: ANN001
    """The language chosen with the switch is the user's (PATCH /api/v1/me): their login
    in another, English browser is in Chinese, and choosing English there again is kept
    for their next login too."""
    username, password = "lang-" + uuid.uuid4().hex[:8], "test-password-" + uuid.uuid4().hex[:8]
    console.services.db.run(console.services.users.create, username, password, "viewer")

    def login(locale: str):  # noqa: ANN202
        context = browser.new_context(viewport=VIEWPORTS["laptop"], locale=locale)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto(console.url + "/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#login-submit")
        page.wait_for_url(console.url + "/")
        return context, page

    context, page = login("en-US")
    try:
        errors = PageErrors(page)
        expect(page.locator("main h1")).to_have_text("Hosts")
        page.click("#lang-switch")
        expect(page.locator("main h1")).to_have_text("主机")
        errors.assert_clean()
    finally:
        context.close()
    context, page = login("en-US")  # a fresh browser: no cookie, an English Accept-Language
    try:
        errors = PageErrors(page)
        expect(page.locator("main h1")).to_have_text("主机")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        page.click("#lang-switch")
        expect(page.locator("main h1")).to_have_text("Hosts")
        errors.assert_clean()
    finally:
        context.close()
    context, page = login("zh-CN")  # the user's English wins over a Chinese browser
    try:
        expect(page.locator("main h1")).to_have_text("Hosts")
    finally:
        context.close()
