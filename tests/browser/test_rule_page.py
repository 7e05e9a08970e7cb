"""The rule page in a real headless Chromium against a real console: a comparison rule's
left-hand side charted over the last 6 hours with its threshold drawn, its transitions,
the link from the Alerts page, a 390 px wide viewport, and a 404 page for an unknown rule."""
from __future__ import annotations

from tests.api.test_alerting import T0, Clock, evaluate, push, start
from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in

RULES = """groups:
  - name: rp group
    interval: 1h
    rules:
      - alert: RpHot
        expr: rp_temp > 50
        keep_firing_for: 1m
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.instance }} is hot"
          description: "<img src=x onerror=window.pwned=1>"
      - record: rp:temp:max
        expr: max(rp_temp)
"""


def test_rule_page_charts_expression_with_threshold_and_history(tmp_path, page):  # noqa: ANN001
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        errors = PageErrors(page)
        push(console, console.agent_token("rp-1"), "rp-1", "rp_temp",
             [(0, 70), (60, 75), (120, 20), (180, 20), (240, 20)])
        evaluate(console, clock, T0)  # firing
        evaluate(console, clock, T0 + 120)  # below, kept firing for 1 min
        evaluate(console, clock, T0 + 240)  # resolved
        log_in(page, console)
        page.goto(console.url + "/alerts")
        page.click('#rules-table a.rule-link:text("RpHot")')
        expect(page).to_have_url(console.url + "/alerts/rules/rp%20group/RpHot")
        expect(page.locator("#rule-expr")).to_have_text("rp_temp > 50")
        expect(page.locator("#chart-query")).to_have_text("rp_temp{}")
        expect(page.locator("#rule-threshold")).to_have_text("threshold: > 50")
        expect(page.locator("#rule-keep")).to_have_text("60 s")
        expect(page.locator("#rule-labels .label-chip")).to_have_text(["severity=critical"])
        expect(page.locator("#rule-annotations dd").first).to_have_text("<img src=x onerror=window.pwned=1>")
        assert page.locator("#rule-page img").count() == 0 and page.evaluate("window.pwned") is None
        expect(page.locator("#rule-state")).to_have_text("inactive")
        expect(page.locator("#rule-health")).to_contain_text("ok")
        chart = page.locator("#rule-chart")
        expect(chart).to_have_attribute("data-series", "1")
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).to_have_attribute("data-threshold-drawn", "50")
        expect(chart.locator(".u-legend")).to_contain_text('instance="rp-1"')
        expect(chart.locator(".u-legend .u-series").nth(1).locator(".u-value")).to_have_text("20")  # the latest
        history = page.locator("#history-table tbody tr.alert-row")
        # newest first; with no "for" an alert passes through pending in the same evaluation
        expect(history.locator("td:nth-child(2)")).to_have_text(["resolved", "firing", "pending"])
        expect(history.nth(1).locator("td").nth(2)).to_have_text("70")
        expect(history.nth(1).locator(".label-chip")).to_have_text(["host=rp-1", "instance=rp-1", "job=node",
                                                                     "severity=critical"])
        expect(page.locator("#active-table tbody tr.alert-row")).to_have_count(0)
        push(console, console.agent_token("rp-1"), "rp-1", "rp_temp", [(300, 90)])
        evaluate(console, clock, T0 + 300)
        page.reload()
        expect(page.locator("#rule-state")).to_have_text("firing")
        active = page.locator("#active-table tbody tr.alert-row")
        expect(active.locator("td").nth(0)).to_have_text("firing")
        expect(active.locator("td").nth(1)).to_have_text("90")
        expect(active.locator(".label-chip")).to_have_text(["host=rp-1", "instance=rp-1", "job=node",
                                                            "severity=critical"])
        # usable on a phone: nothing wider than the viewport, the chart resized to fit
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).to_have_attribute("data-threshold-drawn", "50")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate("document.querySelector('#rule-chart canvas').getBoundingClientRect().right") <= 390
        # a recording rule: its expression charted as it is, no threshold, no alert history
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(console.url + "/alerts/rules/rp%20group/rp:temp:max")
        expect(page.locator("#rule-state")).to_have_text("recording")
        expect(page.locator("#chart-query")).to_have_text("max(rp_temp)")
        expect(chart).to_have_attribute("data-series", "1")
        expect(chart.locator("canvas")).to_have_count(1)
        assert chart.get_attribute("data-threshold-drawn") is None
        expect(page.locator("#rule-threshold, #history-table")).to_have_count(0)
        errors.assert_clean()
    finally:
        console.close()


def test_unknown_rule_is_a_404_page(tmp_path, page):  # noqa: ANN001
    rules = tmp_path / "r.yml"
    rules.write_text(RULES)
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        log_in(page, console)
        for path in ("/alerts/rules/rp%20group/NoSuchRule", "/alerts/rules/no-such-group/RpHot"):
            response = page.goto(console.url + path)
            assert response.status == 404
            expect(page.locator("#error-title")).to_contain_text("no rule")
    finally:
        console.close()
