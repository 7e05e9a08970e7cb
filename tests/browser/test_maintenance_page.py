"""The maintenance page and the maintenance bands on host charts, in a real headless
Chromium against a real console (real clock): a daily window that was open two hours
ago shows on the charts of the host it covers and not on another host's, and the page
lists it with its next occurrence in its local time, its text rendered as text."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.harness import ConsoleHarness


def test_windows_are_listed_and_shaded_on_the_charts_of_the_hosts_they_cover(tmp_path, page):  # noqa: ANN001
    console = ConsoleHarness(tmp_path / "data").start()
    try:
        errors = PageErrors(page)
        now = time.time()
        for host in ("maint-db", "maint-web"):
            status, _ = console.push(host, console.agent_token(host), [
                {"name": "node_load1", "type": "gauge", "labels": {},
                 "points": [[int((now - 60) * 1000), 0.5], [int(now * 1000), 0.7]]}])
            assert status == 200
        start = datetime.fromtimestamp(now - 2 * 3600, timezone.utc).replace(microsecond=0, tzinfo=None)
        body = {"name": "nightly", "dtstart": start.isoformat(), "duration": "1h", "rrule": "FREQ=DAILY",
                "timezone": "UTC", "hosts": ["maint-db"], "comment": "<img src=x onerror=window.pwned=1> patch"}
        resp = console.request("POST", "/api/v1/maintenance/windows", body, token=console.api_token("deployer"))
        assert resp.status == 201, resp.body
        log_in(page, console)
        page.goto(console.url + "/hosts/maint-db")
        expect(page.locator("#host-page")).to_have_attribute("data-maintenance-spans", "0")  # 15 min: none
        page.click('.range-btn[data-range="21600"]')
        expect(page.locator("#host-page")).to_have_attribute("data-maintenance-spans", "1")
        page.goto(console.url + "/hosts/maint-web")
        page.click('.range-btn[data-range="21600"]')
        expect(page.locator("#host-page")).to_have_attribute("data-maintenance-spans", "0")
        page.goto(console.url + "/maintenance")
        row = page.locator('#windows-table tbody tr[data-window="nightly"]')
        expect(row.locator("td")).to_have_text([
            "nightly", "scheduled", resp.json()["next"]["start_local"] + " → " + resp.json()["next"]["end_local"],
            "1 h", "FREQ=DAILY", "UTC", "hosts: maint-db", "<img src=x onerror=window.pwned=1> patch"])
        assert page.locator("#windows-table img").count() == 0 and page.evaluate("window.pwned") is None
        expect(page.locator('nav a[href="/maintenance"]')).to_be_visible()
        errors.assert_clean()
    finally:
        console.close()
