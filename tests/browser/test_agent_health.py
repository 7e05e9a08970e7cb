"""The overview card shows each host's agent health from its self-metrics (real Chromium)."""
from __future__ import annotations

import time

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import log_in


def test_overview_card_shows_agent_backlog_and_healthy_agents(console, page):  # noqa: ANN001
    ts = int(time.time() * 1000)

    def metric(name, value, **labels):
        return {"name": name, "type": "counter" if name.endswith("_total") else "gauge",
                "labels": labels, "points": [[ts, value]]}

    behind = [metric("fleetdeck_agent_batches_queued", 42), metric("fleetdeck_agent_spool_bytes", 2048),
              metric("fleetdeck_agent_send_errors_total", 3, code="503"),
              metric("fleetdeck_agent_collector_success", 1, collector="host")]
    healthy = [metric("fleetdeck_agent_batches_queued", 0), metric("fleetdeck_agent_spool_bytes", 0),
               metric("fleetdeck_agent_collector_success", 1, collector="host")]
    assert console.push("behind-1", console.agent_token("behind-1"), behind)[0] == 200
    assert console.push("fine-1", console.agent_token("fine-1"), healthy)[0] == 200
    log_in(page, console)
    card = page.locator('.host-card[data-host="behind-1"] .agent-health')
    expect(card).to_have_text("Agent: 42 batches queued")
    expect(card).to_have_class("agent-health degraded")
    assert "send errors 503: 3" in card.get_attribute("title")
    expect(page.locator('.host-card[data-host="fine-1"] .agent-health')).to_have_text("Agent healthy")


def test_overview_card_flags_an_agent_whose_clock_is_off(console, page):  # noqa: ANN001
    """A host whose batches' sent_at is a day behind carries a CLOCK badge with the offset;
    a host with a good clock has none."""
    from tests.api.test_clock_skew import DAY, push_skewed

    assert push_skewed(console, "card-behind", console.agent_token("card-behind"), -DAY)[0] == 200
    assert push_skewed(console, "card-fine", console.agent_token("card-fine"), 0.0)[0] == 200
    log_in(page, console)
    badge = page.locator('.host-card[data-host="card-behind"] .skew-badge')
    expect(badge).to_be_visible()
    expect(badge).to_have_text("CLOCK -1d 0h")
    assert "off the console's" in badge.get_attribute("title")
    expect(page.locator('.host-card[data-host="card-fine"] .skew-badge')).to_be_hidden()


def test_a_down_host_card_never_says_agent_healthy(console, page):  # noqa: ANN001
    """An agent that reported "ok" and then stopped: its host is DOWN and its card says
    the agent is not reporting, not "Agent healthy" in green."""
    import uuid

    from tests.browser.test_dashboard import raw_ingest
    from tests.harness import wait_for

    ts = int(time.time() * 1000)
    status, body = raw_ingest(console, console.agent_token("quiet-1"), {
        "host": "quiet-1", "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
        "agent": {"version": "test", "interval": 0.2},  # down after 3 missed intervals: 0.6 s
        "metrics": [{"name": "fleetdeck_agent_batches_queued", "type": "gauge", "labels": {}, "points": [[ts, 0]]},
                    {"name": "fleetdeck_agent_collector_success", "type": "gauge", "labels": {"collector": "host"},
                     "points": [[ts, 1]]}], "logs": []})
    assert status == 200, body
    viewer = console.api_token("viewer")
    wait_for(lambda: not next(h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()
                              if h["host"] == "quiet-1")["up"], 10, "quiet-1 to be down")
    log_in(page, console)
    card = page.locator('.host-card[data-host="quiet-1"]')
    expect(card.locator(".badge")).to_have_text("DOWN")
    expect(card.locator(".agent-health")).to_contain_text("no report for")
    expect(card.locator(".agent-health")).to_have_class("agent-health unknown")
    expect(card.locator(".agent-health")).not_to_have_text("Agent healthy")
