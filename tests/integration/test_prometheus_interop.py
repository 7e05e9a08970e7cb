"""rate() and increase() agree with a real Prometheus (Debian's 2.42) on the same samples:
the samples are backfilled into Prometheus' TSDB with ``promtool tsdb create-blocks-from
openmetrics``, pushed to the console over HTTP, and both are queried over HTTP."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.conftest import need

STEP_S = 45  # not a multiple of 60, so the console answers from the raw tier
END_S = (int(time.time()) // 3600 - 3) * 3600  # well outside Prometheus' head block
START_S = END_S - 3600


def counter_samples():
    """A counter every ~10 s with jitter, two resets and an idle stretch."""
    out, value = [], 0.0
    for i in range(360):
        if 200 <= i < 215:
            continue  # a gap longer than the window
        ts = (START_S - 120) * 1000 + i * 10_000 + (i * 7919) % 900
        value = 3.0 if i in (100, 250) else value + 1.5 + (i % 7)
        out.append((ts, value))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        need("prometheus", "prometheus/promtool not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prom")
    om = work / "data.om"
    lines = ["# TYPE app_requests gauge"]
    lines += [f'app_requests{{path="/"}} {v!r} {ts / 1000:.3f}' for ts, v in counter_samples()]
    om.write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(work / "tsdb")],
                   check=True, capture_output=True, timeout=120)
    (work / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.retention.time=30d"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "log", "wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"prometheus did not become ready: {(work / 'log').read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(30)


def prom_range(url, expr):
    q = urlencode({"query": expr, "start": START_S, "end": END_S, "step": STEP_S})
    body = json.load(urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=30))
    assert body["status"] == "success"
    (series,) = body["data"]["result"]
    return {int(float(t) * 1000): float(v) for t, v in series["values"]}


@pytest.mark.parametrize("fn", ["increase", "rate"])
def test_rate_and_increase_match_prometheus(console, prometheus, fn):
    token = console.agent_token("prom-1")
    status, body = console.push("prom-1", token, [{"name": "app_requests", "type": "counter",
                                                   "labels": {"path": "/"},
                                                   "points": [list(p) for p in counter_samples()]}])
    assert status == 200, body
    viewer = console.api_token("viewer")
    ours = console.request("GET", "/api/v1/metrics/range?" + urlencode(
        {"metric": "app_requests", "host": "prom-1", "fn": fn, "start": START_S, "end": END_S, "step": STEP_S}),
        token=viewer).json()
    assert ours["resolution"] == "raw"
    got = {t: v for t, v in ours["series"][0]["points"]}
    want = prom_range(prometheus, f"{fn}(app_requests[{STEP_S}s])")
    assert len(want) > 50
    assert sorted(got) == sorted(want)
    for t in want:
        assert got[t] == pytest.approx(want[t], rel=1e-9, abs=1e-9), t
