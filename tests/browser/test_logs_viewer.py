"""The log viewer in a real headless Chromium against a real console: search with
highlighted matches, filters, older pages, live tail, and lines rendered as text."""
from __future__ import annotations

import time
import uuid

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in


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


def test_a_line_both_listed_and_in_a_late_frame_shows_once(console, page):  # noqa: ANN001
    """A line committed just before a search ran may also reach the page in a live frame
    published after the live socket subscribed. The page's WebSocket is routed through
    the test, which holds that frame back and hands it over after the search answered."""
    import re

    errors = PageErrors(page)
    tag = "r" + uuid.uuid4().hex[:8]
    host = f"race-{tag}"
    token = console.agent_token(host)
    push_lines(console, host, token, [f"{tag} before"])
    sockets, held, hold = [], [], {"on": False}

    def route(ws):  # noqa: ANN001 - playwright WebSocketRoute
        server = ws.connect_to_server()

        def from_server(message):  # noqa: ANN001
            if hold["on"] and f'"logs:{host}"' in str(message) and '"data"' in str(message):
                held.append(message)
            else:
                ws.send(message)

        server.on_message(from_server)
        sockets.append(ws)

    page.route_web_socket(re.compile(r".*/api/v1/live$"), route)
    log_in(page, console)
    page.goto(console.url + "/logs?host=" + host)
    lines = page.locator("#log-lines > li .log-text")
    expect(lines).to_have_count(1)
    page.check("#log-live")
    expect(page.locator("body")).to_have_attribute("data-logs-live-state", "open")
    hold["on"] = True
    now = int(time.time() * 1000)
    # the same text twice in one millisecond: two records, both must stay listed
    twice = {"ts": now, "source": "/var/log/app.log", "line": f"{tag} raced", "labels": {}}
    assert console.push(host, token, [], [twice, dict(twice)])[0] == 200
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert held, "the live frame was not routed through the test"
    page.click("#log-submit")  # the search lists both; the page opens a new live socket
    expect(lines).to_have_count(3)
    expect(page.locator("body")).to_have_attribute("data-logs-live-state", "open")
    opened = len(sockets)
    sockets[-1].send(held[0])  # the late frame, on the socket opened after the search
    page.wait_for_timeout(500)
    assert lines.all_text_contents() == [f"{tag} raced", f"{tag} raced", f"{tag} before"]
    hold["on"] = False
    push_lines(console, host, token, [f"{tag} after"])  # a new line still arrives live
    expect(lines).to_have_count(4)
    assert lines.all_text_contents()[0] == f"{tag} after" and len(sockets) == opened
    errors.assert_clean()


def test_the_empty_state_says_how_to_add_sources(console, page):  # noqa: ANN001
    errors = PageErrors(page)
    log_in(page, console)
    page.goto(console.url + "/logs")
    page.fill("#log-q", "nothing" + uuid.uuid4().hex)
    page.click("#log-submit")
    empty = page.locator("#log-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No matching log lines.")
    expect(empty).to_contain_text("logs.paths")
    expect(empty).to_contain_text("logs.journal: true")
    expect(empty).to_contain_text("agent: logs:")
    errors.assert_clean()
