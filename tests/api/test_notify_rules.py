"""A rule firing on a real console queues its notification: samples through the ingest
API, the service's real evaluation at times the test sets, the dispatcher's rounds at
those times, and the ``notifications`` rows read back (firing, then resolved), with the
alert history's ``muted_by`` naming the HostDown inhibition."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from sqlalchemy import select

from console.config import AlertingConfig
from console.notify.model import fingerprint
from console.storage.models import AlertHistory, Notification
from tests.api.test_alerting import Clock
from tests.conftest import database_url
from tests.harness import ConsoleHarness

T0 = (int(time.time()) // 60 - 60) * 60  # a whole minute, an hour ago

RULES = """
groups:
  - name: notify
    interval: 1h
    rules:
      - alert: TempHigh
        expr: nt_temp > 50
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} is at {{ $value }}"
      - alert: HostDown
        expr: nt_down > 0
"""
NOTIFICATIONS = {
    "route": {"receiver": "ops", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m",
              "routes": [{"matchers": ['severity="page"'], "receiver": "pager"}]},
    "receivers": [{"name": "ops", "webhook_configs": [{"url": "http://127.0.0.1:9/ops"}]},
                  {"name": "pager", "webhook_configs": [{"url": "http://127.0.0.1:9/pager"}]}],
}


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        rules = tmp_path_factory.mktemp("rules") / "notify.yml"
        rules.write_text(RULES)
        clock = Clock(T0)
        config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=3600.0, default_rules=False,
                                notifications=NOTIFICATIONS)
        console = ConsoleHarness(tmp_path_factory.mktemp("notify"), database_url=url, alerting=config,
                                 clock=clock).start()
        try:
            yield console, clock, console.agent_token("nt-1")
        finally:
            console.close()


def push(console, token, name, t, value):
    console.services.clock.now = max(console.services.clock.now, T0 + t)
    status, body = console.push("nt-1", token, [{"name": name, "type": "gauge", "labels": {},
                                                "points": [[(T0 + t) * 1000, float(value)]]}])
    assert status == 200 and "rejected" not in body, body


def at(console, clock, t, coro_fn):
    clock.now = T0 + t
    return asyncio.run_coroutine_threadsafe(coro_fn(T0 + t), console.loop).result(60)


def rows(console) -> list[dict]:
    return console.services.db.run(lambda s: [
        {"receiver": r.receiver, "integration": r.integration, "group_key": r.group_key, "status": r.status,
         "payload": orjson.loads(r.payload), "created_at": r.created_at}
        for r in s.scalars(select(Notification).order_by(Notification.id))])


def test_rule_firing_then_resolved_queues_notifications(setup):
    console, clock, token = setup
    services = console.services
    push(console, token, "nt_temp", 0, 70)
    at(console, clock, 0, services.alerting.evaluate_all)
    at(console, clock, 29, services.dispatcher.tick)
    assert rows(console) == []  # group_wait
    at(console, clock, 30, services.dispatcher.tick)
    (row,) = rows(console)
    assert (row["receiver"], row["integration"], row["status"]) == ("pager", "webhook[0]", "pending")
    assert row["group_key"] == '{}/{severity="page"}:{alertname="TempHigh"}'
    payload = row["payload"]
    assert (payload["status"], payload["receiver"], payload["groupLabels"]) == (
        "firing", "pager", {"alertname": "TempHigh"})
    (alert,) = payload["alerts"]
    assert alert["labels"] == {"alertname": "TempHigh", "severity": "page", "host": "nt-1", "instance": "nt-1",
                               "job": "node"}
    assert alert["annotations"] == {"summary": "nt-1 is at 70"}
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == console.services.config.public_url + "/alerts/rules/notify/TempHigh"
    # Evaluated again, still firing: nothing new at the next flushes.
    push(console, token, "nt_temp", 60, 75)
    at(console, clock, 60, services.alerting.evaluate_all)
    at(console, clock, 330, services.dispatcher.tick)
    assert len(rows(console)) == 1
    # Resolved: one resolved notification at the group's next flush.
    push(console, token, "nt_temp", 400, 20)
    at(console, clock, 400, services.alerting.evaluate_all)
    at(console, clock, 630, services.dispatcher.tick)
    resolved = rows(console)[1]
    assert resolved["payload"]["status"] == "resolved"
    assert resolved["payload"]["alerts"][0]["endsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime(T0 + 400))
    at(console, clock, 930, services.dispatcher.tick)
    assert len(rows(console)) == 2


def test_host_down_inhibits_the_hosts_other_alerts_in_history_and_notifications(setup):
    console, clock, token = setup
    services = console.services
    # The shipped default inhibit rule is keyed on the alert name HostDown and the host label.
    push(console, token, "nt_down", 1000, 1)
    push(console, token, "nt_temp", 1000, 90)
    at(console, clock, 1000, services.alerting.evaluate_all)
    at(console, clock, 1030, services.dispatcher.tick)
    assert [(r["receiver"], r["payload"]["groupLabels"]["alertname"]) for r in rows(console)] == [("ops", "HostDown")]
    history = services.db.run(lambda s: {(r.alertname, r.state): r.muted_by for r in s.scalars(
        select(AlertHistory).where(AlertHistory.ts == T0 + 1000))})
    host_down = fingerprint({"alertname": "HostDown", "host": "nt-1", "instance": "nt-1", "job": "node"})
    assert history[("TempHigh", "firing")] == f"inhibited:{host_down}"
    assert history[("HostDown", "firing")] is None
