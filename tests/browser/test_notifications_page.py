"""The Notifications page in a real headless Chromium: each notification with its
receiver, integration, status and the receiver's answer, rendered as text; its times in
the one format and zone of the top bar's switch; in Chinese, its statuses too."""
from __future__ import annotations

import time

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.harness import wait_for
from tests.integration.notify_peers import HttpReceiver, v4_payload
from tests.integration.test_notify_receivers import host_down, log_entry, queue, start_console

ANSWER = b'<img src=x onerror="window.pwned=1"> invalid_payload'


def test_notifications_page_lists_sent_and_failed_with_the_answer(tmp_path, page):  # noqa: ANN001
    good = HttpReceiver(script=[(200, {}, b"ok")]).start()
    bad = HttpReceiver(script=[(400, {}, ANSWER)]).start()
    console = start_console(tmp_path, [{"name": "good", "webhook_configs": [{"url": good.url}]},
                                       {"name": "bad", "webhook_configs": [{"url": bad.url}]}])
    try:
        errors = PageErrors(page)
        token = console.api_token("viewer")
        queue(console, "good", "webhook[0]", v4_payload("good", [host_down("web-1")], {"alertname": "HostDown"}))
        queue(console, "bad", "webhook[0]", v4_payload("bad", [host_down("web-2")], {"alertname": "HostDown"}))
        wait_for(lambda: log_entry(console, token, "good", "sent") and log_entry(console, token, "bad", "failed"),
                 10, "both outcomes")
        log_in(page, console)
        page.click("text=Notifications")
        page.wait_for_url(console.url + "/notifications")
        rows = page.locator("#notifications-table tbody tr")
        expect(rows).to_have_count(2)
        failed = page.locator("#notifications-table tr.notification-failed")
        expect(failed.locator("td").nth(1)).to_have_text("bad")
        expect(failed.locator(".notification-status")).to_have_text("failed")
        expect(failed.locator(".notification-answer")).to_contain_text(ANSWER.decode())
        expect(failed.locator(".notification-answer")).to_contain_text("400")
        sent = page.locator("#notifications-table tr.notification-sent")
        expect(sent.locator("td").nth(1)).to_have_text("good")
        expect(sent.locator("td").nth(3)).to_have_text("firing 1 · HostDown")
        assert page.locator("#notifications-table img").count() == 0 and page.evaluate("window.pwned") is None
        # Times as on every other page: local by default, UTC after the switch.
        when = sent.locator("time")
        ts = float(when.get_attribute("data-ts") or 0)
        expect(when).to_have_text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)))
        page.click("#tz-switch")
        expect(when).to_have_text(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)))
        errors.assert_clean()
        # A Chinese page names the statuses in Chinese.
        context = page.context.browser.new_context(locale="zh-CN")
        try:
            zh = context.new_page()
            log_in(zh, console)
            zh.goto(console.url + "/notifications")
            expect(zh.locator("#notifications-table tr.notification-failed .notification-status")).to_have_text("失败")
            expect(zh.locator("#notifications-table tr.notification-sent .notification-status")).to_have_text("已发送")
            expect(zh.locator("#notifications-table tr.notification-sent td").nth(3)).to_have_text("触发中 1 · HostDown")
        finally:
            context.close()
    finally:
        console.close()
        good.close()
        bad.close()
