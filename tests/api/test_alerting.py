"""Alerting over HTTP on a real console: rule files, the state machine (for,
keep_firing_for, recover_expr, for_resolved), restart, reload, history and the
Prometheus-shaped API. Samples go through the real ingest API; the console's clock is
controlled by the test, and each evaluation runs the service's real group evaluation at
that time (groups have a 1 h interval so the timer never interferes)."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from console.alerting.handlers import rfc3339
from console.config import AlertingConfig
from tests.conftest import database_url, need
from tests.harness import ConsoleHarness

T0 = (int(time.time()) // 60 - 60) * 60  # a whole minute, an hour ago (Unix s)
API = "/prometheus/api/v1"
REPO = Path(__file__).resolve().parents[2]

RULES = """
groups:
  - name: test
    interval: 1h
    rules:
      - alert: TempHigh
        expr: al_temp > 50
        for: 2m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} is at {{ $value }}"
      - alert: KeepFiring
        expr: al_kf > 0
        keep_firing_for: 2m
      - alert: Recover
        expr: al_rc > 80
        recover_expr: al_rc < 50
      - alert: Flapping
        expr: al_fr > 80
        annotations:
          fleetdeck_for_resolved: 2m
      - alert: FlappingPlain
        expr: al_fr > 80
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def start(data_dir: Path, rules: Path, clock: Clock, default_rules: bool = False,
          database_url: str | None = None) -> ConsoleHarness:
    config = AlertingConfig(rule_files=[str(rules)], evaluation_interval=3600.0, default_rules=default_rules)
    return ConsoleHarness(data_dir, database_url=database_url, alerting=config, clock=clock).start()


def evaluate(console: ConsoleHarness, clock: Clock, at: float) -> list:
    clock.now = at
    return asyncio.run_coroutine_threadsafe(console.services.alerting.evaluate_all(at), console.loop).result(60)


def alerts(console: ConsoleHarness, token: str) -> dict:
    resp = console.request("GET", f"{API}/alerts", token=token)
    assert resp.status == 200, resp.body
    return {a["labels"]["alertname"]: a for a in resp.json()["data"]["alerts"]}


def history(console: ConsoleHarness, token: str, **params) -> list:
    resp = console.request("GET", f"/api/v1/alerts/history?{urlencode(params)}", token=token)
    assert resp.status == 200, resp.body
    return [(t["alertname"], t["state"], t["ts"]) for t in reversed(resp.json()["transitions"])]


def push(console: ConsoleHarness, token: str, host: str, name: str, points: list, labels: dict | None = None) -> None:
    """Samples at T0 + t; the console's clock is moved to the last one first (the ingest
    refuses samples further ahead of its clock than sample_max_future)."""
    clock = console.services.clock
    clock.now = max(clock.now, T0 + max(t for t, _ in points))
    status, body = console.push(host, token, [{"name": name, "type": "gauge", "labels": labels or {},
                                               "points": [[(T0 + t) * 1000, float(v)] for t, v in points]}])
    assert status == 200, body
    assert "rejected" not in body, body


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "test.rules.yml"
    path.write_text(RULES)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def setup(request, tmp_path_factory, rules_file):
    with database_url(request.param, tmp_path_factory) as url:
        data_dir = tmp_path_factory.mktemp("alerting")
        clock = Clock(T0)
        console = start(data_dir, rules_file, clock, database_url=url)
        agent = console.agent_token("al-1")
        viewer = console.api_token("viewer")
        try:
            yield console, clock, agent, viewer, data_dir
        finally:
            console.close()


def test_for_pending_then_firing_then_resolved_with_history_and_alerts_series(setup):
    console, clock, agent, viewer, _ = setup
    push(console, agent, "al-1", "al_temp", [(0, 10), (30, 60), (60, 60), (90, 60), (120, 60), (150, 60), (180, 10)])
    evaluate(console, clock, T0)
    assert "TempHigh" not in alerts(console, viewer)
    evaluate(console, clock, T0 + 30)
    a = alerts(console, viewer)["TempHigh"]
    assert a["state"] == "pending"
    assert a["labels"] == {"alertname": "TempHigh", "severity": "page", "host": "al-1", "instance": "al-1",
                           "job": "node"}
    assert a["annotations"] == {"summary": "al-1 is at 60"}
    assert (a["value"], a["activeAt"]) == ("6e+01", rfc3339(T0 + 30))  # Go's FormatFloat(v, 'e', -1), RFC 3339
    evaluate(console, clock, T0 + 120)  # 90 s of 120 s
    assert alerts(console, viewer)["TempHigh"]["state"] == "pending"
    evaluate(console, clock, T0 + 150)
    assert alerts(console, viewer)["TempHigh"]["state"] == "firing"
    # ALERTS and ALERTS_FOR_STATE as Prometheus writes them
    resp = console.request("GET", f"{API}/query?" + urlencode(
        {"query": 'ALERTS{alertname="TempHigh"}', "time": T0 + 150}), token=viewer)
    result = resp.json()["data"]["result"]
    assert [(r["metric"]["alertstate"], r["value"][1]) for r in result] == [("firing", "1")]
    resp = console.request("GET", f"{API}/query?" + urlencode(
        {"query": 'ALERTS_FOR_STATE{alertname="TempHigh"}', "time": T0 + 150}), token=viewer)
    assert [r["value"][1] for r in resp.json()["data"]["result"]] == [str(T0 + 30)]
    rules = console.request("GET", f"{API}/rules", token=viewer).json()["data"]["groups"][0]["rules"]
    temp = next(r for r in rules if r["name"] == "TempHigh")
    assert (temp["state"], temp["duration"], temp["health"], temp["type"]) == ("firing", 120, "ok", "alerting")
    evaluate(console, clock, T0 + 180)
    assert "TempHigh" not in alerts(console, viewer)
    assert history(console, viewer, alertname="TempHigh", since=T0 - 1, until=T0 + 1000) == [
        ("TempHigh", "pending", T0 + 30), ("TempHigh", "firing", T0 + 150), ("TempHigh", "resolved", T0 + 180)]
    assert history(console, viewer, alertname="TempHigh", instance="other", since=T0 - 1, until=T0 + 1000) == []


def test_keep_firing_for_holds_a_firing_alert_after_its_series_is_gone(setup):
    console, clock, agent, viewer, _ = setup
    base = 400
    push(console, agent, "al-1", "al_kf", [(base, 1), (base + 30, 0), (base + 60, 0), (base + 150, 0), (base + 180, 0)])
    evaluate(console, clock, T0 + base)
    assert alerts(console, viewer)["KeepFiring"]["state"] == "firing"  # for 0: pending and firing at once
    evaluate(console, clock, T0 + base + 30)
    kf = alerts(console, viewer)["KeepFiring"]
    assert kf["state"] == "firing" and "keepFiringSince" in kf
    evaluate(console, clock, T0 + base + 140)  # 110 s < 120 s
    assert alerts(console, viewer)["KeepFiring"]["state"] == "firing"
    evaluate(console, clock, T0 + base + 150)  # 120 s
    assert "KeepFiring" not in alerts(console, viewer)
    assert history(console, viewer, alertname="KeepFiring", since=T0, until=T0 + 1000) == [
        ("KeepFiring", "pending", T0 + base), ("KeepFiring", "firing", T0 + base),
        ("KeepFiring", "resolved", T0 + base + 150)]


def test_recover_expr_keeps_firing_until_the_recovery_condition_holds(setup):
    console, clock, agent, viewer, _ = setup
    base = 700
    push(console, agent, "al-1", "al_rc", [(base, 90), (base + 30, 70), (base + 60, 55), (base + 90, 40)])
    evaluate(console, clock, T0 + base)
    assert alerts(console, viewer)["Recover"]["state"] == "firing"
    for t in (30, 60):  # below the threshold but not yet recovered
        evaluate(console, clock, T0 + base + t)
        assert alerts(console, viewer)["Recover"]["state"] == "firing", t
    evaluate(console, clock, T0 + base + 90)
    assert "Recover" not in alerts(console, viewer)
    assert history(console, viewer, alertname="Recover", since=T0, until=T0 + 2000)[-1] == (
        "Recover", "resolved", T0 + base + 90)


def test_for_resolved_stops_a_flapping_series_from_resolving_and_refiring(setup):
    console, clock, agent, viewer, _ = setup
    base = 1000
    values = [(0, 90), (30, 70), (60, 90), (90, 70), (120, 70), (150, 70), (180, 70), (210, 70)]
    push(console, agent, "al-1", "al_fr", [(base + t, v) for t, v in values])
    states = []
    for t, _ in values:
        evaluate(console, clock, T0 + base + t)
        now = alerts(console, viewer)
        states.append((now.get("Flapping", {}).get("state"), now.get("FlappingPlain", {}).get("state")))
    assert states == [("firing", "firing"), ("firing", None), ("firing", "firing"), ("firing", None),
                      ("firing", None), ("firing", None), ("firing", None), (None, None)]
    flapping = history(console, viewer, alertname="Flapping", since=T0 + base, until=T0 + base + 300)
    plain = history(console, viewer, alertname="FlappingPlain", since=T0 + base, until=T0 + base + 300)
    assert [s for _, s, _ in flapping] == ["pending", "firing", "resolved"]
    assert flapping[-1][2] == T0 + base + 210  # clear since +90, for 120 s
    assert [s for _, s, _ in plain] == ["pending", "firing", "resolved", "pending", "firing", "resolved"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_restart_mid_for_and_while_firing_resumes_the_stored_state(kind, tmp_path, tmp_path_factory, rules_file):
    with database_url(kind, tmp_path_factory) as url:
        restart_mid_for_and_while_firing(tmp_path, rules_file, url)


def restart_mid_for_and_while_firing(tmp_path, rules_file, url):
    clock = Clock(T0)
    console = start(tmp_path, rules_file, clock, database_url=url)
    try:
        agent, viewer = console.agent_token("al-2"), console.api_token("viewer")
        push(console, agent, "al-2", "al_temp", [(t, 60) for t in range(0, 301, 30)])
        push(console, agent, "al-2", "al_kf", [(t, 1) for t in range(0, 301, 30)])
        evaluate(console, clock, T0 + 30)
        assert alerts(console, viewer)["TempHigh"]["state"] == "pending"
        assert alerts(console, viewer)["KeepFiring"]["state"] == "firing"
    finally:
        console.close()
    console = start(tmp_path, rules_file, clock, database_url=url)
    try:
        viewer = console.api_token("viewer")
        restored = alerts(console, viewer)
        assert (restored["TempHigh"]["state"], restored["KeepFiring"]["state"]) == ("pending", "firing")
        evaluate(console, clock, T0 + 150)  # 120 s after the pending alert became active: fires, not restarts
        assert alerts(console, viewer)["TempHigh"]["state"] == "firing"
        assert alerts(console, viewer)["TempHigh"]["activeAt"] == rfc3339(T0 + 30)
        assert history(console, viewer, since=T0, until=T0 + 1000) == [
            ("TempHigh", "pending", T0 + 30), ("KeepFiring", "pending", T0 + 30),
            ("KeepFiring", "firing", T0 + 30), ("TempHigh", "firing", T0 + 150)]  # no second firing
    finally:
        console.close()


def test_reload_with_a_bad_file_keeps_the_previous_rules_and_reports_the_error(tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text("groups:\n  - name: g\n    interval: 1h\n    rules:\n      - alert: Old\n        expr: vector(1)\n")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        admin, viewer = console.api_token("admin"), console.api_token("viewer")
        rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: New\n        expr: vector(1)\n"
                         "        annotations:\n          summary: '{{ range $labels }}x{{ end }}'\n")
        resp = console.request("POST", "/-/reload", token=admin)
        assert resp.status == 422, resp.body
        error = resp.json()["error"]
        assert error["code"] == "rule_files_refused"
        assert error["details"]["errors"][str(rules)].startswith(f"{rules}:7: annotation 'summary'")
        data = console.request("GET", f"{API}/rules", token=viewer).json()["data"]
        assert [r["name"] for g in data["groups"] for r in g["rules"]] == ["Old"]
        assert data["fileErrors"][0]["file"] == str(rules)
        metrics = console.request("GET", "/metrics").body.decode()
        assert "fleetdeck_rules_last_reload_successful 0.0" in metrics
        assert "fleetdeck_rule_file_errors 1.0" in metrics
        evaluate(console, clock, T0)
        assert "Old" in alerts(console, viewer)
        assert console.request("POST", "/-/reload", token=viewer).status == 403
        rules.write_text(rules.read_text().replace("{{ range $labels }}x{{ end }}", "{{ $value }}"))
        resp = console.request("POST", "/-/reload", token=admin)
        assert resp.status == 200, resp.body
        # the stored state of the rule that is gone goes with it
        assert console.count("alert_state") == 0
        data = console.request("GET", f"{API}/rules", token=viewer).json()["data"]
        assert [r["name"] for g in data["groups"] for r in g["rules"]] == ["New"]
        assert data["fileErrors"] == []
        assert "fleetdeck_rules_last_reload_successful 1.0" in console.request("GET", "/metrics").body.decode()
    finally:
        console.close()


def test_bad_parameters_are_answered_as_errors(setup):
    console, _, _, viewer, _ = setup
    for query, status, code in [("since=yesterday", 400, "invalid_parameter"), ("limit=0", 400, "invalid_parameter"),
                                ("limit=10001", 400, "invalid_parameter"), ("limit=%C2%B2", 400, "invalid_parameter"),
                                (f"since={T0 + 10}&until={T0}", 422, "invalid_range")]:
        resp = console.request("GET", f"/api/v1/alerts/history?{query}", token=viewer)
        assert (resp.status, resp.json()["error"]["code"]) == (status, code), query
    resp = console.request("GET", f"{API}/rules?type=bogus", token=viewer)
    assert (resp.status, resp.json()["errorType"]) == (400, "bad_data")
    assert console.request("GET", f"{API}/rules?type=record", token=viewer).json()["data"]["groups"][0]["rules"] == []
    assert console.request("GET", "/api/v1/alerts/history").status == 401


def test_shipped_rule_files_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        need("prometheus", "promtool is not installed")
    shipped = sorted(str(p) for p in (REPO / "console" / "alerting").glob("*.yml"))
    assert shipped
    result = subprocess.run([promtool, "check", "rules", *shipped], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_filling_disk_fires_the_default_rule_and_resolves_when_space_is_freed(tmp_path):
    empty = tmp_path / "none.yml"
    empty.write_text("groups: []\n")
    clock = Clock(T0)
    console = start(tmp_path / "data", empty, clock, default_rules=True)
    try:
        agent, viewer = console.agent_token("disk-1"), console.api_token("viewer")
        labels = {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}
        size = 100e9
        avail = [(t, size * max(0.5 - t / 1000, 0.04)) for t in range(0, 1201, 60)]  # 50 % -> 4 % free
        avail += [(t, size * 0.6) for t in range(1260, 1500, 60)]  # space freed
        push(console, agent, "disk-1", "node_filesystem_avail_bytes", avail, labels)
        push(console, agent, "disk-1", "node_filesystem_size_bytes", [(t, size) for t, _ in avail], labels)
        push(console, agent, "disk-1", "node_filesystem_readonly", [(t, 0) for t, _ in avail], labels)
        fired_at = None
        for t in range(0, 1201, 60):
            evaluate(console, clock, T0 + t)
            state = alerts(console, viewer).get("HostFilesystemAlmostFull", {}).get("state")
            if state == "firing" and fired_at is None:
                fired_at = t
        # 14 % free at t=360, 8 % at 420: pending at 420, firing `for` (5 min) later
        assert fired_at == 720
        firing = alerts(console, viewer)
        assert firing["HostFilesystemAlmostFull"]["labels"]["instance"] == "disk-1"
        assert firing["HostFilesystemAlmostFull"]["labels"]["mountpoint"] == "/"
        assert firing["HostFilesystemAlmostFull"]["annotations"]["runbook_url"] == "docs/alerting.md#hostfilesystemalmostfull"
        evaluate(console, clock, T0 + 1260)
        assert "HostFilesystemAlmostFull" not in alerts(console, viewer)
        assert history(console, viewer, alertname="HostFilesystemAlmostFull", instance="disk-1",
                       since=T0, until=T0 + 2000) == [
            ("HostFilesystemAlmostFull", "pending", T0 + 420), ("HostFilesystemAlmostFull", "firing", T0 + 720),
            ("HostFilesystemAlmostFull", "resolved", T0 + 1260)]
    finally:
        console.close()


def test_up_is_derived_from_heartbeats_and_host_down_fires(tmp_path):
    empty = tmp_path / "none.yml"
    empty.write_text("groups: []\n")
    clock = Clock(T0)
    console = start(tmp_path / "data", empty, clock, default_rules=True)
    try:
        agent, viewer = console.agent_token("up-1"), console.api_token("viewer")
        push(console, agent, "up-1", "al_x", [(0, 1)])  # heartbeat at T0 (interval 10 s, 3 missed = down)

        def up(at):
            resp = console.request("GET", f"{API}/query?" + urlencode({"query": 'up{instance="up-1"}', "time": at}),
                                   token=viewer)
            return [(r["metric"]["job"], r["value"][1]) for r in resp.json()["data"]["result"]]
        clock.now = T0 + 60
        assert up(T0 + 20) == [("node", "1")]
        assert up(T0 + 40) == [("node", "0")]
        evaluate(console, clock, T0 + 60)
        assert alerts(console, viewer)["HostDown"]["state"] == "pending"
        evaluate(console, clock, T0 + 180)
        assert alerts(console, viewer)["HostDown"]["state"] == "firing"
    finally:
        console.close()


def test_absent_limit_duplicates_and_the_evaluation_deadline(tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text("""groups:
  - name: misc
    interval: 1h
    rules:
      - alert: Missing
        expr: absent(al_never_sent{job="batch"})
  - name: limited
    interval: 1h
    limit: 1
    rules:
      - alert: TooMany
        expr: al_many > 0
      - alert: Duplicate
        expr: al_many * 0 + 1
        labels: {k: same}
""")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        agent, viewer = console.agent_token("lim-1"), console.api_token("viewer")
        push(console, agent, "lim-1", "al_many", [(0, 1)], {"k": "a"})
        push(console, agent, "lim-1", "al_many", [(0, 1)], {"k": "b"})
        evaluate(console, clock, T0)
        firing = alerts(console, viewer)
        assert firing["Missing"]["labels"] == {"alertname": "Missing", "job": "batch"}
        groups = {g["name"]: g for g in console.request("GET", f"{API}/rules", token=viewer).json()["data"]["groups"]}
        too_many, duplicate = groups["limited"]["rules"]
        assert (too_many["health"], too_many["lastError"]) == ("err", "exceeded limit of 1 with 2 alerts")
        assert too_many["alerts"] == []
        assert duplicate["health"] == "err"
        assert duplicate["lastError"] == "vector contains metrics with the same labelset after applying alert labels"
        assert "TooMany" not in firing and "Duplicate" not in firing
        metrics = console.request("GET", "/metrics").body.decode()
        assert f'fleetdeck_rule_evaluation_failures_total{{rule_group="{rules};limited"}} 2.0' in metrics
    finally:
        console.close()
    # a deadline that has passed: the rule fails with Prometheus' timeout message, alerts unchanged
    console = ConsoleHarness(tmp_path / "data", alerting=AlertingConfig(rule_files=[str(rules)], default_rules=False),
                             clock=clock, promql_timeout=1e-9).start()
    try:
        viewer = console.api_token("viewer")
        assert "Missing" in alerts(console, viewer)  # restored
        evaluate(console, clock, T0 + 60)
        groups = {g["name"]: g for g in console.request("GET", f"{API}/rules", token=viewer).json()["data"]["groups"]}
        missing = groups["misc"]["rules"][0]
        assert (missing["health"], missing["lastError"]) == ("err", "query timed out in expression evaluation")
        assert alerts(console, viewer)["Missing"]["state"] == "firing"
    finally:
        console.close()


def test_recording_rules_feed_later_rules_and_queries(tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text("""groups:
  - name: rec
    interval: 1h
    rules:
      - record: instance:al_rec:sum
        expr: sum by (instance) (al_rec)
        labels: {source: rule}
      - alert: RecHigh
        expr: instance:al_rec:sum > 10
""")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        agent, viewer = console.agent_token("rec-1"), console.api_token("viewer")
        push(console, agent, "rec-1", "al_rec", [(0, 4), (60, 8)], {"k": "a"})
        push(console, agent, "rec-1", "al_rec", [(0, 4), (60, 8)], {"k": "b"})
        evaluate(console, clock, T0)
        assert "RecHigh" not in alerts(console, viewer)
        evaluate(console, clock, T0 + 60)  # the alert reads the series recorded a moment before
        assert alerts(console, viewer)["RecHigh"]["labels"] == {"alertname": "RecHigh", "instance": "rec-1",
                                                                "source": "rule"}

        def recorded(at, query="instance:al_rec:sum"):
            resp = console.request("GET", f"{API}/query?" + urlencode({"query": query, "time": at}), token=viewer)
            return [(r["metric"], r["value"][1]) for r in resp.json()["data"]["result"]]
        metric = {"__name__": "instance:al_rec:sum", "instance": "rec-1", "source": "rule"}
        assert recorded(T0 + 30) == [(metric, "8")]
        assert recorded(T0 + 90) == [(metric, "16")]
        assert recorded(T0 + 90, "sum_over_time(instance:al_rec:sum[5m])") == [(
            {"instance": "rec-1", "source": "rule"}, "24")]
        rule = console.request("GET", f"{API}/rules?type=record", token=viewer).json()["data"]["groups"][0]["rules"]
        assert [(r["name"], r["type"], r["health"], r["labels"]) for r in rule] == [
            ("instance:al_rec:sum", "recording", "ok", {"source": "rule"})]
        evaluate(console, clock, T0 + 500)  # al_rec is older than the 5 min lookback: the series goes stale
        assert recorded(T0 + 500) == []
        assert recorded(T0 + 90) == [(metric, "16")]
    finally:
        console.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_recorded_series_are_stored_with_the_rules_labels_and_nan_is_not_recorded(tmp_path, tmp_path_factory, kind):
    with database_url(kind, tmp_path_factory) as url:
        _stored_recorded_series(tmp_path, url)


def _stored_recorded_series(tmp_path: Path, url: str) -> None:
    rules = tmp_path / "r.yml"
    rules.write_text("""groups:
  - name: stored
    interval: 1h
    rules:
      - record: al_sto:nan
        expr: sum(al_sto) / 0 * 0
      - record: al_sto:rate
        expr: al_sto * 2
""")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock, database_url=url)
    try:
        agent, viewer = console.agent_token("sto-1"), console.api_token("viewer")
        push(console, agent, "sto-1", "al_sto", [(0, 3)])
        evaluate(console, clock, T0)
        resp = console.request("GET", f"{API}/query?" + urlencode({"query": '{__name__=~"al_sto:.*"}', "time": T0}),
                               token=viewer)
        # A NaN result is not stored and does not keep the group's other rules from storing.
        # The expression kept the input's host, instance and job: the recorded series has them.
        assert [(r["metric"], r["value"][1]) for r in resp.json()["data"]["result"]] == [
            ({"__name__": "al_sto:rate", "host": "sto-1", "instance": "sto-1", "job": "node"}, "6")]
        hosts = console.request("GET", "/api/v1/hosts", token=viewer).json()
        assert [h["host"] for h in hosts] == ["sto-1"]  # the rules' own host row is not listed
        up = console.request("GET", f"{API}/query?" + urlencode({"query": "up", "time": T0}), token=viewer)
        assert [r["metric"]["host"] for r in up.json()["data"]["result"]] == ["sto-1"]
    finally:
        console.close()


def test_a_growing_agent_spool_fires_the_default_backlog_rule(tmp_path):
    empty = tmp_path / "none.yml"
    empty.write_text("groups: []\n")
    clock = Clock(T0)
    console = start(tmp_path / "data", empty, clock, default_rules=True)
    try:
        agent, viewer = console.agent_token("spool-1"), console.api_token("viewer")
        push(console, agent, "spool-1", "fleetdeck_agent_batches_queued", [(t, 10 + t // 10) for t in range(0, 2401, 60)])
        states = {}
        for t in range(0, 2401, 60):
            evaluate(console, clock, T0 + t)
            states[t] = alerts(console, viewer).get("AgentSpoolBacklog", {}).get("state")
        # over 50 queued from t=420 (52): pending there, firing 15 min later
        assert (states[360], states[420], states[1260], states[1320]) == (None, "pending", "pending", "firing")
    finally:
        console.close()


def test_a_file_refused_at_start_resumes_its_stored_alerts_once_fixed(tmp_path):
    rules = tmp_path / "r.yml"
    good = "groups:\n  - name: g\n    interval: 1h\n    rules:\n      - alert: Stored\n        expr: vector(1)\n"
    rules.write_text(good)
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        evaluate(console, clock, T0)
        assert alerts(console, console.api_token("viewer"))["Stored"]["state"] == "firing"
    finally:
        console.close()
    rules.write_text(good + "        for: later\n")
    console = start(tmp_path / "data", rules, clock)
    try:
        viewer, admin = console.api_token("viewer"), console.api_token("admin")
        assert alerts(console, viewer) == {}
        rules.write_text(good)
        assert console.request("POST", "/-/reload", token=admin).status == 200
        stored = alerts(console, viewer)["Stored"]
        assert (stored["state"], stored["activeAt"]) == ("firing", rfc3339(T0))
        evaluate(console, clock, T0 + 60)
        assert history(console, viewer, alertname="Stored", since=T0 - 1, until=T0 + 100) == [
            ("Stored", "pending", T0), ("Stored", "firing", T0)]  # not fired again
    finally:
        console.close()


def test_a_later_rule_sees_the_alerts_an_earlier_rule_of_its_group_changed(tmp_path):
    rules = tmp_path / "r.yml"
    rules.write_text("""groups:
  - name: chain
    interval: 1h
    rules:
      - alert: Watch
        expr: absent(ALERTS{alertname="Nothing"})
      - alert: First
        expr: al_chain > 0
      - alert: Second
        expr: ALERTS{alertname="First", alertstate="firing"} == 1
""")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        agent, viewer = console.agent_token("chain-1"), console.api_token("viewer")
        push(console, agent, "chain-1", "al_chain", [(0, 0), (60, 1)])
        evaluate(console, clock, T0)
        assert set(alerts(console, viewer)) == {"Watch"}
        # Watch reads ALERTS before First fires; as in Prometheus, Second still sees First in the same round
        evaluate(console, clock, T0 + 60)
        assert {name: a["state"] for name, a in alerts(console, viewer).items()} == {
            "Watch": "firing", "First": "firing", "Second": "firing"}
    finally:
        console.close()
