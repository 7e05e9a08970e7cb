"""The log viewer in a real headless Chromium against a real console: search with
highlighted matches, filters, older pages, live tail, and lines rendered as text."""
from __future__ import annotations

import time
import uuid

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.test_dashboard import PageErrors, log_in  # noqa: E402

TIMEOUT_MS = 15_000


@pytest.fixture
def page(browser):  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    yield pg
    context.close()


def push_lines(console, host, token, lines, level=None, source="/var/log/app.log"):  # noqa: ANN001
    now = int(time.time() * 1000)
    records = [{"ts": now - len(lines) + i, "source": source, "line": line,
                "labels": {"level": level} if level else {}} for i, line in enumerate(lines)]
    status, body = console.push(host, token, [], records)
    assert status == 200, body


def test_search_highlight_filters_and_script_as_text(console, page):  # noqa: ANN001
    errors = PageErrors(page)
    tag = "v" + uuid.uuid4().hex[:8]
    host = f"viewer-{tag}"
    token = console.agent_token(host)
    evil = f"{tag} <script>window.pwned=1</script><img src=x onerror=window.pwned=2> payload"
    push_lines(console, host, token, [f"{tag} request {i} served" for i in range(250)])
    push_lines(console, host, token, [f"{tag} upstream Connection refused by 10.0.0.7"], level="ERROR")
    push_lines(console, host, token, [evil], source="/var/log/evil.log")
    log_in(page, console)
    page.goto(console.url + "/logs")
    page.fill("#log-q", f"{tag} connection")
    page.click("#log-submit")
    lines = page.locator("#log-lines > li")
    expect(lines).to_have_count(1)
    expect(lines.first.locator(".log-text")).to_have_text(f"{tag} upstream Connection refused by 10.0.0.7")
    marks = lines.first.locator("mark")
    expect(marks).to_have_count(2)
    assert marks.all_text_contents() == [tag, "Connection"]
    expect(lines.first.locator(".log-level")).to_have_text("error")
    # the script line is text: shown verbatim, nothing executed, no element created
    page.fill("#log-q", f"{tag} script")
    page.click("#log-submit")
    expect(lines).to_have_count(1)
    expect(lines.first.locator(".log-text")).to_have_text(evil)
    assert page.locator("#log-lines script, #log-lines img").count() == 0
    assert page.evaluate("window.pwned") is None
    # filters: level and source
    page.fill("#log-q", tag)
    page.select_option("#log-level", "error,fatal")
    page.click("#log-submit")
    expect(lines).to_have_count(1)
    page.select_option("#log-level", "")
    page.fill("#log-source", "/var/log/evil.log")
    page.click("#log-submit")
    expect(lines).to_have_count(1)
    # paging: 200 per page, then older lines on demand
    page.fill("#log-source", "")
    page.fill("#log-host", host)
    page.click("#log-submit")
    expect(lines).to_have_count(200)
    page.click("#log-more")
    expect(lines).to_have_count(252)
    expect(page.locator("#log-more")).to_be_hidden()
    errors.assert_clean()


def test_live_tail_shows_new_lines_without_reload(console, page):  # noqa: ANN001
    errors = PageErrors(page)
    tag = "l" + uuid.uuid4().hex[:8]
    host = f"tail-{tag}"
    token = console.agent_token(host)
    push_lines(console, host, token, [f"{tag} before"])
    log_in(page, console)
    page.goto(console.url + "/logs?host=" + host)
    expect(page.locator("#log-lines > li")).to_have_count(1)
    page.check("#log-live")
    expect(page.locator("body")).to_have_attribute("data-logs-live-state", "open")
    push_lines(console, host, token, [f"{tag} live one", "noise without the word", f"{tag} <b>live</b> two"])
    page.fill("#log-q", "")  # the filter is what was searched: none, so every line arrives
    lines = page.locator("#log-lines > li .log-text")
    expect(lines).to_have_count(4)
    assert lines.all_text_contents()[:3] == [f"{tag} <b>live</b> two", "noise without the word", f"{tag} live one"]
    assert page.locator("#log-lines b").count() == 0
    errors.assert_clean()
