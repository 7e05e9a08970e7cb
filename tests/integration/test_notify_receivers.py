"""Notifications through the outbox to real local receivers: each vendor's format and
signature checked as the vendor documents it, retries on 429/5xx honouring
Retry-After, no retry on other 4xx, and the notification log."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

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


def put_secret(console: ConsoleHarness, name: str, value: str, kind: str = "generic") -> None:
    resp = console.request("POST", "/api/v1/secrets", {"name": name, "kind": kind, "value": value},
                           token=console.api_token("admin", f"secrets-{name}"))
    assert resp.status in (200, 201), resp.body


def test_dingtalk_signed_markdown_with_at_mobiles_in_chinese(tmp_path):
    peer = HttpReceiver(script=[(200, {"Content-Type": "application/json"}, b'{"errcode":0,"errmsg":"ok"}')]).start()
    console = start_console(tmp_path, [{"name": "oncall-cn", "language": "zh-CN", "time_zone": "Asia/Shanghai",
                                        "dingtalk_configs": [
        {"url_secret": "ding-url", "secret": "ding-sign", "at_mobiles": ["13800000000"]}]}])
    try:
        put_secret(console, "ding-url", peer.url + "/robot/send?access_token=tok123", "webhook_url")
        put_secret(console, "ding-sign", DING_SECRET)
        alert = host_down("web-1")
        payload = v4_payload("oncall-cn", [alert], {"alertname": "HostDown"})
        queue(console, "oncall-cn", "dingtalk[0]", payload)
        since = datetime.fromtimestamp(alert["starts_at"], ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
        got = wait_for(lambda: peer.received, 10, "the DingTalk robot")[0]
        assert got.path == "/robot/send" and got.query["access_token"] == ["tok123"]
        assert dingtalk_signature_ok(DING_SECRET, got.query["timestamp"][0], got.query["sign"][0], time.time())
        assert not dingtalk_signature_ok("another-secret", got.query["timestamp"][0], got.query["sign"][0],
                                         time.time())
        doc = got.json()
        assert doc["msgtype"] == "markdown" and doc["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
        text = doc["markdown"]["text"]
        assert doc["markdown"]["title"] == "[告警:1] HostDown"
        for expected in ("告警: HostDown", "Host web-1 stopped reporting.", "位置: web-1", "当前值: 0",
                         f"开始时间: {since} CST",
                         "[处理手册](https://runbooks.example/hostdown)", "[静默](http://fleetdeck.test:8700/alerts/"
                         "silences/new?matchers=%7Balertname%3D%22HostDown%22%2Cinstance%3D%22web-1%22", "@13800000000"):
            assert expected in text, (expected, text)
        assert "ding-url" not in got.body.decode() and DING_SECRET not in got.body.decode()
        # Resolved: the same group resolved, in Chinese.
        resolved = v4_payload("oncall-cn", [host_down("web-1", resolved=True)], {"alertname": "HostDown"})
        queue(console, "oncall-cn", "dingtalk[0]", resolved)
        got = wait_for(lambda: peer.received[1:], 10, "the resolved message")[0].json()
        assert got["markdown"]["title"] == "[已恢复] HostDown"
        assert "已恢复: HostDown" in got["markdown"]["text"] and "恢复时间" in got["markdown"]["text"]
        assert "静默" not in got["markdown"]["text"]
    finally:
        console.close()
        peer.close()


def test_dingtalk_error_code_fails_and_rate_limit_code_retries(tmp_path):
    peer = HttpReceiver(script=[(200, {}, b'{"errcode":130101,"errmsg":"send too fast"}'),
                                (200, {}, b'{"errcode":0,"errmsg":"ok"}'),
                                (200, {}, b'{"errcode":310000,"errmsg":"keywords not in content"}')]).start()
    console = start_console(tmp_path, [{"name": "ding", "dingtalk_configs": [{"url": peer.url + "/robot/send"}]}])
    try:
        token = console.api_token("viewer")
        queue(console, "ding", "dingtalk[0]", v4_payload("ding", [host_down("a")], {"alertname": "HostDown"}))
        sent = wait_for(lambda: log_entry(console, token, "ding", "sent"), 10, "the retried message")
        assert sent["attempts"] == 2 and len(peer.received) == 2
        assert "sign" not in peer.received[0].query and "timestamp" not in peer.received[0].query
        queue(console, "ding", "dingtalk[0]", v4_payload("ding", [host_down("b")], {"alertname": "HostDown"},
                                                         group_key="other"))
        failed = wait_for(lambda: log_entry(console, token, "ding", "failed"), 10, "the refused message")
        assert failed["attempts"] == 1 and "310000" in failed["last_error"] and "keywords" in failed["answer"]
        time.sleep(1.0)
        assert len(peer.received) == 3
    finally:
        console.close()
        peer.close()


def test_feishu_signed_card_and_wecom_markdown(tmp_path):
    feishu = HttpReceiver(script=[(200, {}, b'{"code":0,"msg":"success","data":{}}')]).start()
    wecom = HttpReceiver(script=[(200, {}, b'{"errcode":0,"errmsg":"ok"}')]).start()
    console = start_console(tmp_path, [
        {"name": "cn", "language": "zh-CN",
         "feishu_configs": [{"url": feishu.url + "/open-apis/bot/v2/hook/abc", "secret": "fs"}],
         "wecom_configs": [{"url": wecom.url + "/cgi-bin/webhook/send?key=k1", "language": "en"}]}])
    try:
        put_secret(console, "fs", FEISHU_SECRET)
        payload = v4_payload("cn", [host_down("web-1"), host_down("web-2")], {"alertname": "HostDown"})
        queue(console, "cn", "feishu[0]", payload)
        queue(console, "cn", "wecom[0]", payload)
        got = wait_for(lambda: feishu.received, 10, "the Feishu bot")[0]
        doc = got.json()
        assert got.path == "/open-apis/bot/v2/hook/abc"
        assert feishu_signature_ok(FEISHU_SECRET, doc["timestamp"], doc["sign"], time.time())
        assert not feishu_signature_ok("wrong", doc["timestamp"], doc["sign"], time.time())
        assert doc["msg_type"] == "interactive"
        assert doc["card"]["header"]["title"] == {"tag": "plain_text", "content": "[告警:2] HostDown"}
        assert doc["card"]["header"]["template"] == "red"
        content = doc["card"]["elements"][0]["content"]
        assert doc["card"]["elements"][0]["tag"] == "markdown" and "位置: web-2" in content
        got = wait_for(lambda: wecom.received, 10, "the WeCom robot")[0]
        assert got.query["key"] == ["k1"]
        doc = got.json()
        assert doc["msgtype"] == "markdown" and set(doc) == {"msgtype", "markdown"}
        assert "**[FIRING:2] HostDown**" in doc["markdown"]["content"] and "Where: web-1" in doc["markdown"]["content"]
        assert len(doc["markdown"]["content"].encode()) <= 4096
    finally:
        console.close()
        feishu.close()
        wecom.close()


def test_slack_url_from_the_secret_store(tmp_path, peer):
    console = start_console(tmp_path, [{"name": "chat", "slack_configs": [{"channel": "#ops"}]}],
                            glob={"slack_api_url_secret": "slack-hook"})
    try:
        put_secret(console, "slack-hook", peer.url + "/services/T0/B0/XXXX", "webhook_url")
        queue(console, "chat", "slack[0]", v4_payload("chat", [host_down("web-1")], {"alertname": "HostDown"}))
        got = wait_for(lambda: peer.received, 10, "Slack")[0]
        assert got.path == "/services/T0/B0/XXXX"
        doc = got.json()
        assert doc["text"] == "[FIRING:1] HostDown" and doc["channel"] == "#ops"
        att = doc["attachments"][0]
        assert att["color"] == "danger" and "*FIRING: HostDown*" in att["text"]
        assert "<https://runbooks.example/hostdown|Runbook>" in att["text"]
    finally:
        console.close()


def test_pagerduty_trigger_then_resolve_with_one_dedup_key(tmp_path):
    peer = HttpReceiver(script=[(202, {}, b'{"status":"success","message":"Event processed"}')]).start()
    console = start_console(tmp_path, [{"name": "pd", "pagerduty_configs": [
        {"url": peer.url + "/v2/enqueue", "routing_key_secret": "pd-key"}]}])
    try:
        put_secret(console, "pd-key", "R0UTINGKEY0000000000000000000000")
        firing = v4_payload("pd", [host_down("web-1")], {"alertname": "HostDown"})
        queue(console, "pd", "pagerduty[0]", firing)
        trigger = wait_for(lambda: peer.received, 10, "the trigger")[0].json()
        key = hashlib.sha256(firing["groupKey"].encode()).hexdigest()
        assert trigger["routing_key"] == "R0UTINGKEY0000000000000000000000"
        assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == key
        assert trigger["payload"]["summary"] == "[FIRING:1] HostDown"
        assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "web-1"
        queue(console, "pd", "pagerduty[0]", v4_payload("pd", [host_down("web-1", resolved=True)],
                                                        {"alertname": "HostDown"}))
        resolve = wait_for(lambda: peer.received[1:], 10, "the resolve")[0].json()
        assert resolve == {"routing_key": "R0UTINGKEY0000000000000000000000", "event_action": "resolve",
                           "dedup_key": key}
    finally:
        console.close()
        peer.close()


def test_429_and_5xx_are_retried_honouring_retry_after_and_400_is_not(tmp_path):
    peer = HttpReceiver(script=[(429, {"Retry-After": "2"}, b"slow down"), (503, {}, b"busy"), (200, {}, b"ok")]).start()
    bad = HttpReceiver(script=[(400, {}, b'{"error":"invalid payload"}')]).start()
    console = start_console(tmp_path, [{"name": "flaky", "webhook_configs": [{"url": peer.url}]},
                                       {"name": "picky", "webhook_configs": [{"url": bad.url}]}])
    try:
        token = console.api_token("viewer")
        queue(console, "flaky", "webhook[0]", v4_payload("flaky", [host_down()], {"alertname": "HostDown"}))
        queue(console, "picky", "webhook[0]", v4_payload("picky", [host_down()], {"alertname": "HostDown"}))
        sent = wait_for(lambda: log_entry(console, token, "flaky", "sent"), 15, "the retried webhook")
        assert sent["attempts"] == 3 and len(peer.received) == 3
        # Retry-After: 2 is honoured over the 0.2 s backoff; the 503 retry follows the backoff.
        assert peer.received[1].at - peer.received[0].at >= 1.9
        assert peer.received[2].at - peer.received[1].at < 1.9
        failed = wait_for(lambda: log_entry(console, token, "picky", "failed"), 10, "the refused webhook")
        assert failed["attempts"] == 1 and failed["last_status"] == 400 and "invalid payload" in failed["answer"]
        time.sleep(1.0)
        assert len(bad.received) == 1
        metrics = console.request("GET", "/metrics").body.decode()
        assert 'fleetdeck_notifications_failed_total{integration="webhook[0]",receiver="picky"} 1.0' in metrics
        assert 'fleetdeck_notification_retries_total{integration="webhook[0]",receiver="flaky"} 2.0' in metrics
        assert 'fleetdeck_notifications_sent_total{integration="webhook[0]",receiver="flaky"} 1.0' in metrics
        # The failure shows as a series for the shipped NotificationsFailing rule.
        doc = console.request("GET", "/prometheus/api/v1/query?query=fleetdeck_notifications_failed", token=token).json()
        assert [r["metric"] for r in doc["data"]["result"]] == [
            {"__name__": "fleetdeck_notifications_failed", "receiver": "picky", "integration": "webhook[0]"}]
    finally:
        console.close()
        peer.close()
        bad.close()


def test_retries_stop_after_give_up_after(tmp_path):
    peer = HttpReceiver(script=[(500, {}, b"down")]).start()
    console = start_console(tmp_path, [{"name": "dead", "webhook_configs": [{"url": peer.url}]}], give_up_after=1.5)
    try:
        token = console.api_token("viewer")
        queue(console, "dead", "webhook[0]", v4_payload("dead", [host_down()], {"alertname": "HostDown"}))
        failed = wait_for(lambda: log_entry(console, token, "dead", "failed"), 15, "giving up")
        assert failed["last_status"] == 500 and failed["last_error"].startswith("gave up after")
        assert failed["attempts"] == len(peer.received) >= 2
    finally:
        console.close()
        peer.close()


def test_log_api_validates_its_parameters(tmp_path):
    console = start_console(tmp_path, [])
    try:
        token = console.api_token("viewer")
        assert console.request("GET", "/api/v1/notifications?status=lost", token=token).status == 400
        assert console.request("GET", "/api/v1/notifications?since=200&until=100", token=token).status == 422
        assert console.request("GET", "/api/v1/notifications").status == 401
        resp = console.request("POST", "/api/v1/notifications/test", {"receiver": "nobody"},
                               token=console.api_token("admin"))
        assert resp.status == 404 and resp.json()["error"]["code"] == "unknown_receiver"
        assert console.request("POST", "/api/v1/notifications/test", {"receiver": "x"}, token=token).status == 403
    finally:
        console.close()


def cli(console: ConsoleHarness, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_notify_test_prints_each_answer_and_notify_log_lists_them(tmp_path):
    good = HttpReceiver(script=[(200, {}, b'{"errcode":0,"errmsg":"ok"}')]).start()
    bad = HttpReceiver(script=[(403, {}, b"forbidden: bad token")]).start()
    console = start_console(tmp_path, [{"name": "ops", "webhook_configs": [{"url": good.url}],
                                        "dingtalk_configs": [{"url": bad.url + "/robot/send"}]},
                                       {"name": "ok", "webhook_configs": [{"url": good.url}]}])
    try:
        admin = console.api_token("admin")
        out = cli(console, admin, "notify", "test", "ops")
        assert out.returncode == 1, out.stderr
        assert "ops webhook[0]: sent" in out.stdout and "ops dingtalk[0]: FAILED" in out.stdout
        assert "answer: forbidden: bad token" in out.stdout and "status: 403" in out.stdout
        hook = [r for r in good.received if r.json().get("receiver") == "ops"][0].json()
        assert hook["alerts"][0]["labels"]["alertname"] == "FleetdeckTestNotification"
        assert bad.received and bad.received[0].json()["msgtype"] == "markdown"
        out = cli(console, admin, "notify", "test", "ok")
        assert out.returncode == 0 and "ok webhook[0]: sent" in out.stdout
        out = cli(console, admin, "notify", "test", "nobody")
        assert out.returncode != 0 and "nobody" in out.stderr
        out = cli(console, console.api_token("viewer"), "notify", "log", "--status", "failed")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[:4] == ["TIME", "RECEIVER", "INTEGRATION", "ALERTS"]
        assert len(lines) == 2 and "dingtalk[0]" in lines[1] and "403" in lines[1] and "failed" in lines[1]
        doc = json.loads(cli(console, admin, "notify", "log", "--json", "--receiver", "ops").stdout)
        assert sorted(e["status"] for e in doc) == ["failed", "sent"]
        audit = console.request("GET", "/api/v1/audit", token=admin).json()
        tests = [e for e in audit["entries"] if e["action"] == "notification.test"]
        assert [e["target"] for e in tests] == ["receiver:ok", "receiver:ops"]
        assert tests[1]["details"] == {"integrations": ["webhook[0]", "dingtalk[0]"]}
        page = console.request("GET", "/notifications", token=admin)
        assert page.status == 200 and b"forbidden: bad token" in page.body and b"dingtalk[0]" in page.body
    finally:
        console.close()
        good.close()
        bad.close()


def test_send_resolved_false_leaves_resolved_alerts_out(tmp_path, peer):
    console = start_console(tmp_path, [{"name": "hook", "webhook_configs": [{"url": peer.url, "send_resolved": False}]}])
    try:
        token = console.api_token("viewer")
        mixed = v4_payload("hook", [host_down("web-1"), host_down("web-2", resolved=True)], {"alertname": "HostDown"})
        queue(console, "hook", "webhook[0]", mixed)
        got = wait_for(lambda: peer.received, 10, "the webhook")[0].json()
        assert [a["labels"]["instance"] for a in got["alerts"]] == ["web-1"] and got["status"] == "firing"
        queue(console, "hook", "webhook[0]", v4_payload("hook", [host_down("web-1", resolved=True)],
                                                        {"alertname": "HostDown"}, group_key="resolved-only"))
        wait_for(lambda: len([e for e in console.request("GET", "/api/v1/notifications?status=sent", token=token)
                              .json()["notifications"]]) == 2, 10, "the resolved-only notification")
        time.sleep(0.3)
        assert len(peer.received) == 1
    finally:
        console.close()


def test_a_timeout_is_retried(tmp_path):
    slow = HttpReceiver(delay=1.5).start()
    console = start_console(tmp_path, [{"name": "slow", "webhook_configs": [{"url": slow.url}]}], timeout=0.5,
                            give_up_after=2.0)
    try:
        token = console.api_token("viewer")
        queue(console, "slow", "webhook[0]", v4_payload("slow", [host_down()], {"alertname": "HostDown"}))
        failed = wait_for(lambda: log_entry(console, token, "slow", "failed"), 20, "giving up on the slow receiver")
        assert "timed out" in failed["last_error"] and failed["attempts"] >= 2
        assert len(slow.received) == failed["attempts"]
    finally:
        console.close()
        slow.close()


def test_a_failed_notification_fires_the_shipped_notifications_failing_rule(tmp_path):
    bad = HttpReceiver(script=[(404, {}, b"no_service")]).start()
    config = alerting_config([{"name": "gone", "slack_configs": [{"url": bad.url + "/services/x"}]}])
    config.default_rules = True
    console = ConsoleHarness(tmp_path / "console", alerting=config).start()
    try:
        token = console.api_token("viewer")

        def firing() -> list:
            asyncio.run_coroutine_threadsafe(console.services.alerting.evaluate_all(), console.loop).result(60)
            alerts = console.request("GET", "/prometheus/api/v1/alerts", token=token).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "NotificationsFailing"]
        assert firing() == []
        queue(console, "gone", "slack[0]", v4_payload("gone", [host_down()], {"alertname": "HostDown"}))
        wait_for(lambda: log_entry(console, token, "gone", "failed"), 10, "the failed notification")
        (alert,) = firing()
        assert alert["state"] == "firing"
        assert alert["labels"]["receiver"] == "gone" and alert["labels"]["integration"] == "slack[0]"
        assert "gone" in alert["annotations"]["summary"]
    finally:
        console.close()
        bad.close()
