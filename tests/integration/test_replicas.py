"""Two real console processes on one PostgreSQL schema: exactly one leads and runs the
run-once jobs (here: alert evaluation, whose transitions are counted in the database);
the other follows the stored alert state; a leader killed with SIGKILL hands over at the
next poll and the new leader goes on from the stored state without firing again."""
from __future__ import annotations

import json
import re
import time

import pytest
from sqlalchemy import create_engine, text

from tests.harness import http, wait_for
from tests.integration.procs import ConsoleProcess

RULES = """groups:
  - name: replicas
    interval: 1s
    rules:
      - alert: ReplicaProbe
        expr: vector(1)
        labels: {severity: info}
"""


def leader_gauge(console: ConsoleProcess) -> float:
    body = http("GET", console.url + "/metrics", timeout=5).body.decode()
    return float(re.search(r"^fleetdeck_leader (\S+)$", body, re.M).group(1))


def firing_alerts(console: ConsoleProcess, token: str) -> list[str]:
    resp = http("GET", console.url + "/prometheus/api/v1/alerts", headers={"Authorization": f"Bearer {token}"},
                timeout=5)
    return [a["labels"]["alertname"] for a in json.loads(resp.body)["data"]["alerts"] if a["state"] == "firing"]


@pytest.fixture
def replicas(tmp_path, postgres_url):
    config = tmp_path / "config.yaml"
    (tmp_path / "rules.yml").write_text(RULES)
    config.write_text("alerting:\n  rule_files: [rules.yml]\n  default_rules: false\n")
    env = {"FLEETDECK_DATABASE_URL": postgres_url, "FLEETDECK_CONFIG": str(config)}
    consoles = [ConsoleProcess(tmp_path / f"replica-{i}", **env) for i in range(2)]
    for console in consoles:
        console.data_dir.mkdir()
    yield consoles
    for console in consoles:
        console.stop()


def test_one_replica_evaluates_the_other_follows_and_a_killed_leader_hands_over(replicas, postgres_url):
    first, second = replicas
    first.start()  # the first migrates the schema; starting both at once would race on it
    second.start()
    engine = create_engine(postgres_url)

    def transitions() -> list[str]:
        with engine.connect() as conn:
            return [state for (state,) in conn.execute(text(
                "SELECT state FROM alert_history WHERE alertname = 'ReplicaProbe' ORDER BY id"))]

    try:
        assert (leader_gauge(first), leader_gauge(second)) == (1.0, 0.0)
        token = first.api_token("replicas", "viewer")
        wait_for(lambda: transitions() == ["pending", "firing"], 20, "the leader to fire ReplicaProbe")
        # The follower answers the leader's alert from the stored state.
        wait_for(lambda: firing_alerts(second, token) == ["ReplicaProbe"], 10, "the follower to show the alert")
        time.sleep(3)  # several evaluation intervals of both replicas
        assert transitions() == ["pending", "firing"], "the alert was evaluated by both replicas"

        first.kill9()
        started = time.monotonic()
        wait_for(lambda: leader_gauge(second) == 1.0, 10, "the second replica to take over")
        handover = time.monotonic() - started
        assert handover < 10
        time.sleep(3)  # the new leader evaluates on from the stored state
        assert transitions() == ["pending", "firing"], "the new leader fired the alert again"
        assert firing_alerts(second, token) == ["ReplicaProbe"]
        # The old leader back: it follows.
        first.start()
        assert leader_gauge(first) == 0.0 and leader_gauge(second) == 1.0
        wait_for(lambda: firing_alerts(first, token) == ["ReplicaProbe"], 10, "the restarted replica to follow")
    finally:
        engine.dispose()
