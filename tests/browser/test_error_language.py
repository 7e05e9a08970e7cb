"""Errors the console writes, shown by the pages in the browser's language: in a real
headless Chromium with a zh-CN locale against a real console, an invalid PromQL on the
explore page, a refused form on the users page and an unknown host's page show the
console's message in Simplified Chinese; the same steps in an en-US browser show English.
"""
from __future__ import annotations

import re
import uuid

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.browser.test_page_layouts import VIEWPORTS


@pytest.fixture()
def zh_page(browser):  # noqa: ANN001
    context = browser.new_context(viewport=VIEWPORTS["laptop"], locale="zh-CN")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def test_server_errors_on_the_pages_in_chinese(console, zh_page):  # noqa: ANN001
    page = zh_page
    errors = PageErrors(page)
    log_in(page, console)

    # The explore page: the PromQL parser's refusal, through /prometheus/api/v1/query_range.
    page.goto(console.url + "/explore?query=node_load1")
    page.fill("#promql", "sum(rate(")
    page.click("#run-query")
    banner = page.locator("#error")
    expect(banner).to_contain_text('bad_data: 参数 "query" 无效：')
    expect(banner).not_to_contain_text("invalid parameter")
    errors.console.clear()  # the browser logs the 400 as a resource error

    # The users page: a password the console refuses (its schema's minimum length).
    page.goto(console.url + "/users")
    page.fill("#user-name", "zh-" + uuid.uuid4().hex[:6])
    page.fill("#user-password", "short")
    page.click("#create-user")
    expect(page.locator("#admin-form-error")).to_contain_text("password：至少需要 10 个字符")
    errors.console.clear()  # the 400 again

    # An unknown host: the 404 page says so in Chinese.
    page.goto(console.url + "/hosts/no-such-host-zh")
    expect(page.locator("main h1")).to_have_text("没有名为 'no-such-host-zh' 的主机向此控制台上报过数据")
    errors.console.clear()  # the page's own 404
    errors.assert_clean()


def test_the_same_errors_in_english_for_an_english_browser(console, browser):  # noqa: ANN001
    context = browser.new_context(viewport=VIEWPORTS["laptop"], locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page, console)
        page.goto(console.url + "/explore?query=node_load1")
        page.fill("#promql", "sum(rate(")
        page.click("#run-query")
        expect(page.locator("#error")).to_contain_text('bad_data: invalid parameter "query": ')
        page.goto(console.url + "/users")
        page.fill("#user-name", "en-" + uuid.uuid4().hex[:6])
        page.fill("#user-password", "short")
        page.click("#create-user")
        expect(page.locator("#admin-form-error")).to_contain_text(
            re.compile(r"password: String should have at least 10 characters"))
    finally:
        context.close()
