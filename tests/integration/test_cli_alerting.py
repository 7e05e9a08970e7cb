"""``fleetdeck alerts``, ``alerts history``, ``rules``, ``rules check`` and ``rules reload``
as real processes against a real console (clock controlled as in tests/api/test_alerting.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.alerting.handlers import rfc3339
from tests.api.test_alerting import T0, Clock, evaluate, push, start

REPO = Path(__file__).resolve().parents[2]
RULES = """groups:
  - name: cli
    interval: 1h
    rules:
      - alert: CliHot
        expr: cli_temp > 50
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} is hot"}
      - alert: CliSlow
        expr: cli_temp > 10
        for: 1h
"""


@pytest.fixture(scope="module")
def firing(tmp_path_factory):
    yield from firing_console(tmp_path_factory)


@pytest.fixture
def firing_alone(tmp_path_factory):
    """``firing`` for a test that reloads the rules: a reload resets every rule's health to
    ``unknown`` until the next evaluation, which tests sharing ``firing`` would see."""
    yield from firing_console(tmp_path_factory)


def firing_console(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-alerting")
    rules = tmp / "cli.yml"
    rules.write_text(RULES)
    clock = Clock(T0)
    console = start(tmp / "data", rules, clock)
    agent = console.agent_token("cli-1")
    push(console, agent, "cli-1", "cli_temp", [(0, 70)])
    evaluate(console, clock, T0)
    base = dict(os.environ, FLEETDECK_URL=console.url, PYTHONPATH=str(REPO))
    envs = {"viewer": dict(base, FLEETDECK_TOKEN=console.api_token("viewer")),
            "admin": dict(base, FLEETDECK_TOKEN=console.api_token("admin"))}
    yield console, envs, rules
    console.close()


def run_cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_alerts_lists_firing_and_pending(firing):
    _, envs, _ = firing
    proc = run_cli(envs["viewer"], "alerts")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["ALERT", "STATE", "INSTANCE", "VALUE"]
    assert sorted(line.split()[:4] for line in lines[1:]) == [["CliHot", "firing", "cli-1", "70"],
                                                              ["CliSlow", "pending", "cli-1", "70"]]
    proc = run_cli(envs["viewer"], "alerts", "--state", "firing", "--json")
    assert proc.returncode == 0, proc.stderr
    [alert] = json.loads(proc.stdout)
    assert (alert["labels"]["alertname"], alert["annotations"]["summary"]) == ("CliHot", "cli-1 is hot")


def test_alerts_history(firing):
    _, envs, _ = firing
    proc = run_cli(envs["viewer"], "alerts", "history", "--alertname", "CliHot", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(t["state"], t["ts"]) for t in json.loads(proc.stdout)] == [("firing", T0), ("pending", T0)]
    proc = run_cli(envs["viewer"], "alerts", "history", "--instance", "cli-1")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4  # heading, CliHot pending+firing, CliSlow pending


def test_rules_lists_groups(firing):
    _, envs, _ = firing
    proc = run_cli(envs["viewer"], "rules")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[:5] for line in proc.stdout.splitlines()[1:]] == [
        ["cli", "CliHot", "firing", "ok", "1"], ["cli", "CliSlow", "pending", "ok", "1"]]
    proc = run_cli(envs["viewer"], "rules", "--json")
    assert [r["name"] for g in json.loads(proc.stdout)["groups"] for r in g["rules"]] == ["CliHot", "CliSlow"]


def test_rules_check_exits_1_naming_file_and_line(tmp_path):
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(RULES)
    bad.write_text(RULES.replace("for: 1h", "for: 1 hour"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = run_cli(env, "rules", "check", str(good))
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{good}: SUCCESS: 2 rules found")
    proc = run_cli(env, "rules", "check", str(good), str(bad))
    assert proc.returncode == 1
    assert f"{bad}:11: for: not a valid duration string: '1 hour'" in proc.stderr
    proc = run_cli(env, "rules", "check", str(REPO / "console" / "alerting" / "default_rules.yml"))
    assert proc.returncode == 0, proc.stderr


def test_rules_reload_refuses_a_bad_file_and_keeps_the_old_rules(firing_alone):
    console, envs, rules = firing_alone
    assert run_cli(envs["viewer"], "rules", "reload").returncode == 1  # admin only
    original = rules.read_text()
    rules.write_text(original.replace("cli_temp > 10", "cli_temp >"))
    try:
        proc = run_cli(envs["admin"], "rules", "reload")
        assert proc.returncode == 1
        assert f"{rules}:10: expr: could not parse expression" in proc.stderr
        proc = run_cli(envs["viewer"], "rules")
        assert proc.returncode == 1  # a refused file is an error to report
        assert "CliSlow" in proc.stdout and f"{rules}:10" in proc.stderr
    finally:
        rules.write_text(original)
    proc = run_cli(envs["admin"], "rules", "reload")
    assert (proc.returncode, proc.stdout.strip()) == (0, "rules reloaded")


def test_alerts_say_which_are_silenced(firing_alone):
    console, envs, _ = firing_alone
    body = {"matchers": [{"name": "alertname", "value": "CliHot", "isRegex": False, "isEqual": True}],
            "startsAt": rfc3339(T0), "endsAt": rfc3339(T0 + 3600), "createdBy": "ops", "comment": "known"}
    resp = console.request("POST", "/alertmanager/api/v2/silences", body, token=console.api_token("deployer"))
    assert resp.status == 200, resp.body
    proc = run_cli(envs["viewer"], "alerts")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert rows["CliHot"].split()[1:3] == ["firing", "(silenced)"], proc.stdout
    assert rows["CliSlow"].split()[1:3] == ["pending", "cli-1"], proc.stdout  # the silence names CliHot only
