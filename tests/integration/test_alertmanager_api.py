"""Fleetdeck as an Alertmanager for real clients: Debian's ``amtool`` (0.25) queries
alerts and adds, queries and expires silences through /alertmanager/api/v2/ with a bearer
token from ``--http.config.file``; a real Prometheus with ``alerting.alertmanagers``
pointing at the console (``path_prefix: /alertmanager``, an agent token) delivers the
alert of a rule that always fires, and a silence made with amtool marks it suppressed; alerts
list the receivers their routing sends them to, and amtool queries by receiver."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.exporters import start_process, stop_process
from tests.integration.procs import free_port

AM = "/alertmanager/api/v2"


@pytest.fixture(scope="module")
def amtool(console, tmp_path_factory):
    binary = shutil.which("amtool")
    if not binary:
        need("alertmanager", "amtool is not installed (apt-get install prometheus-alertmanager)")
    work = tmp_path_factory.mktemp("amtool")
    configs = {}
    for role in ("viewer", "deployer"):
        path = work / f"{role}.yml"
        path.write_text(json.dumps({"authorization": {"type": "Bearer",
                                                      "credentials": console.api_token(role, f"amtool-{role}")}}))
        configs[role] = path

    def run(role: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([binary, f"--alertmanager.url={console.url}/alertmanager",
                               f"--http.config.file={configs[role]}", *args],
                              capture_output=True, text=True, timeout=60)
    return run


def post_alerts(console, alerts: list) -> None:
    resp = console.request("POST", f"{AM}/alerts", alerts, token=console.api_token("deployer", "poster"))
    assert resp.status == 200, resp.body


def test_amtool_queries_alerts_and_adds_queries_expires_silences(console, amtool):
    post_alerts(console, [{"labels": {"alertname": "AmtoolDiskFull", "instance": "db-1", "severity": "page"},
                           "annotations": {"summary": "disk full on db-1"}},
                          {"labels": {"alertname": "AmtoolDiskFull", "instance": "db-2", "severity": "page"}}])
    proc = amtool("viewer", "alert", "query", "alertname=AmtoolDiskFull")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["Alertname", "Starts", "At"]
    assert [line.split()[0] for line in lines[1:]] == ["AmtoolDiskFull", "AmtoolDiskFull"]
    assert "disk full on db-1" in proc.stdout

    # A viewer may not silence.
    proc = amtool("viewer", "silence", "add", "alertname=AmtoolDiskFull", "-c", "no", "-a", "v")
    assert proc.returncode != 0 and "403" in proc.stderr + proc.stdout

    proc = amtool("deployer", "silence", "add", "alertname=AmtoolDiskFull", "instance=db-1",
                  "-c", "replacing the disk", "-a", "alice", "--duration", "1h")
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    assert len(sid) == 36 and sid.count("-") == 4

    proc = amtool("viewer", "-o", "json", "silence", "query", "alertname=AmtoolDiskFull")
    assert proc.returncode == 0, proc.stderr
    [sil] = json.loads(proc.stdout)
    assert (sil["id"], sil["createdBy"], sil["comment"], sil["status"]["state"]) == \
        (sid, "alice", "replacing the disk", "active")
    assert {(m["name"], m["value"], m["isRegex"]) for m in sil["matchers"]} == \
        {("alertname", "AmtoolDiskFull", False), ("instance", "db-1", False)}
    ends = time.mktime(time.strptime(sil["endsAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(ends - (time.time() + 3600)) < 120
    proc = amtool("viewer", "silence", "query")
    assert proc.returncode == 0 and sid in proc.stdout, proc.stderr

    # amtool's update re-posts the silence with its id: same matchers and start, a later
    # end, so it is changed in place and keeps its id.
    # (amtool 0.25's -q prints a pointer instead of the id: read its JSON output.)
    proc = amtool("deployer", "-o", "json", "silence", "update", sid, "--duration", "3h", "--comment", "longer")
    assert proc.returncode == 0, proc.stderr
    assert [s["id"] for s in json.loads(proc.stdout)] == [sid]
    doc = console.request("GET", f"{AM}/silence/{sid}", token=console.api_token("viewer", "check")).json()
    starts, ends = (time.mktime(time.strptime(doc[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("startsAt", "endsAt"))
    assert (ends - starts, doc["comment"], doc["status"]["state"]) == (3 * 3600, "longer", "active")

    # amtool hides silenced alerts unless asked (-s): db-1 is silenced by sid, db-2 is not.
    proc = amtool("viewer", "-o", "json", "alert", "query", "alertname=AmtoolDiskFull")
    assert [a["labels"]["instance"] for a in json.loads(proc.stdout)] == ["db-2"]
    proc = amtool("viewer", "-o", "json", "alert", "query", "-s", "alertname=AmtoolDiskFull")
    [silenced] = json.loads(proc.stdout)
    assert (silenced["labels"]["instance"], silenced["status"]["state"], silenced["status"]["silencedBy"]) == \
        ("db-1", "suppressed", [sid])

    proc = amtool("deployer", "silence", "expire", sid)
    assert proc.returncode == 0, proc.stderr
    time.sleep(0.01)  # the silence ends "now": a later instant sees it expired
    proc = amtool("viewer", "silence", "query")
    assert sid not in proc.stdout
    proc = amtool("viewer", "-o", "json", "silence", "query", "--expired")
    assert sid in [s["id"] for s in json.loads(proc.stdout)]
    proc = amtool("viewer", "-o", "json", "alert", "query", "alertname=AmtoolDiskFull")
    assert sorted(a["labels"]["instance"] for a in json.loads(proc.stdout)) == ["db-1", "db-2"]


@pytest.fixture(scope="module")
def prometheus(console, tmp_path_factory):
    if not shutil.which("prometheus"):
        need("prometheus", "prometheus is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prom-am")
    port = free_port()
    (work / "rules.yml").write_text(json.dumps({"groups": [{"name": "always", "interval": "1s", "rules": [
        {"alert": "PromAlwaysFiring", "expr": "vector(1)", "labels": {"severity": "info", "origin": "prometheus"},
         "annotations": {"summary": "fires forever"}}]}]}))
    config = {
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yml")],
        "alerting": {"alertmanagers": [{
            "api_version": "v2", "path_prefix": "/alertmanager",
            "authorization": {"credentials": console.agent_token("prometheus-1")},
            "static_configs": [{"targets": [f"127.0.0.1:{console.port}"]}]}]},
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    url = f"http://127.0.0.1:{port}"
    proc = start_process(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                          f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                          f"--web.external-url={url}",
                          # Re-send every second (default 1m): the first round can run before the
                          # Alertmanager list is discovered, and is then dropped.
                          "--rules.alert.resend-delay=1s"],
                         work / "log", url + "/-/ready", "prometheus")
    yield url
    stop_process(proc)


def prom_metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_prometheus_sends_its_alerts_and_amtool_silences_them(console, prometheus, amtool):
    viewer = console.api_token("viewer", "prom-check")

    def delivered():
        resp = console.request("GET", f"{AM}/alerts?filter=alertname%3DPromAlwaysFiring", token=viewer)
        assert resp.status == 200, resp.body
        return resp.json() or None

    [alert] = wait_for(delivered, 60, "Prometheus to deliver PromAlwaysFiring")
    assert alert["labels"] == {"alertname": "PromAlwaysFiring", "severity": "info", "origin": "prometheus"}
    assert alert["annotations"] == {"summary": "fires forever"}
    assert alert["generatorURL"].startswith(prometheus + "/graph?")
    assert alert["status"]["state"] == "active"
    assert prom_metric(prometheus, "prometheus_notifications_sent_total") >= 1
    assert prom_metric(prometheus, "prometheus_notifications_errors_total") == 0

    proc = amtool("deployer", "silence", "add", "PromAlwaysFiring", "-c", "known", "-a", "bob")
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    [alert] = delivered()
    assert alert["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}


# Alerts routed as Alertmanager routes them: team=db goes on (continue) to the severity
# route too; anything else to the root's receiver. The webhooks answer nothing: only the
# routing is looked at here.
ROUTED = {"route": {"receiver": "default", "routes": [
    {"matchers": ['team="db"'], "receiver": "team-db", "continue": True},
    {"matchers": ['severity="page"'], "receiver": "pager"}]},
    "receivers": [{"name": name, "webhook_configs": [{"url": "http://127.0.0.1:9/"}]}
                  for name in ("default", "team-db", "pager")]}


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    from console.config import AlertingConfig
    from tests.harness import ConsoleHarness

    harness = ConsoleHarness(tmp_path_factory.mktemp("routed"), alerting=AlertingConfig(
        default_rules=False, notifications=ROUTED)).start()
    yield harness
    harness.close()


def test_alerts_list_the_receivers_their_routing_sends_them_to(routed):
    post_alerts(routed, [
        {"labels": {"alertname": "RoutedDb", "team": "db", "severity": "page"}},
        {"labels": {"alertname": "RoutedWeb", "team": "web"}}])
    viewer = routed.api_token("viewer", "routes")
    mine = "filter=" + urllib.parse.quote('alertname=~"Routed.*"')  # this test's alerts only
    got = {a["labels"]["alertname"]: [r["name"] for r in a["receivers"]]
           for a in routed.request("GET", f"{AM}/alerts?{mine}", token=viewer).json()}
    assert got == {"RoutedDb": ["team-db", "pager"], "RoutedWeb": ["default"]}
    for pattern, names in (("team-db", ["RoutedDb"]), ("pag.*", ["RoutedDb"]), ("default", ["RoutedWeb"]),
                           ("team", [])):  # anchored at both ends, as Alertmanager's
        resp = routed.request("GET", f"{AM}/alerts?{mine}&receiver={pattern}", token=viewer)
        assert sorted(a["labels"]["alertname"] for a in resp.json()) == names, (pattern, resp.body)
    refused = routed.request("GET", f"{AM}/alerts?receiver=%5B", token=viewer)
    assert refused.status == 400 and "failed to parse receiver param" in refused.json(), refused.body


def test_amtool_queries_alerts_by_receiver(routed, tmp_path):
    binary = shutil.which("amtool")
    if not binary:
        need("alertmanager", "amtool is not installed (apt-get install prometheus-alertmanager)")
    post_alerts(routed, [{"labels": {"alertname": "AmtoolRoutedDb", "team": "db"}},
                         {"labels": {"alertname": "AmtoolRoutedWeb", "team": "web"}}])
    config = tmp_path / "viewer.yml"
    config.write_text(json.dumps({"authorization": {"type": "Bearer", "credentials": routed.api_token("viewer", "am")}}))
    proc = subprocess.run([binary, f"--alertmanager.url={routed.url}/alertmanager", f"--http.config.file={config}",
                           "-o", "json", "alert", "query", "--receiver=team-db", "alertname=~AmtoolRouted.*"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [(a["labels"]["alertname"], [r["name"] for r in a["receivers"]]) for a in json.loads(proc.stdout)] == [
        ("AmtoolRoutedDb", ["team-db"])]
