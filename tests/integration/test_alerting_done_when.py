"""Alerting end to end, as a user runs it, in real time: a real ``python -m agents``
process reports its host; a rule on the host's ``node_load1`` fires through the console's
own evaluation loop and routing; the receiver ``oncall`` sends one signed DingTalk
markdown message (to a local robot that checks the signature as DingTalk documents it)
and one email (to an aiosmtpd server), grouped by alertname and instance. Then the same
alert is muted in turn by a silence added with ``amtool``, by a weekly maintenance window
open at this hour in Asia/Shanghai (a window of the same weekday at another hour does not
mute it) and by a real deploy to a real dockerd (held during the deploy and the settle
time, notified after), and a regression after that deploy raises ``DeployRegression``,
which reaches the DingTalk robot naming the deploy.

A muted alert must record its firing transition with ``muted_by``; the rule is therefore
gated by a series the test pushes (``e2e_gate``), so that the alert can resolve and fire
again while each mute is in place. ``repeat_interval`` is an hour: every further message
comes from a new firing, and a mute that failed would show as one more message.
"""
from __future__ import annotations

import copy
import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import yaml

from console.config import AlertingConfig
from console.notify.receivers.config import DeliveryConfig
from tests.conftest import need
from tests.docker_images import run_app
from tests.harness import ConsoleHarness, wait_for
from tests.integration.notify_peers import HttpReceiver, SmtpServer, dingtalk_signature_ok
from tests.integration.test_deploy_alerting import FINAL, app, docker_run, wait_state  # noqa: F401 - docker_run: a fixture
from tests.integration.test_notify_receivers import put_secret

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "console" / "alerting" / "default_rules.yml"
HOST = "e2e-agent"
APP = run_app("e2e")
RULE = "E2eLoadSeen"
DING_SECRET = "SEC-e2e-0123456789abcdef"
SHANGHAI = ZoneInfo("Asia/Shanghai")
AM = "/alertmanager/api/v2"
SETTLE = 10.0  # alerting.deploy_settle, seconds
WATCH = 5.0  # alerting.deploy_watch window, seconds
NOTIFICATIONS = {
    "global": {"smtp_smarthost": "", "smtp_from": "fleetdeck@example.com", "smtp_require_tls": False},
    "route": {"receiver": "oncall", "group_by": ["alertname", "instance"], "group_wait": "1s",
              "group_interval": "1s", "repeat_interval": "1h"},
    "receivers": [{"name": "oncall", "time_zone": "Asia/Shanghai",
                   "dingtalk_configs": [{"url_secret": "e2e-ding-url", "secret": "e2e-ding-sign"}],
                   "email_configs": [{"to": "ops@example.com, lead@example.com"}]}],
}


def rules_file(path: Path) -> None:
    """RULE, and the shipped DeployRegression rule in a group evaluated every second."""
    shipped = yaml.safe_load(SHIPPED.read_text())
    regression = next(r for g in shipped["groups"] for r in g["rules"] if r.get("alert") == "DeployRegression")
    path.write_text(yaml.safe_dump({"groups": [{"name": "e2e", "interval": "1s", "rules": [
        {"alert": RULE, "expr": f'node_load1{{instance="{HOST}"}} >= 0 and on() e2e_gate == 1', "for": "0s",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.instance }} reports its load."}},
        regression]}]}, sort_keys=False))


def parts(raw: bytes) -> tuple[email.message.EmailMessage, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg, msg.get_body(("plain",)).get_content()


@pytest.mark.usefixtures("docker_run")  # this run's containers removed before and after
def test_done_when_notify_silence_window_deploy_hold_and_regression(tmp_path, docker_images):
    amtool = shutil.which("amtool")
    if not amtool:
        need("alertmanager", "amtool is not installed (apt-get install prometheus-alertmanager)")
    started = time.monotonic()
    rules = tmp_path / "rules.yml"
    rules_file(rules)
    robot = HttpReceiver(script=[(200, {"Content-Type": "application/json"}, b'{"errcode":0,"errmsg":"ok"}')]).start()
    smtp = SmtpServer()
    notifications = copy.deepcopy(NOTIFICATIONS)
    notifications["global"]["smtp_smarthost"] = smtp.smarthost
    watch = {APP: {"window": f"{WATCH:g}s", "signals": [
        {"name": "error_rate", "expr": "max(e2e_error_ratio)", "ratio": 0.5}]}}
    config = AlertingConfig.model_validate({
        "rule_files": [str(rules)], "default_rules": False, "evaluation_interval": 1.0,
        "deploy_settle": SETTLE, "deploy_watch": watch, "notifications": notifications,
        "delivery": DeliveryConfig(backoff_initial=0.2, backoff_max=1.0, poll_interval=0.1, timeout=5.0)})
    console = agent = None
    try:
        console = ConsoleHarness(tmp_path / "data", apps={APP: app(docker_images, [HOST])}, alerting=config).start()
        put_secret(console, "e2e-ding-url", robot.url + "/robot/send?access_token=e2etok", "webhook_url")
        put_secret(console, "e2e-ding-sign", DING_SECRET)
        viewer, deployer = console.api_token("viewer"), console.api_token("deployer")
        token = console.agent_token(HOST)
        env = dict(os.environ, FLEETDECK_AGENT_TOKEN=token,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        agent = subprocess.Popen([sys.executable, "-m", "agents", "--console", console.url, "--host", HOST,
                                  "--interval", "1"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        am_config = tmp_path / "amtool.yml"
        am_config.write_text(json.dumps({"authorization": {"type": "Bearer", "credentials": deployer}}))

        def am(*args: str) -> str:
            proc = subprocess.run([amtool, f"--alertmanager.url={console.url}/alertmanager",
                                   f"--http.config.file={am_config}", *args],
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        def push(name: str, value: float, at: float | None = None) -> None:
            ms = int((time.time() if at is None else at) * 1000)
            status, body = console.push(HOST, token, [{"name": name, "type": "gauge", "labels": {},
                                                       "points": [[ms, float(value)]]}])
            assert status == 200 and "rejected" not in body, body

        def ours() -> list[dict]:
            resp = console.request("GET", f"{AM}/alerts?" + urlencode({"filter": f"alertname={RULE}"}), token=viewer)
            assert resp.status == 200, resp.body
            return resp.json()

        def firings() -> list[dict]:
            resp = console.request("GET", "/api/v1/alerts/history?" + urlencode({"alertname": RULE}), token=viewer)
            assert resp.status == 200, resp.body
            return [t for t in reversed(resp.json()["transitions"]) if t["state"] == "firing"]

        def mails(alertname: str = RULE) -> list[dict]:
            return [m for m in smtp.messages if f"] {alertname} " in parts(m["data"])[0]["Subject"] + " "]

        def dings(alertname: str = RULE, state: str = "FIRING") -> list:
            return [r for r in robot.received if r.json()["markdown"]["title"].startswith(f"[{state}")
                    and alertname in r.json()["markdown"]["title"]]

        def counts() -> tuple[int, int]:
            return len(dings()), len(mails())

        def resolve(resolved_messages: int) -> None:
            """Resolve the alert (gate 0), not muted: DingTalk (send_resolved by default) says
            so, and the notification log forgets the alert, so its next firing notifies."""
            push("e2e_gate", 0)
            wait_for(lambda: ours() == [], 20, f"{RULE} to resolve")
            wait_for(lambda: len(dings(state="RESOLVED")) == resolved_messages, 20, "the resolved message")
            assert robot.received[-1].json()["markdown"]["title"] == f"[RESOLVED] {RULE} {HOST}"

        def fire() -> dict:
            """Fire the alert again (gate 1); its new firing transition in the history."""
            before = len(firings())
            push("e2e_gate", 1)
            return wait_for(lambda: firings()[before:], 20, f"{RULE} to fire again")[0]

        def stays(expected: tuple[int, int], seconds: float = 3.0) -> None:
            """No further message for ``seconds`` (three group intervals), polled every 0.5 s."""
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                assert counts() == expected
                time.sleep(0.5)

        # 1. The rule fires on the agent's host: one DingTalk message, one email, one group.
        push("e2e_error_ratio", 0.01)
        push("e2e_gate", 1)
        [alert] = wait_for(ours, 60, f"{RULE} on the agent's {HOST}")
        assert (alert["labels"]["instance"], alert["labels"]["severity"]) == (HOST, "warning")
        assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
        wait_for(lambda: counts() == (1, 1), 20, "the DingTalk message and the email")
        ding = robot.received[0]
        assert ding.path == "/robot/send" and ding.query["access_token"] == ["e2etok"]
        assert dingtalk_signature_ok(DING_SECRET, ding.query["timestamp"][0], ding.query["sign"][0], time.time())
        doc = ding.json()
        assert doc["msgtype"] == "markdown" and doc["markdown"]["title"] == f"[FIRING:1] {RULE} {HOST}"
        assert f"{HOST} reports its load." in doc["markdown"]["text"]
        mail = smtp.messages[0]
        assert (mail["from"], mail["to"]) == ("fleetdeck@example.com", ["ops@example.com", "lead@example.com"])
        msg, text = parts(mail["data"])
        assert msg["Subject"] == f"[FIRING:1] {RULE} {HOST}" and f"Where: {HOST}" in text
        def notification_log() -> list[tuple[str, str, str]]:
            log = console.request("GET", "/api/v1/notifications?receiver=oncall", token=viewer).json()["notifications"]
            return sorted((n["integration"], n["group_key"], n["status"]) for n in log)

        # A receiver holds its message a moment before the console has recorded the delivery
        # (the SMTP or HTTP answer comes first): wait until no delivery is pending.
        log = wait_for(lambda: (rows := notification_log()) and all(r[2] != "pending" for r in rows) and rows,
                       10, "the deliveries recorded")
        group = f'{{}}:{{alertname="{RULE}", instance="{HOST}"}}'  # Alertmanager's LabelSet.String()
        assert log == [("dingtalk[0]", group, "sent"), ("email[0]", group, "sent")]
        stays((1, 1))

        # 2. A silence added with amtool mutes it; expired, the alert notifies.
        resolve(1)
        sid = am("silence", "add", f"alertname={RULE}", f"instance={HOST}", "-c", "e2e", "-a", "alice",
                 "--duration", "1h").strip()
        fired = fire()
        assert fired["muted_by"] == [f"silence:{sid}"], fired
        assert ours()[0]["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
        stays((1, 1))
        am("silence", "expire", sid)
        wait_for(lambda: counts() == (2, 2), 20, "the alert's messages once the silence expired")

        # 3. A weekly window open at this hour in Shanghai mutes it; one at another hour does not.
        resolve(2)
        now = datetime.now(SHANGHAI)
        byday = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][now.weekday()]
        this_hour = now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        other_hour = this_hour.replace(hour=(now.hour + 12) % 24)
        for name, start in (("e2e-now", this_hour), ("e2e-other-hour", other_hour)):
            body = {"name": name, "dtstart": start.isoformat(), "duration": "2h", "rrule": f"FREQ=WEEKLY;BYDAY={byday}",
                    "timezone": "Asia/Shanghai", "hosts": [HOST], "comment": "e2e"}
            resp = console.request("POST", "/api/v1/maintenance/windows", body, token=deployer)
            assert resp.status == 201, resp.body
        listed = console.request("GET", "/api/v1/maintenance/windows", token=viewer).json()["windows"]
        assert {w["name"]: w["active"] for w in listed} == {"e2e-now": True, "e2e-other-hour": False}
        fired = fire()
        assert fired["muted_by"] == ["window:e2e-now"], fired
        assert ours()[0]["status"] == {"state": "suppressed", "silencedBy": [], "inhibitedBy": [],
                                       "mutedBy": ["window:e2e-now"]}
        stays((2, 2))
        assert console.request("DELETE", "/api/v1/maintenance/windows/e2e-now", token=deployer).status == 200
        wait_for(lambda: counts() == (3, 3), 20, "the alert's messages once the window was deleted")
        assert ours()[0]["status"]["mutedBy"] == []  # the other hour's window does not mute it

        # 4. A real deploy holds it while it runs and for the settle time, then it notifies.
        resolve(3)
        resp = console.request("POST", f"/api/v1/apps/{APP}/deploys", {"version": "2.0"}, token=deployer)
        assert resp.status == 202, resp.body
        deploy_id = resp.json()["id"]
        reason = f"deploy:{deploy_id}"
        # the hold re-reads the deploys every second by itself
        wait_for(lambda: console.services.muting.muted_by({"instance": HOST}, time.time()) == [reason], 20,
                 "the deploy's hold")
        fired = fire()
        assert fired["muted_by"] == [reason], fired
        assert ours()[0]["status"]["mutedBy"] == [reason]
        done = wait_state(console, viewer, deploy_id, FINAL)
        assert done["state"] == "succeeded", done
        push("e2e_error_ratio", 0.2, done["finished_at"])  # the regression, from the deploy's end on
        assert counts() == (3, 3)
        assert time.time() < done["finished_at"] + SETTLE, "the hold ended before the test could check it"
        wait_for(lambda: counts() == (4, 4), SETTLE + 20, "the held alert's messages after the settle time")
        assert dings()[-1].at >= done["finished_at"] + SETTLE

        # 5. The post-deploy watch raises DeployRegression; the DingTalk robot gets it.
        [regression] = wait_for(lambda: dings("DeployRegression"), WATCH + 60, "DeployRegression's message")
        assert dingtalk_signature_ok(DING_SECRET, regression.query["timestamp"][0], regression.query["sign"][0],
                                     time.time())
        doc = regression.json()
        assert doc["markdown"]["title"] == "[FIRING:1] DeployRegression"
        text = doc["markdown"]["text"]
        assert f"\nDeploy {deploy_id} of {APP} made error_rate worse.\n" in text
        assert "error_rate averaged 0.2, above its level before the deploy" in text  # 0.01 before it
        assert f"\n- Labels: app={APP}, deploy_id={deploy_id}, severity=warning, signal=error_rate\n" in text
        resp = console.request("GET", f"{AM}/alerts?" + urlencode({"filter": "alertname=DeployRegression"}),
                               token=viewer)
        [raised] = resp.json()
        assert {k: raised["labels"][k] for k in ("app", "deploy_id", "signal")} == {
            "app": APP, "deploy_id": str(deploy_id), "signal": "error_rate"}
        assert raised["annotations"]["rollback_url"] == f"/deploys/{deploy_id}#rollback"
        wait_for(lambda: mails("DeployRegression"), 20, "DeployRegression's email")
        assert (len(dings("DeployRegression")), len(mails("DeployRegression"))) == (1, 1)
        assert counts() == (4, 4)
        print(f"end to end in {time.monotonic() - started:.1f} s")
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            agent.wait(30)
        if console is not None:
            console.close()
        robot.close()
        smtp.close()
