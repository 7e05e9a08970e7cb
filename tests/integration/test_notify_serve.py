"""A real ``fleetdeck serve`` with its routing in a file named by config.yaml: a firing
rule is queued once; a restart does not queue it again (the notification log is the
outbox table); ``POST /-/reload`` refuses a broken routing file with its file and line
and keeps the previous routing, then applies a corrected one."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from tests.harness import http, wait_for
from tests.integration.procs import REPO, ConsoleProcess

RULE = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n"
ROUTING = """route:
  receiver: {receiver}
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: {receiver}
    webhook_configs:
      - url: http://127.0.0.1:9/hook
"""


def queued(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT receiver, integration, group_key FROM notifications ORDER BY id").fetchall()


def test_restart_does_not_renotify_and_reload_refuses_then_applies_routing(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yml").write_text(RULE)
    routing = tmp_path / "alertmanager.yml"
    routing.write_text(ROUTING.format(receiver="first"))
    config = tmp_path / "config.yaml"
    config.write_text("alerting:\n  rule_files: [rules/*.yml]\n  default_rules: false\n"
                      "  notifications: alertmanager.yml\n")
    data = tmp_path / "data"
    data.mkdir()
    db = data / "fleetdeck.db"
    console = ConsoleProcess(data, FLEETDECK_CONFIG=str(config))
    console.start()
    try:
        group = ("first", "webhook[0]", '{}:{}')  # no group_by: one group for the receiver
        wait_for(lambda: queued(db) == [group], 30, "the firing rule to be queued")
        time.sleep(3)  # three more evaluations and flushes: nothing new
        assert queued(db) == [group]
        console.stop()
        console.start()
        time.sleep(4)  # the alert is restored, fires, is routed and flushed at once: already notified
        assert queued(db) == [group]

        token = subprocess.run([sys.executable, "-m", "console.cli", "token", "create", "--name", "admin-t",
                                "--role", "admin"], env=console.env, cwd=REPO, capture_output=True, text=True,
                               timeout=120, check=True).stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {token}"}
        routing.write_text(ROUTING.format(receiver="second").replace("  receiver: second", "  receiver: third"))
        resp = http("POST", console.url + "/-/reload", headers=auth)
        assert resp.status == 422, resp.body
        assert resp.json()["error"]["code"] == "config_refused"  # no rule file was refused
        assert resp.json()["error"]["details"]["errors"] == {
            "alerting.notifications": f"alerting.notifications.route.receiver: undefined receiver 'third' used in "
                                      f"route (from {routing} line 2)"}
        # `fleetdeck rules reload` says it (the same POST, exit 1).
        cli = subprocess.run([sys.executable, "-m", "console.cli", "rules", "reload"],
                             env={**console.env, "FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": token}, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert (f"the notification routing was refused, the previous one keeps running: alerting.notifications."
                f"route.receiver: undefined receiver 'third' used in route (from {routing} line 2)") in cli.stderr
        # In the terminal's language: the console translates each part of the refusal.
        no_locale = {k: v for k, v in console.env.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
        zh = subprocess.run([sys.executable, "-m", "console.cli", "rules", "reload"],
                            env={**no_locale, "FLEETDECK_URL": console.url, "FLEETDECK_TOKEN": token,
                                 "LANG": "zh_CN.UTF-8"}, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert zh.returncode == 1, zh.stdout + zh.stderr
        assert (f"通知路由被拒绝，之前的路由继续运行：alerting.notifications.route.receiver：路由中使用了未定义的接收者 "
                f"'third'（来自 {routing} 第 2 行）") in zh.stderr, zh.stderr
        time.sleep(2)
        assert queued(db) == [group]  # the previous routing keeps running
        routing.write_text(ROUTING.format(receiver="second"))
        resp = http("POST", console.url + "/-/reload", headers=auth)
        assert resp.status == 200, resp.body
        wait_for(lambda: queued(db) == [group, ("second", "webhook[0]", "{}:{}")], 30,
                 "the new receiver to be notified")
    finally:
        console.stop()
