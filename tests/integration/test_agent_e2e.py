"""A real agent process pushes this machine's real psutil data to a real console."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from urllib.parse import urlencode

import pytest

from sqlalchemy import func, select

from console.storage.models import Host, Series
from tests.harness import wait_for

HOST = "e2e-agent"
INTERVAL = 2  # seconds


@pytest.fixture(scope="module")
def agent(console, tmp_path_factory):
    state = tmp_path_factory.mktemp("agent")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token(HOST),
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "agents", "--console", console.url, "--host", HOST,
                             "--interval", str(INTERVAL)], env=env, cwd=state,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert proc.returncode == 0, proc.stdout.read()




def series_count(console) -> int:
    return console.services.db.run(lambda s: s.execute(
        select(func.count(Series.id)).join(Host, Host.id == Series.host_id).where(Host.name == HOST)).scalar_one())


def test_host_appears_up_with_at_least_300_series(console, agent):
    viewer = console.api_token("viewer")

    def host_up():
        hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
        return hosts.get(HOST) if hosts.get(HOST, {}).get("up") else None

    host = wait_for(host_up, what="the agent's host to be up", proc=agent)
    assert host["agent_version"]
    assert host["interval"] == INTERVAL
    assert series_count(console) >= 300
    summary = wait_for(lambda: host_up()["summary"] if host_up()["summary"]["cpu_ratio"] is not None else None,
                       what="a CPU summary (needs two batches)", proc=agent)
    assert 0.0 <= summary["cpu_ratio"] <= 1.0
    assert 0.0 < summary["memory_ratio"] < 1.0
    assert summary["load1"] is not None


def test_per_cpu_rates_are_between_0_and_1(console, agent):
    viewer = console.api_token("viewer")
    span = 4 * INTERVAL  # rate over four collects: scheduling jitter of one read weighs 1/4

    def get(**params):
        base = {"metric": "node_cpu_seconds_total", "host": HOST, "start": time.time() - 300, "end": time.time() + 1}
        return console.request("GET", "/api/v1/metrics/range?" + urlencode({**base, **params}), token=viewer).json()

    def raw_enough():
        body = get(fn="raw")
        return body if body["series"] and min(len(s["points"]) for s in body["series"]) >= 7 else None

    raw = wait_for(raw_enough, timeout=60, what="seven collects of every CPU series", proc=agent)
    first_ts = max(s["points"][0][0] for s in raw["series"])
    # Only windows that lie wholly after the first sample: no extrapolation at the data's edge.
    body = get(fn="rate", step=INTERVAL, window=span, start=first_ts / 1000 + span)
    assert body["series"] and all(s["points"] for s in body["series"])
    per_cpu_total: dict[tuple[str, int], float] = defaultdict(float)
    for series in body["series"]:
        for ts, value in series["points"]:
            # /proc/stat counts in 10 ms ticks: over an 8 s window a tick is 0.125% of a CPU.
            assert -1e-9 <= value <= 1.0 + 0.01, (series["labels"], value)
            per_cpu_total[(series["labels"]["cpu"], ts)] += value
    # Every CPU spends each second in exactly one mode: the modes add up to one second.
    for key, total in per_cpu_total.items():
        assert total == pytest.approx(1.0, abs=0.05), key
