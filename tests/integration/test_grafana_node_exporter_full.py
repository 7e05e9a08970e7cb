"""Grafana's "Node Exporter Full" dashboard (grafana.com 1860, tests/data/grafana/) against
the console, request for request as Grafana 10/11 sends them (tests/integration/grafana.py),
compared with a real Prometheus (Debian's 2.42) answering the same requests.

A real node_exporter (Debian's 1.5) is scraped every second by a real Prometheus, which
remote-writes into the console: both hold the same samples with the labels the dashboard
selects on (``job="node"``, ``instance="127.0.0.1:<port>"``). Every series in the console
also carries ``host`` (the remote-write source); the scrape config gives Prometheus' series
the same ``host`` label, so label sets compare equal.

The data source is set up as Grafana's docs advise: POST, scrape interval ("timeInterval")
= Prometheus' scrape interval. The dashboard's range is the last minute of an evaluation
time a few seconds in the past, once the console holds every sample Prometheus holds up to it.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.exporters import start_node_exporter, start_process, stop_process
from tests.integration.grafana import DataSource, TimeRange, Variable, max_data_points, panels
from tests.integration.procs import free_port
from tests.integration.test_promql_interop import _compare

DASHBOARD = json.loads((Path(__file__).parents[1] / "data" / "grafana" / "node-exporter-full.json").read_text())
HOST = "grafana-1860"
SCRAPE = "1s"
DATA_S = 45  # at least this many seconds of samples before the evaluation time
COVERED_MS = 15_000  # a range query whose last step is this far into the data has samples
# Dashboard ranges ending at the evaluation time: the last minute (1 s steps, every series
# has data), 6 hours (20 s steps, 5 min for the stat panels' 100 points, "$__rate_interval"
# = 21s or 5m1s) and the dashboard's default 24 hours (2 min steps, "2m1s").
# The last minute is also asked as a data source set to GET with a query timeout sends it.
RANGES = {"1m": 60_000, "6h": 6 * 3600_000, "24h": 24 * 3600_000}
DATASOURCE = DataSource(time_interval=SCRAPE, method="POST")
GET_DATASOURCE = DataSource(time_interval=SCRAPE, method="GET", query_timeout="30s")
SETUPS = {"1m": (RANGES["1m"], DATASOURCE), "6h": (RANGES["6h"], DATASOURCE), "24h": (RANGES["24h"], DATASOURCE),
          "1m-get": (RANGES["1m"], GET_DATASOURCE)}
# Grafana features the 1860 dashboard does not use, written as other dashboards use them:
# $__interval, $__range, $__range_s, a multi-value "All" variable in the data source's own
# format and as ${var:regex} (in a raw string) and ${var:pipe}. Its variables: "nodes"
# (All of this exporter and one absent instance) besides the dashboard's.
EXTRA_PANEL = {"id": "extra", "type": "timeseries", "gridPos": {"w": 12}, "targets": [
    {"refId": "A", "expr": 'avg_over_time(node_load1{job="$job",instance="$node"}[$__interval])'},
    {"refId": "B", "expr": 'increase(node_cpu_seconds_total{job="$job",instance=~"$nodes"}[$__range])'},
    {"refId": "C", "expr": 'sum by (instance) (rate(node_network_receive_bytes_total{instance=~`${nodes:regex}`}'
                           '[$__rate_interval]))'},
    {"refId": "D", "expr": 'count_over_time(node_load5{instance=~"${nodes:pipe}"}[${__range_s}s]) / $__range_s'},
    {"refId": "E", "expr": 'max_over_time(node_memory_MemFree_bytes{instance=~"$nodes"}[$__range])',
     "instant": True, "range": False},
]}
TARGETS = [(panel, target) for panel in [*panels(DASHBOARD), EXTRA_PANEL] for target in panel["targets"]]
METRIC_NAME = re.compile(r"\b(node_[a-zA-Z0-9_]+)")
# Targets (panel id, refId) that may be empty though every metric they name is exposed:
# a filter leaves no series on a machine like this one.
EMPTY_BY_FILTER = {
    (3, "I"): "guest CPU time is 0 where no virtual machine runs (`> 0`)",
    (309, "A"): 'no interface is operstate="up" in a container with loopback only',
}


def _request(base: str, method: str, path: str, params: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(base + path, data=urlencode(params).encode(), headers=headers, method="POST")
    else:
        req = urllib.request.Request(base + path + ("?" + urlencode(params) if params else ""), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def stack(console, tmp_path_factory):
    """(ask, node_exporter address, evaluation time, first sample time (Unix ms)):
    ``ask(method, path, params)`` -> ((status, body) from the console, (status, body) from
    Prometheus)."""
    if not shutil.which("prometheus"):
        need("prometheus", "prometheus is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("grafana-1860")
    (work / "textfile").mkdir()
    exporter, exporter_proc = start_node_exporter(work, work / "textfile")
    port = free_port()
    config = {
        "global": {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE},
        "scrape_configs": [{"job_name": "node",
                            "static_configs": [{"targets": [exporter], "labels": {"host": HOST}}]}],
        "remote_write": [{
            "url": f"{console.url}/api/v1/write",
            "authorization": {"credentials": console.agent_token(HOST)},
            "queue_config": {"batch_send_deadline": "500ms", "min_backoff": "100ms", "max_backoff": "1s"},
        }],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    prom = f"http://127.0.0.1:{port}"
    prom_proc = start_process(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                              work / "prometheus.log", prom + "/-/ready", "prometheus")
    try:
        token = console.api_token("viewer")

        def ask(method: str, path: str, params: dict) -> tuple[tuple[int, dict], tuple[int, dict]]:
            return (_request(console.url + "/prometheus", method, path, params, token),
                    _request(prom, method, path, params))

        # The evaluation time ("now", not on a whole second) leaves every range's last step
        # inside the data: for the 24 h range (2 min steps) the last multiple of 2 min before
        # it is at least COVERED_MS after the first sample.
        first_ms = int(time.time() * 1000) + 2000  # the first scrape is within a second of ready
        last_step = -(-(first_ms + COVERED_MS) // 120_000) * 120_000
        end_ms = max(last_step, first_ms + DATA_S * 1000) + 337
        time.sleep(max(0.0, end_ms / 1000 + 3 - time.time()))
        count = {"query": 'sum(count_over_time({job="node"}[2m]))', "time": str(end_ms / 1000)}

        def settled() -> bool:
            (_, ours), (_, theirs) = ask("GET", "/api/v1/query", count)
            return ours.get("data") == theirs.get("data")

        wait_for(settled, 60, "the console to hold every sample Prometheus holds", interval=1.0)
        yield ask, exporter, end_ms, first_ms
    finally:
        stop_process(prom_proc)
        stop_process(exporter_proc)


@pytest.mark.parametrize("datasource", [DATASOURCE, GET_DATASOURCE], ids=["post", "get-timeout"])
def test_save_and_test(stack, datasource):
    """The data source's health check succeeds as on Prometheus: ``1+1`` answers the scalar
    2 at t=4, and buildinfo names a version without ``features`` (Grafana then treats the
    source as Prometheus, not Mimir)."""
    ask, _, _, _ = stack
    (query, buildinfo) = datasource.health_check()
    ours, theirs = ask(*query)
    assert ours == theirs == (200, {"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    (status, body), (_, prom_body) = ask(*buildinfo)
    assert status == 200 and body["status"] == "success", body
    assert set(body["data"]) == set(prom_body["data"]) and not body["data"].get("features"), body
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["data"]["version"])


@pytest.fixture(scope="module")
def variables(stack):
    """The dashboard's variables resolved in order, each from the console and from
    Prometheus with each of Grafana's requests (label values with ``match[]``, the
    ``/series`` fallback, and label values over whole minutes): {name: Variable}."""
    ask, exporter, end_ms, _ = stack
    rng = TimeRange(end_ms - RANGES["24h"], end_ms)  # variables refresh over the dashboard's range
    resolved: dict[str, Variable] = {}
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] != "query":
            continue
        answers = []
        for labels_match_api, snap in ((True, False), (False, False), (True, True)):
            method, path, params, label = DATASOURCE.variable_request(var["query"]["query"], resolved, rng,
                                                                      labels_match_api, snap)
            (status, ours), (prom_status, theirs) = ask(method, path, params)
            assert status == prom_status == 200 and ours["status"] == "success", (path, params, ours)
            if path.endswith("/series"):
                ours["data"] = sorted({s[label] for s in ours["data"] if s.get(label)})
                theirs["data"] = sorted({s[label] for s in theirs["data"] if s.get(label)})
            assert sorted(ours["data"]) == sorted(theirs["data"]), (var["name"], path, params)
            answers.append(sorted(ours["data"]))
        assert answers[0] and all(a == answers[0] for a in answers), (var["name"], answers)
        resolved[var["name"]] = Variable(answers[0][0])  # "sort": 1, the first selected
    assert resolved["job"].value == "node" and resolved["node"].value == exporter
    resolved["nodes"] = Variable(["$__all"], multi=True, include_all=True, options=[exporter, "10.0.0.9:9100"])
    return resolved


def test_variables_resolve_as_on_prometheus(variables):
    assert {"job", "nodename", "node"} <= set(variables)


@pytest.fixture(scope="module")
def exposed(stack) -> set[str]:
    """Metric names node_exporter exposes here (its /metrics now)."""
    _, exporter, _, _ = stack
    with urllib.request.urlopen(f"http://{exporter}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("panel,target", TARGETS, ids=[f"{p['id']}-{t['refId']}" for p, t in TARGETS])
def test_panel_target_matches_prometheus(stack, variables, exposed, panel, target, setup):
    """Each target, as Grafana sends it: HTTP 200 ``success`` from the console, the same
    series and values as Prometheus. Where the query reaches the data (an instant query, or
    a range whose last step is COVERED_MS into it), empty only where Prometheus is empty
    too, because the query names a metric node_exporter does not expose here (or it is
    listed in EMPTY_BY_FILTER)."""
    ask, _, end_ms, first_ms = stack
    range_ms, datasource = SETUPS[setup]
    rng = TimeRange(end_ms - range_ms, end_ms)
    method, path, params = datasource.target_request(panel, target, variables, rng, max_data_points(panel))
    (status, ours), (prom_status, theirs) = ask(method, path, params)
    assert prom_status == 200, (params, theirs)
    assert status == 200 and ours["status"] == "success", (params, ours)
    _compare(params["query"], ours, theirs)
    kind, result = theirs["data"]["resultType"], theirs["data"]["result"]
    covered = path.endswith("/query") or float(params["end"]) * 1000 >= first_ms + COVERED_MS
    if covered and kind in ("vector", "matrix") and not any(s.get("values", True) for s in result):
        missing = set(METRIC_NAME.findall(params["query"])) - exposed
        assert missing or (panel["id"], target["refId"]) in EMPTY_BY_FILTER, f"empty though all exposed: {params}"
