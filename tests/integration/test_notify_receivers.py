"""Notifications through the outbox to real local receivers: each vendor's format and
signature checked as the vendor documents it, retries on 429/5xx honouring
Retry-After, no retry on other 4xx, and the notification log."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from console.notify.outbox import enqueue
from tests.harness import ConsoleHarness, wait_for
from tests.integration.notify_peers import (HttpReceiver, alerting_config, dingtalk_signature_ok,
                                            feishu_signature_ok, v4_payload)

DING_SECRET = "SEC0123456789abcdef-test"
FEISHU_SECRET = "feishu-secret-test"


@pytest.fixture()
def peer():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.close()


def host_down(instance: str = "web-1", resolved: bool = False) -> dict:
    now = time.time()
    return {"labels": {"alertname": "HostDown", "instance": instance, "job": "node", "severity": "critical"},
            "annotations": {"summary": f"Host {instance} stopped reporting.", "value": "0",
                            "runbook_url": "https://runbooks.example/hostdown"},
            "starts_at": now - 300, "ends_at": now - 5 if resolved else None}


def start_console(tmp_path, receivers, glob=None, **delivery) -> ConsoleHarness:
    return ConsoleHarness(tmp_path / "console", alerting=alerting_config(receivers, glob, **delivery)).start()


def queue(console: ConsoleHarness, receiver: str, integration: str, payload: dict) -> str:
    dedup = f"test:{uuid.uuid4().hex}"
    console.services.db.run(lambda s: enqueue(s, receiver=receiver, integration=integration,
                                              group_key=payload["groupKey"], dedup_key=dedup,
                                              payload=json.dumps(payload), now=time.time()))
    return dedup


def log_entry(console: ConsoleHarness, token: str, receiver: str, status: str) -> dict | None:
    rows = console.request("GET", f"/api/v1/notifications?receiver={receiver}", token=token).json()["notifications"]
    return next((r for r in rows if r["status"] == status), None)


def test_webhook_sends_the_version_4_payload_exactly(tmp_path, peer):
    console = start_console(tmp_path, [{"name": "hook", "webhook_configs": [{"url": peer.url + "/hook"}]}])
    try:
        payload = v4_payload("hook", [host_down("web-1"), host_down("web-2")], {"alertname": "HostDown"})
        queue(console, "hook", "webhook[0]", payload)
        wait_for(lambda: peer.received, 10, "the webhook")
        got = peer.received[0]
        assert got.path == "/hook"
        assert got.headers["Content-Type"].startswith("application/json")
        assert got.json() == payload
        assert set(got.json()) == {"receiver", "status", "alerts", "groupLabels", "commonLabels", "commonAnnotations",
                                   "externalURL", "version", "groupKey", "truncatedAlerts"}
        token = console.api_token("viewer")
        sent = wait_for(lambda: log_entry(console, token, "hook", "sent"), 10, "the log entry")
        assert sent["integration"] == "webhook[0]" and sent["last_status"] == 200 and sent["answer"] == "ok"
        assert sent["attempts"] == 1
        time.sleep(0.5)
        assert len(peer.received) == 1
    finally:
        console.close()


def test_webhook_max_alerts_truncates(tmp_path, peer):
    console = start_console(tmp_path, [{"name": "hook", "webhook_configs": [{"url": peer.url, "max_alerts": 1}]}])
    try:
        payload = v4_payload("hook", [host_down("web-1"), host_down("web-2"), host_down("web-3")],
                             {"alertname": "HostDown"})
        queue(console, "hook", "webhook[0]", payload)
        got = wait_for(lambda: peer.received, 10, "the webhook")[0].json()
        assert len(got["alerts"]) == 1 and got["truncatedAlerts"] == 2
        assert got["alerts"][0] == payload["alerts"][0]
    finally:
        console.close()
