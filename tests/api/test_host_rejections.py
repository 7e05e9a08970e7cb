"""GET /api/v1/hosts names, per host, the metric of the data the console refused: a new
series over the host's series cap and a sample outside the ingest window."""
from __future__ import annotations

import time
import uuid

import pytest


@pytest.fixture(scope="module")
def viewer(console):  # noqa: ANN001
    return console.api_token("viewer")


def test_hosts_api_names_the_metric_of_each_refusal(console, viewer):  # noqa: ANN001
    host = "rej-" + uuid.uuid4().hex[:6]
    token = console.agent_token(host)
    now = int(time.time() * 1000)
    before = time.time()
    with console.series_cap(1):
        status, body = console.push(host, token, [
            {"name": "node_network_receive_bytes_total", "type": "counter", "labels": {"device": device},
             "points": [[now, 1.0]]} for device in ("eth0", "veth9a1")])
    assert status == 200 and body["rejected"] == {"series_limit": 1}, body
    old = now - 400 * 86_400_000  # beyond any raw retention
    status, body = console.push(host, token, [{"name": "app_jobs_done", "type": "gauge", "labels": {"q": "a"},
                                               "points": [[old, 1.0], [now, 2.0]]}])
    assert status == 200 and body["rejected"] == {"too_old": 1}, body

    r = console.request("GET", "/api/v1/hosts", token=viewer)
    assert r.status == 200, r.body
    [info] = [h for h in r.json() if h["host"] == host]
    rejected = {row["reason"]: row for row in info["rejected"]}
    assert set(rejected) == {"series_limit", "too_old"}
    cap = rejected["series_limit"]
    assert cap["metric"] == "node_network_receive_bytes_total"
    assert cap["example"] == 'node_network_receive_bytes_total{"device":"veth9a1"}'
    assert cap["count"] == 1 and before <= cap["last_at"] <= time.time()
    window = rejected["too_old"]
    assert window["metric"] == "app_jobs_done"
    assert window["example"] == f'app_jobs_done{{"q":"a"}} @ {old}'
    assert window["count"] == 1
