"""The host page's notice of data the console refused from that host in the last hour
(series over the host's series cap, samples outside the ingest window), naming the metric,
in English and Chinese, in a real headless Chromium against a real in-process console."""
from __future__ import annotations

import time
import uuid

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in


def over_the_cap(console) -> str:  # noqa: ANN001
    """A host that sent two network series with a cap of one: the second is refused."""
    host = "rej-" + uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    metrics = [{"name": "node_network_receive_bytes_total", "type": "counter", "labels": {"device": device},
                "points": [[now, 1.0]]} for device in ("eth0", "veth9a1")]
    with console.series_cap(1):
        status, body = console.push(host, console.agent_token(host), metrics)
    assert status == 200, body
    assert body["rejected"] == {"series_limit": 1}, body
    return host


def test_host_page_names_the_refused_series(console, page):  # noqa: ANN001
    host = over_the_cap(console)
    errors = PageErrors(page)
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}")
    notice = page.locator("#host-rejected")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("The console refused data from this host in the last hour:")
    item = notice.locator("li.rejected-series_limit")
    expect(item).to_contain_text("series_limit (new series over the host's series cap (max_series_per_host))")
    expect(item.locator("code")).to_have_text('node_network_receive_bytes_total{"device":"veth9a1"}')
    expect(item).to_contain_text("1 refused in total, last")
    errors.assert_clean()


def test_host_page_without_refusals_shows_no_notice(console, page):  # noqa: ANN001
    host = "clean-" + uuid.uuid4().hex[:6]
    status, body = console.push(host, console.agent_token(host), [
        {"name": "node_load1", "type": "gauge", "labels": {}, "points": [[int(time.time() * 1000), 0.5]]}])
    assert status == 200 and "rejected" not in body, body
    log_in(page, console)
    page.goto(f"{console.url}/hosts/{host}")
    expect(page.locator("#host-status")).to_have_text("UP")
    expect(page.locator("#host-rejected")).to_be_hidden()


def test_host_page_notice_in_chinese(console, browser):  # noqa: ANN001
    host = over_the_cap(console)
    context = browser.new_context(locale="zh-CN")
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        log_in(page, console)
        page.goto(f"{console.url}/hosts/{host}")
        notice = page.locator("#host-rejected")
        expect(notice).to_contain_text("控制台在过去一小时内拒绝了来自此主机的数据：")
        item = notice.locator("li.rejected-series_limit")
        expect(item).to_contain_text("超出主机序列上限的新序列")
        expect(item.locator("code")).to_have_text('node_network_receive_bytes_total{"device":"veth9a1"}')
        expect(item).to_contain_text("共拒绝 1 个")
    finally:
        context.close()
