"""The dashboard in Simplified Chinese, in a real headless Chromium against a real console:
a zh-CN browser (Accept-Language and navigator.language from Playwright's ``locale``) gets
every page in Chinese, on a laptop (1440×900) and a phone (390×844), with no console
errors and nothing wider than the screen; the top bar's language switch overrides the
browser and is kept across pages and logins; an English browser still gets English.
"""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, history, host_metrics, log_in, push_ok
from tests.browser.test_page_layouts import VIEWPORTS, assert_fits


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


def chinese_pages(host: str) -> list[tuple[str, str, str]]:
    """(path, Chinese text of the template, Chinese text written by the page's script)."""
    return [
        ("/", "主机", "台主机"),  # h1 "Hosts"; the script's "N hosts"
        (f"/hosts/{host}", "文件系统", "15 分钟"),  # the load chart's legend: "15 min"
        ("/explore?query=node_load1", "执行查询", "1 条序列"),
        ("/deploys", "部署", "尚未配置应用"),  # "No apps configured" from deploys.js
        (f"/logs?host={host}", "日志", "1 行"),  # "1 line(s)" from logs.js
        ("/alerts", "触发中和待定", "没有触发中或待定的告警"),
        ("/alerts/silences", "新建静默", "没有生效中或待生效的静默"),
        ("/alerts/silences/new", "创建静默", "创建静默"),
        ("/maintenance", "维护窗口", "没有维护窗口"),  # "No maintenance windows." from maintenance.js
        ("/notifications", "最近 24 小时", "通知"),
        ("/audit", "审计日志", "审计日志"),
        ("/users", "新建用户", "有效"),  # the admin row's "active"
        ("/tokens", "新建令牌", "令牌"),
        ("/secrets", "添加或替换密钥", "没有密钥"),
        ("/settings", "当前生效的配置", "环境变量"),
        ("/no/such/page", "页面不存在", "返回概览"),
    ]


@pytest.mark.parametrize("screen", ["laptop", "phone"])
def test_every_page_in_chinese(console, browser, zh_host, screen):  # noqa: ANN001
    viewport = VIEWPORTS[screen]
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        errors = PageErrors(page)
        page.goto(console.url + "/login")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        expect(page.locator("#login-title")).to_have_text("登录 Fleetdeck")
        assert_fits(page, viewport["width"], "/login")
        # A refused login's message comes from the handler, translated too.
        page.fill("#username", console.admin_user)
        page.fill("#password", "not-" + console.admin_password)
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
        errors.console.clear()  # the browser logs the 401 of the refused login
        log_in(page, console)
        for path, template_text, script_text in chinese_pages(zh_host):
            page.goto(console.url + path)
            main = page.locator("main")
            expect(main).to_contain_text(template_text)
            expect(main).to_contain_text(script_text)
            assert page.evaluate("document.documentElement.lang") == "zh-CN", path
            expect(page.locator("#lang-switch")).to_have_text("English")
            assert_fits(page, viewport["width"], path)
            if path == "/no/such/page":
                errors.console.clear()  # the browser logs the page's own 404
            errors.assert_clean()
        # Times in the Chinese form of Intl.DateTimeFormat, in the top bar's zone.
        page.goto(console.url + "/audit")
        first = page.locator("#audit-table time").first
        expect(first).to_have_text(re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}$"))
        ts = int(float(first.get_attribute("data-ts") or 0))
        if screen == "phone":
            page.click("#nav-toggle")  # the switches are in the folded menu
            expect(page.locator("#lang-switch")).to_be_visible()
            assert_fits(page, viewport["width"], "open menu")
        page.click("#tz-switch")
        expect(first).to_have_text(time.strftime("%Y/%m/%d %H:%M:%S UTC", time.gmtime(ts)))
        if screen == "laptop":
            expect(page.locator(".nav-links").first).to_contain_text("概览")
            expect(page.locator("#theme-switch")).to_have_text(re.compile("^(浅色主题|深色主题)$"))
        errors.assert_clean()
    finally:
        context.close()


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
