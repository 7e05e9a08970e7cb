"""The Alerts page in a real headless Chromium against a real console: firing and pending
alerts with labels, value and runbook, resolved ones, the label filter, refused rule
files, alert text rendered as text, a silenced alert marked so, firing alerts on the overview's host cards, and the
alert's span on the host charts, labelled with its name where it starts."""
from __future__ import annotations

from console.alerting.handlers import rfc3339
from tests.api.test_alerting import T0, Clock, evaluate, push, start
from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, host_metrics, log_in

RULES = """groups:
  - name: page
    interval: 1h
    rules:
      - alert: PageHot
        expr: page_temp > 50
        labels: {severity: critical}
        annotations:
          summary: "<img src=x onerror=window.pwned=1> {{ $labels.instance }} hot"
          runbook_url: https://runbooks.example/page-hot
      - alert: PageWarm
        expr: page_temp > 20
        for: 1h
"""


def test_alerts_page_lists_active_and_resolved_alerts_and_filters(tmp_path, page):  # noqa: ANN001
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        errors = PageErrors(page)
        for host, value in (("page-1", 70), ("page-2", 30)):
            push(console, console.agent_token(host), host, "page_temp", [(0, value)])
        push(console, console.agent_token("page-3"), "page-3", "page_temp", [(0, 90), (60, 10)])
        status, body = console.push("page-3", console.agent_token("page-3"),
                                    host_metrics([(T0 + t) * 1000 for t in range(-120, 61, 10)]))
        assert status == 200, body
        evaluate(console, clock, T0)
        evaluate(console, clock, T0 + 60)  # page-3 resolves
        log_in(page, console)
        # host charts mark alert time: page-3's alert fired and resolved, page-2's never fired
        page.goto(console.url + "/hosts/page-3")
        expect(page.locator("#host-page")).to_have_attribute("data-alert-spans", "0")  # 15 min: before the window
        page.click('.range-btn[data-range="21600"]')
        expect(page.locator("#host-page")).to_have_attribute("data-alert-spans", "1")
        # Its name on every chart, at the time it fired (T0) on the chart's time axis.
        for chart in ("chart-load", "chart-cpu"):
            label = page.locator(f"#{chart} .alert-label", has_text="PageHot")
            expect(label).to_have_count(1)
            page.wait_for_function("([sel]) => Number(document.querySelector(sel).dataset.xmax)"
                                   " - Number(document.querySelector(sel).dataset.xmin) > 21000", arg=[f"#{chart}"])
            xmin, xmax = (float(page.get_attribute(f"#{chart}", f"data-{k}") or 0) for k in ("xmin", "xmax"))
            over, box = page.locator(f"#{chart} .u-over").bounding_box(), label.bounding_box()
            assert over is not None and box is not None
            fired_at = over["x"] + over["width"] * (T0 - xmin) / (xmax - xmin)
            assert abs(box["x"] - 3 - fired_at) < 3, (chart, box, fired_at)
            assert over["y"] <= box["y"] and box["y"] + box["height"] <= over["y"] + over["height"] + 1
        page.goto(console.url + "/hosts/page-2")
        expect(page.locator("#host-page")).to_have_attribute("data-alert-spans", "0")
        page.goto(console.url + "/alerts")
        rows = page.locator("#active-table tbody tr.alert-row")
        expect(rows).to_have_count(3)  # PageHot page-1 (firing), PageWarm page-1 and page-2 (pending)
        first = rows.first
        expect(first.locator("td").nth(0)).to_have_text("PageHot")
        expect(first.locator("td").nth(1)).to_have_text("firing")
        expect(first.locator(".label-chip")).to_have_text(["host=page-1", "instance=page-1", "job=node",
                                                             "severity=critical"])
        expect(first.locator("td").nth(3)).to_have_text("70")
        expect(first.locator("td").nth(5)).to_have_text("<img src=x onerror=window.pwned=1> page-1 hot")
        expect(first.locator("td").nth(6).locator("a")).to_have_attribute("href", "https://runbooks.example/page-hot")
        expect(first.locator("td").nth(0).locator("a")).to_have_attribute("href", "/alerts/rules/page/PageHot")
        assert page.locator("#active-table img").count() == 0 and page.evaluate("window.pwned") is None
        expect(first.locator(".muted-badge")).to_have_count(0)
        expect(first.locator("a.silence-link")).to_have_text("Silence")
        # silenced: the state says so (the reason in its title) and the row links to the silences
        silence = {"matchers": [{"name": "alertname", "value": "PageHot", "isRegex": False, "isEqual": True}],
                   "startsAt": rfc3339(T0 + 60), "endsAt": rfc3339(T0 + 3600), "createdBy": "ops", "comment": "known"}
        made = console.request("POST", "/alertmanager/api/v2/silences", silence, token=console.api_token("deployer"))
        assert made.status == 200, made.body
        page.reload()
        expect(first.locator("td").nth(1)).to_have_text("firing silenced")
        expect(first.locator(".muted-badge")).to_have_attribute("title", f"silence:{made.json()['silenceID']}")
        expect(first.locator("td").nth(7).locator("a")).to_have_text("Silenced")
        expect(first.locator("td").nth(7).locator("a")).to_have_attribute("href", "/alerts/silences")
        expect(rows.nth(1).locator(".muted-badge")).to_have_count(0)  # PageWarm: not named by the silence
        expect(page.locator("#resolved-table tbody tr.alert-row td").first).to_have_text("PageHot")
        expect(page.locator("#resolved-table .label-chip", has_text="instance=page-3")).to_have_count(1)
        page.fill("#alert-match", "instance=page-2")
        expect(rows).to_have_count(1)
        expect(rows.first.locator("td").nth(1)).to_have_text("pending")
        expect(page.locator("#rules-table tbody tr")).to_have_count(2)
        expect(page.locator("#rule-errors")).to_be_hidden()
        # the overview names each host's firing alerts on its card
        page.goto(console.url + "/")
        expect(page.locator('.host-card[data-host="page-1"] .host-alerts')).to_have_text("Firing: PageHot")
        expect(page.locator('.host-card[data-host="page-2"] .host-alerts')).to_be_hidden()
        page.goto(console.url + "/alerts")
        rules.write_text(RULES.replace("for: 1h", "for: an hour"))
        assert console.request("POST", "/-/reload", token=console.api_token("admin")).status == 422
        page.reload()
        expect(page.locator("#rule-errors")).to_contain_text(f"{rules}:13: for: not a valid duration string")
        expect(page.locator("#rules-table tbody tr")).to_have_count(2)
        errors.assert_clean()
    finally:
        console.close()
