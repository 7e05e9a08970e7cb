"""``fleetdeck silence add|list|expire`` as real processes against a real console."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def envs(console):
    base = dict(os.environ, FLEETDECK_URL=console.url, PYTHONPATH=str(REPO))
    return {role: dict(base, FLEETDECK_TOKEN=console.api_token(role, f"cli-{role}")) for role in ("viewer", "deployer")}


def run_cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", "silence", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_silence_add_list_expire(console, envs):
    proc = run_cli(envs["deployer"], "add", "CliDiskFull", "instance=~db-.*", "-c", "disk swap", "-a", "carol",
                   "--duration", "2h")
    assert proc.returncode == 0, proc.stderr
    sid = proc.stdout.strip()
    assert len(sid) == 36
    doc = console.request("GET", f"/alertmanager/api/v2/silence/{sid}", token=console.api_token("viewer")).json()
    assert doc["matchers"] == [{"name": "alertname", "value": "CliDiskFull", "isRegex": False, "isEqual": True},
                               {"name": "instance", "value": "db-.*", "isRegex": True, "isEqual": True}]
    assert (doc["createdBy"], doc["comment"], doc["status"]["state"]) == ("carol", "disk swap", "active")

    proc = run_cli(envs["viewer"], "list")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STATE", "MATCHERS", "STARTS"]
    [row] = [r for r in rows if r.startswith(sid)]
    assert 'alertname="CliDiskFull" instance=~"db-.*"' in row and "carol" in row and "disk swap" in row
    proc = run_cli(envs["viewer"], "list", "--json", "alertname=CliDiskFull")
    assert [s["id"] for s in json.loads(proc.stdout)] == [sid]

    proc = run_cli(envs["viewer"], "expire", sid)
    assert proc.returncode == 1 and "403" in proc.stderr
    proc = run_cli(envs["deployer"], "expire", sid)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"expired {sid}"), proc.stderr
    proc = run_cli(envs["viewer"], "list", "--json", "alertname=CliDiskFull")
    assert json.loads(proc.stdout) == []
    proc = run_cli(envs["viewer"], "list", "--expired", "--json", "alertname=CliDiskFull")
    assert [s["id"] for s in json.loads(proc.stdout)] == [sid]


def test_silence_add_refusals(console, envs):
    before = console.count("silences")
    proc = run_cli(envs["deployer"], "add", "job=~(", "-c", "x")
    assert proc.returncode == 2 and "invalid regular expression" in proc.stderr
    proc = run_cli(envs["deployer"], "add", "env=~.*", "-c", "x")  # would silence everything
    assert proc.returncode == 1 and "must not match the empty string" in proc.stderr
    proc = run_cli(envs["viewer"], "add", "alertname=X", "-c", "x")
    assert proc.returncode == 1 and "403" in proc.stderr
    assert console.count("silences") == before


def test_alerts_history_shows_what_muted_each_transition(tmp_path):
    from console.alerting.handlers import rfc3339
    from tests.api.test_alerting import T0, Clock, evaluate, push, start

    rules = tmp_path / "r.yml"
    rules.write_text("groups:\n  - name: h\n    interval: 1h\n    rules:\n      - alert: CliMuted\n"
                     "        expr: cli_muted > 1\n")
    clock = Clock(T0)
    console = start(tmp_path / "data", rules, clock)
    try:
        body = {"matchers": [{"name": "instance", "value": "m-1", "isRegex": False}], "startsAt": rfc3339(T0),
                "endsAt": rfc3339(T0 + 600), "createdBy": "a", "comment": "c"}
        sid = console.request("POST", "/alertmanager/api/v2/silences", body,
                              token=console.api_token("deployer")).json()["silenceID"]
        for host in ("m-1", "m-2"):
            push(console, console.agent_token(host), host, "cli_muted", [(0, 5)])
        evaluate(console, clock, T0)
        env = dict(os.environ, FLEETDECK_URL=console.url, PYTHONPATH=str(REPO),
                   FLEETDECK_TOKEN=console.api_token("viewer"))
        proc = subprocess.run([sys.executable, "-m", "console.cli", "alerts", "history", "--since", "2h"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        header, *rows = proc.stdout.splitlines()
        assert header.split()[-2:] == ["MUTED", "BY"]
        assert sorted((r.split()[3], r.split()[-1]) for r in rows) == [
            ("m-1", f"silence:{sid}"), ("m-1", f"silence:{sid}"), ("m-2", "-"), ("m-2", "-")]
    finally:
        console.close()
