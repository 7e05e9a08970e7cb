"""SIGHUP to a real ``fleetdeck serve`` re-reads its rule files; a file with an error is
refused whole while the previous rules keep running and evaluating."""
from __future__ import annotations

import signal
import subprocess
import sys

from tests.harness import http, wait_for
from tests.integration.procs import REPO, ConsoleProcess

RULE = "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: {name}\n        expr: vector(1)\n"


def test_sighup_reloads_and_a_bad_file_keeps_the_previous_rules(tmp_path):
    rules = tmp_path / "rules" / "a.yml"
    rules.parent.mkdir()
    rules.write_text(RULE.format(name="First"))
    config = tmp_path / "config.yaml"
    config.write_text("alerting:\n  rule_files: [rules/*.yml]\n  default_rules: false\n")
    console = ConsoleProcess(tmp_path / "data", FLEETDECK_CONFIG=str(config))
    (tmp_path / "data").mkdir()
    console.start()
    try:
        token = subprocess.run([sys.executable, "-m", "console.cli", "token", "create", "--name", "t", "--role",
                                "viewer"], env=console.env, cwd=REPO, capture_output=True, text=True, timeout=120,
                               check=True).stdout.strip().splitlines()[-1]
        auth = {"Authorization": f"Bearer {token}"}

        def rules_data() -> dict:
            return http("GET", console.url + "/prometheus/api/v1/rules", headers=auth).json()["data"]

        def firing() -> set:
            alerts = http("GET", console.url + "/prometheus/api/v1/alerts", headers=auth).json()["data"]["alerts"]
            return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        wait_for(lambda: firing() == {"First"}, 30, "First to fire (1 s interval)")
        rules.write_text(RULE.format(name="Second"))
        console.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: [r["name"] for g in rules_data()["groups"] for r in g["rules"]] == ["Second"], 30,
                 "SIGHUP to load Second")
        wait_for(lambda: "Second" in firing(), 30, "Second to fire")
        rules.write_text(RULE.format(name="Third") + "        for: soon\n")
        console.proc.send_signal(signal.SIGHUP)
        data = wait_for(lambda: (lambda d: d if d["fileErrors"] else None)(rules_data()), 30, "the refusal")
        assert data["fileErrors"] == [{"file": str(rules), "error": f"{rules}:7: for: not a valid duration string: "
                                                                    "'soon'"}]
        assert [r["name"] for g in data["groups"] for r in g["rules"]] == ["Second"]
        assert "fleetdeck_rules_last_reload_successful 0.0" in http("GET", console.url + "/metrics").body.decode()
        evaluated = data["groups"][0]["lastEvaluation"]
        wait_for(lambda: rules_data()["groups"][0]["lastEvaluation"] != evaluated, 30, "Second to keep evaluating")
        assert console.proc.poll() is None
    finally:
        console.stop()
