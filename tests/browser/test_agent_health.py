"""The overview card shows each host's agent health from its self-metrics (real Chromium)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.test_dashboard import log_in  # noqa: E402


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
