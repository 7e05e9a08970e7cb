"""``fleetdeck query`` as a real process against a real console."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
T0 = (int(time.time()) // 60 - 20) * 60  # a whole minute, 20 minutes ago


@pytest.fixture(scope="module")
def seeded(console):
    host = "cliq-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    points = [[(T0 + 60 * i) * 1000, float(i * 10)] for i in range(6)]
    assert console.push(host, token, [{"name": "cliq_jobs_total", "type": "counter", "labels": {"queue": "mail"},
                                       "points": points}])[0] == 200
    env = dict(os.environ, FLEETDECK_URL=console.url, FLEETDECK_TOKEN=console.api_token("viewer"),
               PYTHONPATH=str(REPO))
    return host, env


def run_cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", "query", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_instant_query_prints_a_table(seeded):
    host, env = seeded
    proc = run_cli(env, f'cliq_jobs_total{{host="{host}"}}', "--time", str(T0 + 125))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["SERIES", "VALUE"]
    assert lines[1].split() == [f'cliq_jobs_total{{host="{host}",', f'instance="{host}",', 'job="node",',
                                'queue="mail"}', "20"]


def test_range_query_json(seeded):
    host, env = seeded
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 300))
    proc = run_cli(env, f'rate(cliq_jobs_total{{host="{host}"}}[2m])', "--range", "4m", "--step", "2m",
                   "--time", end, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["resultType"] == "matrix"
    (series,) = data["result"]
    assert series["metric"]["queue"] == "mail" and "__name__" not in series["metric"]
    # 10 per minute over each 2 minute window: 20 / 120 s; at T0+60 the window holds only the
    # samples at T0 (0) and T0+60 (10), and a counter at 0 is not extrapolated below zero: 10 / 120 s.
    assert [[t, float(v)] for t, v in series["values"]] == [[T0 + 60, pytest.approx(1 / 12)],
                                                            [T0 + 180, pytest.approx(1 / 6)],
                                                            [T0 + 300, pytest.approx(1 / 6)]]


def test_range_table_and_scalar(seeded):
    host, env = seeded
    proc = run_cli(env, f'cliq_jobs_total{{host="{host}"}}', "--range", "2m", "--step", "1m",
                   "--time", str(T0 + 120))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["SERIES", "TIME", "VALUE"] and len(lines) == 4
    assert [line.split()[-1] for line in lines[1:]] == ["0", "10", "20"]
    proc = run_cli(env, "1 + 2 * 3")
    assert proc.returncode == 0 and proc.stdout == "7\n", proc.stderr


def test_errors(seeded):
    _, env = seeded
    proc = run_cli(env, "sum(")
    assert proc.returncode == 1
    assert "400 bad_data" in proc.stderr and "unclosed left parenthesis" in proc.stderr
    proc = run_cli(env, "up", "--range", "soon")
    assert proc.returncode == 2 and "--range must be a duration" in proc.stderr
    proc = run_cli(env, "up", "--step", "1m")
    assert proc.returncode == 2 and "--step needs --range" in proc.stderr
    proc = run_cli(env, "up", "--time", str(T0 - 8 * 86400))  # before the raw retention
    assert proc.returncode == 0 and "warning: the query reads samples older than the raw retention" in proc.stderr
    proc = run_cli(dict(env, FLEETDECK_TOKEN="nope"), "up")
    assert proc.returncode == 1 and "401" in proc.stderr
