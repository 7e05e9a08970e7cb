"""Two real console processes sharing one database (a PostgreSQL schema, or one SQLite
file): what one of them keeps must hold on the other (docs/scaling.md). A recording
rule's series, evaluated by the leader, is answered by the follower and stored once per
evaluation across a leader change; an alerting rule's alert, evaluated by the leader, is
listed alike by the follower's Alertmanager API and kept firing across a leader change;
alerts posted to both consoles are grouped and notified once, by the leader, at a real
webhook receiver; a silence or maintenance
window made on one console mutes on the other within 2 s; failed logins on both consoles
lock out at the configured count."""
from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from tests.conftest import database_url
from tests.harness import CookieSession, http, wait_for
from tests.integration.notify_peers import HttpReceiver
from tests.integration.procs import ConsoleProcess

REPO = Path(__file__).resolve().parents[2]
AM = "/alertmanager/api/v2"
LOGIN_LIMIT = 3

RULES = """groups:
  - name: shared-rec
    interval: 1s
    rules:
      - record: replica:probe:sum
        expr: sum(vector(2))
        labels: {source: rule}
  - name: shared-alert
    interval: 1s
    rules:
      - alert: ReplicaRuleAlert
        expr: vector(1)
        labels: {severity: page}
"""

CONFIG = """console:
  login_failures_per_user: %(limit)d
alerting:
  default_rules: false
  rule_files: [rules.yml]
  delivery: {poll_interval: 0.2, backoff_initial: 0.2, backoff_max: 1.0, timeout: 5.0}
  notifications:
    route:
      receiver: hook
      group_by: [alertname]
      group_wait: 2s
      group_interval: 2s
      repeat_interval: 1h
    receivers:
      - name: hook
        webhook_configs:
          - url: %(hook)s/hook
"""


class Pair:
    def __init__(self, consoles: list[ConsoleProcess], url: str, kind: str, hook: HttpReceiver) -> None:
        self.consoles, self.url, self.kind, self.hook = consoles, url, kind, hook
        self.token = consoles[0].api_token("shared-" + uuid.uuid4().hex[:6], "admin")

    def roles(self) -> tuple[ConsoleProcess, ConsoleProcess]:
        """(leader, follower), once exactly one of them leads."""
        def settled():
            gauges = [leader_gauge(c) for c in self.consoles]
            return sorted(gauges) == [0.0, 1.0] and gauges
        gauges = wait_for(settled, 20, "exactly one leader")
        leader = self.consoles[gauges.index(1.0)]
        return leader, next(c for c in self.consoles if c is not leader)

    def request(self, console: ConsoleProcess, method: str, path: str, body=None):  # noqa: ANN001, ANN201
        data = json.dumps(body).encode() if body is not None else None
        resp = http(method, console.url + path, data,
                    {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}, timeout=10)
        assert resp.status < 300, (resp.status, resp.body[:300])
        return json.loads(resp.body) if resp.body else None

    def deliveries(self, alertname: str) -> list[dict]:
        out = []
        for received in list(self.hook.received):
            doc = received.json()
            if doc.get("groupLabels", {}).get("alertname") == alertname:
                out.append(doc)
        return out


def leader_gauge(console: ConsoleProcess) -> float:
    body = http("GET", console.url + "/metrics", timeout=5).body.decode()
    return float(re.search(r"^fleetdeck_leader (\S+)$", body, re.M).group(1))


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"shared-{request.param}")
    hook = HttpReceiver().start()
    (root / "rules.yml").write_text(RULES)
    (root / "config.yaml").write_text(CONFIG % {"limit": LOGIN_LIMIT, "hook": hook.url})
    with database_url(request.param, tmp_path_factory) as url:
        env = {"FLEETDECK_DATABASE_URL": url, "FLEETDECK_CONFIG": str(root / "config.yaml"),
               "FLEETDECK_COOKIE_SECRET": secrets.token_urlsafe(48),
               "FLEETDECK_SECRET_KEY": Fernet.generate_key().decode()}
        consoles = [ConsoleProcess(root / f"console-{i}", **env) for i in range(2)]
        try:
            for console in consoles:
                console.data_dir.mkdir()
                console.start()  # one after the other: the first migrates the schema
            yield Pair(consoles, url, request.param, hook)
        finally:
            for console in consoles:
                console.stop()
            hook.close()


def test_a_recorded_series_is_stored_once_per_evaluation_and_queried_on_the_follower(pair):
    leader, follower = pair.roles()

    def instant(console: ConsoleProcess) -> list:
        return pair.request(console, "GET", "/prometheus/api/v1/query?query=replica:probe:sum")["data"]["result"]
    got = wait_for(lambda: instant(follower), 10, "the follower to answer the recorded series")
    # The rule's labels as Prometheus gives them: no host, instance or job added.
    assert [r["metric"] for r in got] == [{"__name__": "replica:probe:sum", "source": "rule"}]
    assert got[0]["value"][1] == "2"

    def last_seconds() -> list:
        now = time.time()
        return pair.request(follower, "GET", "/prometheus/api/v1/query_range?" + urlencode(
            {"query": "replica:probe:sum", "start": now - 3, "end": now, "step": 1}))["data"]["result"]
    # The first evaluation may be under 3 s old when the instant query first answers.
    def three_seconds() -> list | None:
        result = last_seconds()
        return result if result and all(len(r["values"]) >= 3 for r in result) else None
    ranged = wait_for(three_seconds, 10, "3 s of recorded samples")
    assert len(ranged) == 1 and len(ranged[0]["values"]) >= 3
    # Not a host: the host list leaves the rules' row out.
    assert "fleetdeck:rules" not in [h["host"] for h in pair.request(follower, "GET", "/api/v1/hosts")]

    leader.kill9()  # the follower takes over and records on from the next evaluation
    wait_for(lambda: leader_gauge(follower) == 1.0, 15, "the follower to lead")
    handed_over = time.time()
    wait_for(lambda: samples(pair.url, since=handed_over), 10, "the new leader to record")
    leader.start()
    stamps, batches = samples_and_batches(pair.url)
    # One sample per evaluation, each at the group's grid time (the same on every console):
    # never two evaluations in one interval, whichever console made them.
    assert len({t % 1000 for t in stamps}) == 1, stamps
    assert all(b - a >= 1000 for a, b in zip(stamps, stamps[1:])), stamps
    assert batches == len(stamps)  # one batch, its id the group and time, per evaluation


def samples_and_batches(url: str) -> tuple[list[int], int]:
    """The recorded series' sample times and the count of the rules' ingest batches, read
    by one statement, so from one snapshot: the consoles go on evaluating every second,
    and with two reads an evaluation committed between them counts in one only."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT s.ts, (SELECT count(*) FROM ingest_batches b JOIN hosts h ON h.id = b.host_id "
                "WHERE h.name = 'fleetdeck:rules') FROM samples s JOIN series r ON r.id = s.series_id "
                "WHERE r.name = 'replica:probe:sum' ORDER BY s.ts")).all()
    finally:
        engine.dispose()
    return [ts for ts, _ in rows], rows[0][1] if rows else 0


def samples(url: str, since: float = 0.0) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [ts for (ts,) in conn.execute(text(
                "SELECT s.ts FROM samples s JOIN series r ON r.id = s.series_id "
                "WHERE r.name = 'replica:probe:sum' AND s.ts >= :since ORDER BY s.ts"), {"since": int(since * 1000)})]
    finally:
        engine.dispose()


def rule_alerts(pair: Pair, console: ConsoleProcess) -> list[dict]:
    """The console's Alertmanager API answer for the rule's alert: labels, state, startsAt."""
    return [{"labels": a["labels"], "state": a["status"]["state"], "startsAt": a["startsAt"]}
            for a in pair.request(console, "GET", f"{AM}/alerts") if a["labels"]["alertname"] == "ReplicaRuleAlert"]


def prom_alerts(pair: Pair, console: ConsoleProcess) -> list[dict]:
    return [{k: a[k] for k in ("labels", "state", "activeAt")}
            for a in pair.request(console, "GET", "/prometheus/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == "ReplicaRuleAlert"]


def ends_at(pair: Pair, console: ConsoleProcess) -> datetime:
    found = [a for a in pair.request(console, "GET", f"{AM}/alerts") if a["labels"]["alertname"] == "ReplicaRuleAlert"]
    return datetime.fromisoformat(found[0]["endsAt"].replace("Z", "+00:00"))


def test_a_rule_alert_of_the_leader_is_listed_alike_by_every_console_and_across_a_leader_kill(pair):
    leader, follower = pair.roles()
    on_leader = wait_for(lambda: rule_alerts(pair, leader), 10, "the leader to list its rule alert")
    assert [{k: a[k] for k in ("labels", "state")} for a in on_leader] == [
        {"labels": {"alertname": "ReplicaRuleAlert", "severity": "page"}, "state": "active"}]
    started = datetime.fromisoformat(on_leader[0]["startsAt"].replace("Z", "+00:00"))
    assert started.timestamp() <= time.time()
    # Only the leader evaluates; the follower lists what the leader stored, within seconds.
    wait_for(lambda: rule_alerts(pair, follower) == on_leader, 5, "the follower to list the rule alert")
    # The Prometheus API, read from the followed rule state, answers alike too.
    assert prom_alerts(pair, follower) == prom_alerts(pair, leader) != []
    before = ends_at(pair, follower)

    leader.kill9()  # the follower takes over and keeps the alert firing from the stored state
    wait_for(lambda: leader_gauge(follower) == 1.0, 15, "the follower to lead")
    # Re-sent by the new leader's evaluations: same alert, same start, a later end.
    wait_for(lambda: ends_at(pair, follower) > before + timedelta(seconds=2), 10, "the new leader to re-send it")
    assert rule_alerts(pair, follower) == on_leader
    leader.start()  # back as a follower: it lists the same alert as the new leader
    wait_for(lambda: rule_alerts(pair, leader) == on_leader, 10, "the restarted console to list the rule alert")
    assert rule_alerts(pair, follower) == on_leader


def test_alerts_posted_to_both_consoles_are_grouped_and_notified_once_by_the_leader(pair):
    leader, follower = pair.roles()
    name = "Shared" + uuid.uuid4().hex[:8]
    pair.request(follower, "POST", f"{AM}/alerts", [{"labels": {"alertname": name, "instance": "a"}}])
    pair.request(leader, "POST", f"{AM}/alerts", [{"labels": {"alertname": name, "instance": "b"}}])
    wait_for(lambda: pair.deliveries(name), 15, "the notification")
    time.sleep(4)  # two group intervals: a second grouping would have notified by now
    sent = pair.deliveries(name)
    assert len(sent) == 1, sent
    assert sorted(a["labels"]["instance"] for a in sent[0]["alerts"]) == ["a", "b"]
    assert sent[0]["status"] == "firing"
    # Both resolved through the follower only: the leader notifies the resolution, once.
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    pair.request(follower, "POST", f"{AM}/alerts", [{"labels": {"alertname": name, "instance": i}, "endsAt": ended}
                                                    for i in ("a", "b")])
    wait_for(lambda: len(pair.deliveries(name)) == 2, 15, "the resolved notification")
    time.sleep(3)
    sent = pair.deliveries(name)
    assert len(sent) == 2 and sent[1]["status"] == "resolved", sent
    # Every console lists the posted alerts (here: none left active).
    for console in pair.consoles:
        assert [a for a in pair.request(console, "GET", f"{AM}/alerts") if a["labels"]["alertname"] == name] == []


def test_a_silence_or_window_made_on_one_console_mutes_on_the_other_within_2s(pair):
    leader, follower = pair.roles()
    name = "Silenced" + uuid.uuid4().hex[:8]
    pair.request(leader, "POST", f"{AM}/alerts", [{"labels": {"alertname": name, "instance": "a"}}])
    made = time.monotonic()
    silence = pair.request(follower, "POST", f"{AM}/silences", {
        "matchers": [{"name": "alertname", "value": name, "isRegex": False}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600)),
        "createdBy": "test", "comment": "shared"})["silenceID"]

    def status(console: ConsoleProcess) -> dict | None:
        found = [a for a in pair.request(console, "GET", f"{AM}/alerts") if a["labels"]["alertname"] == name]
        return found[0]["status"] if found else None
    wait_for(lambda: (status(leader) or {}).get("silencedBy") == [silence], 2, "the leader to apply the silence")
    assert time.monotonic() - made < 2
    assert silence in [s["id"] for s in pair.request(leader, "GET", f"{AM}/silences")]
    time.sleep(3)  # past group_wait: the leader's dispatcher left the silenced alert out
    assert pair.deliveries(name) == []
    # Expired on the leader: the follower's API sees it at once, and the leader notifies.
    pair.request(leader, "DELETE", f"{AM}/silence/{silence}")
    expired = time.monotonic()
    wait_for(lambda: next(s["status"]["state"] for s in pair.request(follower, "GET", f"{AM}/silences")
                          if s["id"] == silence) == "expired", 2, "the follower to see the expiry")
    assert time.monotonic() - expired < 2
    wait_for(lambda: pair.deliveries(name), 10, "the notification once the silence ended")

    # A maintenance window made on one console mutes on the other.
    window = "w" + uuid.uuid4().hex[:8]
    muted = "Window" + uuid.uuid4().hex[:8]
    pair.request(leader, "POST", f"{AM}/alerts", [{"labels": {"alertname": muted, "instance": "a"}}])
    pair.request(follower, "POST", "/api/v1/maintenance/windows", {
        "name": window, "dtstart": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 60)),
        "duration": "1h", "rrule": "FREQ=DAILY", "timezone": "UTC", "matchers": [f'alertname="{muted}"']})
    made = time.monotonic()

    def muted_by() -> list:
        found = [a for a in pair.request(leader, "GET", f"{AM}/alerts") if a["labels"]["alertname"] == muted]
        return found[0]["status"]["mutedBy"] if found else []
    wait_for(lambda: muted_by() == [f"window:{window}"], 2, "the leader to apply the window")
    assert time.monotonic() - made < 2
    time.sleep(3)
    assert pair.deliveries(muted) == []  # muted on the leader, which notifies
    pair.request(follower, "DELETE", f"/api/v1/maintenance/windows/{window}")
    deleted = time.monotonic()
    wait_for(lambda: muted_by() == [], 2, "the leader to drop the window")
    assert time.monotonic() - deleted < 2
    wait_for(lambda: pair.deliveries(muted), 10, "the notification once the window was deleted")


def test_failed_logins_on_both_consoles_lock_out_at_the_configured_count(pair):
    first, second = pair.consoles
    name, password = f"shared-{uuid.uuid4().hex[:6]}", "shared-password-" + uuid.uuid4().hex[:8]
    subprocess.run([sys.executable, "-m", "console.cli", "user", "create", name, "--role", "viewer"], cwd=REPO,
                   env={**first.env, "FLEETDECK_PASSWORD": password}, check=True, capture_output=True, timeout=120)
    for i in range(LOGIN_LIMIT):  # alternating consoles, as a load balancer would
        console = (first, second)[i % 2]
        assert CookieSession(console.url).login(name, "wrong").status == 401
    for console in (first, second):  # the right password too is refused now, on either console
        resp = CookieSession(console.url).login(name, password)
        assert resp.status == 429, resp.status
        assert int(resp.headers["retry-after"]) > 0
