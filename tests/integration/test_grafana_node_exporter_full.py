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
DATA_S = 50  # seconds of samples before the evaluation time
RANGE_MS = 60_000
DATASOURCE = DataSource(time_interval=SCRAPE, method="POST")
TARGETS = [(panel, target) for panel in panels(DASHBOARD) for target in panel["targets"]]
METRIC_NAME = re.compile(r"\b(node_[a-zA-Z0-9_]+)")
# Queries that are empty though every metric they name is exposed here: their selectors
# or comparisons filter every series out on this machine (the reason with each).
EMPTY_BY_FILTER: dict[str, str] = {}


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
    """(ask, node_exporter address, time range): ``ask(method, path, params)`` ->
    ((status, body) from the console, (status, body) from Prometheus)."""
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

        end_ms = int((time.time() + DATA_S) * 1000) + 337  # not on a whole second, as Grafana's "now"
        time.sleep(max(0.0, end_ms / 1000 + 3 - time.time()))
        count = {"query": 'sum(count_over_time({job="node"}[2m]))', "time": str(end_ms / 1000)}

        def settled() -> bool:
            (_, ours), (_, theirs) = ask("GET", "/api/v1/query", count)
            return ours.get("data") == theirs.get("data")

        wait_for(settled, 60, "the console to hold every sample Prometheus holds", interval=1.0)
        yield ask, exporter, TimeRange(end_ms - RANGE_MS, end_ms)
    finally:
        stop_process(prom_proc)
        stop_process(exporter_proc)


def test_save_and_test(stack):
    """The data source's health check succeeds as on Prometheus: ``1+1`` answers the scalar
    2 at t=4, and buildinfo names a version without ``features`` (Grafana then treats the
    source as Prometheus, not Mimir)."""
    ask, _, _ = stack
    (query, buildinfo) = DATASOURCE.health_check()
    ours, theirs = ask(*query)
    assert ours == theirs == (200, {"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    (status, body), (_, prom_body) = ask(*buildinfo)
    assert status == 200 and body["status"] == "success", body
    assert set(body["data"]) == set(prom_body["data"]) and not body["data"].get("features"), body
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["data"]["version"])


@pytest.fixture(scope="module")
def variables(stack):
    """The dashboard's variables resolved in order, each from the console and from
    Prometheus with both of Grafana's requests (label values with ``match[]``, and the
    ``/series`` fallback): {name: Variable}."""
    ask, exporter, rng = stack
    resolved: dict[str, Variable] = {}
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] != "query":
            continue
        answers = []
        for labels_match_api in (True, False):
            method, path, params, label = DATASOURCE.variable_request(var["query"]["query"], resolved, rng,
                                                                      labels_match_api)
            (status, ours), (prom_status, theirs) = ask(method, path, params)
            assert status == prom_status == 200 and ours["status"] == "success", (path, params, ours)
            if path.endswith("/series"):
                ours["data"] = sorted({s[label] for s in ours["data"] if s.get(label)})
                theirs["data"] = sorted({s[label] for s in theirs["data"] if s.get(label)})
            assert sorted(ours["data"]) == sorted(theirs["data"]), (var["name"], path, params)
            answers.append(sorted(ours["data"]))
        assert answers[0] == answers[1] and answers[0], (var["name"], answers)
        resolved[var["name"]] = Variable(answers[0][0])  # "sort": 1, the first selected
    assert resolved["job"].value == "node" and resolved["node"].value == exporter
    return resolved


def test_variables_resolve_as_on_prometheus(variables):
    assert set(variables) == {"job", "nodename", "node"}


@pytest.fixture(scope="module")
def exposed(stack) -> set[str]:
    """Metric names node_exporter exposes here (its /metrics now)."""
    _, exporter, _ = stack
    with urllib.request.urlopen(f"http://{exporter}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("panel,target", TARGETS, ids=[f"{p['id']}-{t['refId']}" for p, t in TARGETS])
def test_panel_target_matches_prometheus(stack, variables, exposed, panel, target):
    """Each target, as Grafana sends it: HTTP 200 ``success`` from the console, the same
    series and values as Prometheus; empty only where Prometheus is empty too, because the
    query names a metric node_exporter does not expose here (or it is listed above)."""
    ask, _, rng = stack
    method, path, params = DATASOURCE.target_request(panel, target, variables, rng, max_data_points(panel))
    (status, ours), (prom_status, theirs) = ask(method, path, params)
    assert prom_status == 200, (params, theirs)
    assert status == 200 and ours["status"] == "success", (params, ours)
    _compare(params["query"], ours, theirs)
    result = theirs["data"]["result"]
    empty = not result or (theirs["data"]["resultType"] == "matrix" and not any(s["values"] for s in result))
    if empty:
        missing = set(METRIC_NAME.findall(params["query"])) - exposed
        assert missing or params["query"] in EMPTY_BY_FILTER, f"empty though every metric is exposed: {params}"
