"""Host down end to end: a real agent process reports, is killed, and the console's own
evaluation loop fires a rule on the synthesised ``up`` series; the agent comes back and
the alert resolves."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from console.config import AlertingConfig
from tests.harness import ConsoleHarness, wait_for

REPO = Path(__file__).resolve().parents[2]
HOST = "down-agent"
RULES = f"""groups:
  - name: down
    interval: 1s
    rules:
      - alert: AgentGone
        expr: up{{instance="{HOST}"}} == 0
"""


def test_killed_agent_fires_host_down_and_resolves_when_it_returns(tmp_path):
    rules = tmp_path / "down.yml"
    rules.write_text(RULES)
    console = ConsoleHarness(tmp_path / "data", alerting=AlertingConfig(rule_files=[str(rules)], default_rules=False),
                             down_after_intervals=3.0).start()
    env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token(HOST),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    viewer = console.api_token("viewer")

    def start_agent() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "agents", "--console", console.url, "--host", HOST,
                                 "--interval", "1"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def up() -> list:
        resp = console.request("GET", "/prometheus/api/v1/query?" + urlencode({"query": f'up{{instance="{HOST}"}}'}),
                               token=viewer)
        return [r["value"][1] for r in resp.json()["data"]["result"]]

    def state() -> str | None:
        alerts = console.request("GET", "/prometheus/api/v1/alerts", token=viewer).json()["data"]["alerts"]
        return next((a["state"] for a in alerts if a["labels"]["alertname"] == "AgentGone"), None)

    agent = start_agent()
    try:
        wait_for(lambda: up() == ["1"], 60, "up == 1 while the agent reports")
        assert state() is None
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
        wait_for(lambda: state() == "firing", 30, "AgentGone to fire after the agent was killed")
        assert up() == ["0"]
        agent = start_agent()
        wait_for(lambda: state() is None, 60, "AgentGone to resolve once the agent reports again")
        history = console.request("GET", "/api/v1/alerts/history?alertname=AgentGone", token=viewer).json()
        assert [t["state"] for t in reversed(history["transitions"])] == ["pending", "firing", "resolved"]
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(30)
        console.close()
