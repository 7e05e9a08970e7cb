"""Log alert rules (``type: logs``) on a real console over HTTP, on SQLite and PostgreSQL:
log lines go through the real ingest API, each evaluation runs the service's real group
evaluation at a time the test sets (see tests/api/test_alerting.py)."""
from __future__ import annotations

import pytest

from tests.api.test_alerting import T0, Clock, alerts, evaluate, history, start
from tests.conftest import database_url

RULES = """
groups:
  - name: logs
    interval: 1h
    rules:
      - alert: PaymentErrors
        type: logs
        query: "payment declined"
        hosts: [lg-1, lg-2]
        source: /var/log/shop*
        levels: [error]
        window: 5m
        threshold: 3
        for: 2m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} logged {{ $value }} declined payments in 5 minutes"
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def setup(request, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        rules = tmp_path_factory.mktemp("logrules") / "logs.rules.yml"
        rules.write_text(RULES)
        clock = Clock(T0)
        console = start(tmp_path_factory.mktemp("alerting-logs"), rules, clock, database_url=url)
        try:
            yield console, clock, console.api_token("viewer")
        finally:
            console.close()


def lines(console, clock, host: str, at: int, texts: list, source: str = "/var/log/shop/app.log",
          level: str = "ERROR") -> None:
    clock.now = max(clock.now, T0 + at)
    status, body = console.push(host, console.agent_token(host), [], [
        {"ts": (T0 + at) * 1000 + i, "source": source, "line": text, "labels": {"level": level}}
        for i, text in enumerate(texts)])
    assert status == 200, body
    assert "rejected" not in body, body


def test_a_burst_of_matching_lines_fires_per_host_with_sample_lines_and_resolves(setup):
    console, clock, viewer = setup
    declined = [f"order {i}: payment declined by bank" for i in range(4)]
    lines(console, clock, "lg-1", 0, declined)
    # not counted: three lines per filter they miss, and two matching lines on lg-2 (under the threshold)
    lines(console, clock, "lg-1", 0, ["payment declined"] * 3, level="INFO")
    lines(console, clock, "lg-1", 0, ["payment declined"] * 3, source="/var/log/other.log")
    lines(console, clock, "lg-3", 0, ["payment declined"] * 5)
    lines(console, clock, "lg-1", 0, ["payment accepted"] * 5)
    lines(console, clock, "lg-2", 0, ["payment declined"] * 2)
    evaluate(console, clock, T0 + 10)
    a = alerts(console, viewer)["PaymentErrors"]
    assert a["state"] == "pending"
    assert a["labels"] == {"alertname": "PaymentErrors", "severity": "page", "host": "lg-1", "instance": "lg-1",
                           "job": "node"}
    assert a["annotations"]["summary"] == "lg-1 logged 4 declined payments in 5 minutes"
    assert a["annotations"]["log_samples"].split("\n") == [declined[3], declined[2], declined[1]]  # newest first
    lines(console, clock, "lg-1", 100, declined)
    evaluate(console, clock, T0 + 130)
    assert alerts(console, viewer)["PaymentErrors"]["state"] == "firing"  # 2 min since pending
    evaluate(console, clock, T0 + 310)  # the first burst left the window; the second is 4 lines
    assert alerts(console, viewer)["PaymentErrors"]["value"] == "4e+00"
    evaluate(console, clock, T0 + 400)  # (100, 400]: nothing left
    assert "PaymentErrors" not in alerts(console, viewer)
    assert history(console, viewer, alertname="PaymentErrors", since=T0, until=T0 + 1000) == [
        ("PaymentErrors", "pending", T0 + 10), ("PaymentErrors", "firing", T0 + 130),
        ("PaymentErrors", "resolved", T0 + 400)]
    resp = console.request("GET", f"/api/v1/alerts/history?since={T0}&until={T0 + 200}&alertname=PaymentErrors",
                           token=viewer)
    firing = next(t for t in resp.json()["transitions"] if t["state"] == "firing")
    assert firing["annotations"]["log_samples"].split("\n") == [declined[3], declined[2], declined[1]]
    resp = console.request("GET", "/prometheus/api/v1/rules", token=viewer)
    rule = resp.json()["data"]["groups"][0]["rules"][0]
    assert (rule["name"], rule["health"], rule["type"]) == ("PaymentErrors", "ok", "alerting")
