"""Silences in a real headless Chromium against a real console: the Silence link on an
alert of the Alerts page opens the form with the alert's labels as matchers, creating it
lists it, Expire ends it; history transitions show the silence; a link with bad matchers
and a silence that would mute everything are refused with the reason on the page."""
from __future__ import annotations

import time
from urllib.parse import quote

from console.alerting.handlers import rfc3339
from tests.api.test_alerting import T0, Clock, evaluate, push, start
from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in

AM = "/alertmanager/api/v2"
RULES = """groups:
  - name: sp
    interval: 1h
    rules:
      - alert: SpHot
        expr: sp_temp > 50
        labels: {severity: critical}
"""


class LiveClock(Clock):
    """The test's clock until ``live``; then the wall clock, which the browser uses too."""

    live = False

    def __call__(self) -> float:
        return time.time() if self.live else self.now


def test_silence_from_alert_list_and_expire(tmp_path, page):  # noqa: ANN001
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    clock = LiveClock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        errors = PageErrors(page)
        push(console, console.agent_token("sp-1"), "sp-1", "sp_temp", [(0, 70)])
        evaluate(console, clock, T0)
        clock.live = True  # silences are made with the browser's clock
        viewer = console.api_token("viewer")
        log_in(page, console)
        page.goto(console.url + "/alerts")
        row = page.locator("#active-table tbody tr.alert-row", has_text="sp-1")
        expect(row).to_have_count(1)
        row.locator("a.silence-link").click()
        page.wait_for_url("**/alerts/silences/new?matchers=*")
        expect(page.locator(".matcher-row .m-name")).to_have_count(5)
        names = [page.locator(".matcher-row .m-name").nth(i).input_value() for i in range(5)]
        values = [page.locator(".matcher-row .m-value").nth(i).input_value() for i in range(5)]
        labels = {"alertname": "SpHot", "host": "sp-1", "instance": "sp-1", "job": "node", "severity": "critical"}
        assert dict(zip(names, values)) == labels
        # Keep alertname and instance only.
        for name in ("host", "job", "severity"):
            page.locator(".matcher-row", has=page.locator(f'.m-name[value="{name}"]')).locator(".m-remove").click()
        expect(page.locator(".matcher-row")).to_have_count(2)
        page.fill("#silence-duration", "3h")
        page.fill("#silence-comment", "<b>swapping</b> the sensor")
        page.click("#create-silence")
        page.wait_for_url("**/alerts/silences?created=*")
        sid = page.url.split("created=")[1]
        expect(page.locator("#silence-created")).to_contain_text(sid)
        listed = page.locator(f'#silences-table tr[data-silence-id="{sid}"]')
        expect(listed.locator("td").nth(0)).to_have_text("active")
        expect(listed.locator(".label-chip")).to_have_text(['alertname="SpHot"', 'instance="sp-1"'])
        expect(listed.locator("td").nth(5)).to_have_text("<b>swapping</b> the sensor")
        doc = console.request("GET", f"{AM}/silence/{sid}", token=viewer).json()
        assert [(m["name"], m["value"], m["isRegex"]) for m in doc["matchers"]] == \
            [("alertname", "SpHot", False), ("instance", "sp-1", False)]
        assert abs(datetime_s(doc["endsAt"]) - datetime_s(doc["startsAt"]) - 3 * 3600) < 1
        assert console.services.silences.muted_by(labels, time.time()) == [f"silence:{sid}"]

        # A transition while silenced is marked on the rule page.
        time.sleep(1)  # a whole second after the silence started: rule times are whole seconds here
        now = int(time.time())
        push(console, console.agent_token("sp-1"), "sp-1", "sp_temp", [(now - T0, 10)])
        evaluate(console, clock, now)
        page.goto(console.url + "/alerts/rules/sp/SpHot")
        resolved = page.locator("#history-table tbody tr.alert-resolved")
        expect(resolved.locator(".muted-by a")).to_have_text(f"silence:{sid}")

        page.goto(console.url + "/alerts/silences")
        listed.locator("button.expire-silence").click()
        expect(listed).to_have_count(0)
        page.check("#show-expired")
        expect(listed.locator("td").nth(0)).to_have_text("expired")
        expect(listed.locator("button.expire-silence")).to_have_count(0)
        assert console.request("GET", f"{AM}/silence/{sid}", token=viewer).json()["status"]["state"] == "expired"
        errors.assert_clean()

        # Refusals, shown on the page (the browser logs the 400 answer itself).
        page.goto(console.url + "/alerts/silences/new?matchers=" + quote('{job=~"("}'))
        expect(page.locator("#matchers-error")).to_contain_text("invalid regular expression")
        page.goto(console.url + "/alerts/silences/new?matchers=" + quote('{env=~".*"}'))
        page.fill("#silence-comment", "everything")
        page.click("#create-silence")
        expect(page.locator("#silence-form-error")).to_contain_text("must not match the empty string")
        assert console.count("silences") == 1

        # A viewer sees silences but no way to change them.
        other = console.request("POST", f"{AM}/silences", {
            "matchers": [{"name": "alertname", "value": "Other", "isRegex": False}], "startsAt": rfc3339(time.time()),
            "endsAt": rfc3339(time.time() + 600), "createdBy": "ops", "comment": "c"},
            token=console.api_token("deployer")).json()["silenceID"]
        console.services.db.run(console.services.users.create, "sil-viewer", "viewer-password-1", "viewer")
        page.locator(".logout-form button").click()
        page.goto(console.url + "/login")
        page.fill("#username", "sil-viewer")
        page.fill("#password", "viewer-password-1")
        page.click("#login-submit")
        page.wait_for_url(console.url + "/")
        page.goto(console.url + "/alerts/silences")
        expect(page.locator(f'#silences-table tr[data-silence-id="{other}"] td').nth(0)).to_have_text("active")
        expect(page.locator("#new-silence")).to_have_count(0)
        expect(page.locator("button.expire-silence")).to_have_count(0)
        page.goto(console.url + "/alerts/silences/new")
        expect(page.locator("#create-silence")).to_be_disabled()
    finally:
        console.close()


def datetime_s(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
