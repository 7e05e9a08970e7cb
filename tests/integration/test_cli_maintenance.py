"""``fleetdeck maintenance add|list|next|delete`` as real processes against a real
console whose clock the test sets (a Friday noon in Shanghai)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.api.test_alerting import Clock
from tests.api.test_maintenance import SHANGHAI, ts
from tests.harness import ConsoleHarness
from tests.integration.test_cli_alerting import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cli(tmp_path):
    clock = Clock(ts("2026-06-05T12:00:00", SHANGHAI))
    console = ConsoleHarness(tmp_path / "data", clock=clock).start()
    base = dict(os.environ, FLEETDECK_URL=console.url, PYTHONPATH=str(REPO))
    envs = {role: dict(base, FLEETDECK_TOKEN=console.api_token(role)) for role in ("viewer", "deployer")}
    yield console, envs, clock
    console.close()


ADD = ["maintenance", "add", "db-patching", "--start", "2026-01-03T02:00:00", "--duration", "2h",
       "--rrule", "FREQ=WEEKLY;BYDAY=SA", "--timezone", "Asia/Shanghai", "--host", "db-1",
       "--matcher", 'severity=~"warning|info"', "--comment", "weekly patching"]


def test_add_list_next_and_delete_a_window(cli):
    console, envs, clock = cli
    proc = run_cli(envs["viewer"], *ADD)
    assert proc.returncode == 1 and "this needs the deployer role" in proc.stderr
    proc = run_cli(envs["deployer"], *ADD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("maintenance window db-patching added; "
                                   "next: 2026-06-06T02:00:00+08:00 to 2026-06-06T04:00:00+08:00")
    proc = run_cli(envs["viewer"], "maintenance", "list")
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "NEXT"]
    assert row.split() == ["db-patching", "scheduled", "2026-06-06T02:00:00+08:00", "..", "2026-06-06T04:00:00+08:00",
                           "FREQ=WEEKLY;BYDAY=SA", "Asia/Shanghai", 'severity=~"warning|info"', "hosts=db-1"]
    proc = run_cli(envs["viewer"], "maintenance", "next", "db-patching", "--count", "3")
    assert proc.returncode == 0, proc.stderr
    assert [line.split() for line in proc.stdout.splitlines()[2:]] == [
        ["2026-06-06T02:00:00+08:00", "2026-06-06T04:00:00+08:00"],
        ["2026-06-13T02:00:00+08:00", "2026-06-13T04:00:00+08:00"],
        ["2026-06-20T02:00:00+08:00", "2026-06-20T04:00:00+08:00"]]
    clock.now = ts("2026-06-06T03:00:00", SHANGHAI)
    listed = json.loads(run_cli(envs["viewer"], "maintenance", "list", "--json").stdout)
    assert [(w["name"], w["active"]) for w in listed] == [("db-patching", True)]
    proc = run_cli(envs["deployer"], "maintenance", "delete", "db-patching")
    assert (proc.returncode, proc.stdout.strip()) == (0, "maintenance window db-patching deleted")
    proc = run_cli(envs["viewer"], "maintenance", "list")
    assert (proc.returncode, proc.stdout.strip()) == (0, "no maintenance windows")
    proc = run_cli(envs["deployer"], "maintenance", "delete", "db-patching")
    assert proc.returncode == 1 and "no maintenance window 'db-patching'" in proc.stderr


def test_a_bad_rule_is_refused_with_the_consoles_reason(cli):
    _, envs, _ = cli
    args = [a if a != "FREQ=WEEKLY;BYDAY=SA" else "FREQ=FORTNIGHTLY" for a in ADD]
    proc = run_cli(envs["deployer"], *args)
    assert proc.returncode == 1
    assert "rrule: invalid RRULE 'FREQ=FORTNIGHTLY'" in proc.stderr
    proc = run_cli(envs["deployer"], *ADD, "--until", "next week")
    assert proc.returncode == 2 and "--until: must be Unix seconds or RFC 3339" in proc.stderr
