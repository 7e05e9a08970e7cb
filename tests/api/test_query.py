"""Hosts and range queries over HTTP, on data whose answers the test computes itself."""
from __future__ import annotations

import time

import pytest

T0 = (int(time.time()) // 60 - 30) * 60 * 1000  # a whole minute, half an hour ago, in ms


def cpu_metrics(ts: int, idle: float, user: float, cpu: str = "0") -> list:
    return [{"name": "node_cpu_seconds_total", "type": "counter", "labels": {"cpu": cpu, "mode": "idle"},
             "points": [[ts, idle]]},
            {"name": "node_cpu_seconds_total", "type": "counter", "labels": {"cpu": cpu, "mode": "user"},
             "points": [[ts, user]]}]


@pytest.fixture(scope="module")
def console(db_console):
    """These tests run on SQLite and on PostgreSQL."""
    return db_console


@pytest.fixture(scope="module")
def data(console):
    host = "query-1"
    token = console.agent_token(host)
    # Two CPUs over 4 samples 10 s apart; cpu 1's idle counter resets at the third sample.
    idle0 = [100.0, 109.0, 118.0, 127.0]
    user0 = [50.0, 51.0, 52.0, 53.0]
    idle1 = [200.0, 205.0, 3.0, 8.0]
    user1 = [10.0, 15.0, 20.0, 25.0]
    for i in range(4):
        ts = T0 + i * 10_000
        metrics = cpu_metrics(ts, idle0[i], user0[i], "0") + cpu_metrics(ts, idle1[i], user1[i], "1")
        metrics += [{"name": "node_load1", "type": "gauge", "labels": {}, "points": [[ts, 0.5 + i]]},
                    {"name": "node_memory_MemTotal_bytes", "type": "gauge", "labels": {}, "points": [[ts, 1000.0]]},
                    {"name": "node_memory_MemAvailable_bytes", "type": "gauge", "labels": {}, "points": [[ts, 250.0]]},
                    {"name": "node_filesystem_size_bytes", "type": "gauge",
                     "labels": {"device": "/dev/a", "fstype": "ext4", "mountpoint": "/"}, "points": [[ts, 100.0]]},
                    {"name": "node_filesystem_avail_bytes", "type": "gauge",
                     "labels": {"device": "/dev/a", "fstype": "ext4", "mountpoint": "/"}, "points": [[ts, 40.0]]},
                    {"name": "node_filesystem_size_bytes", "type": "gauge",
                     "labels": {"device": "/dev/b", "fstype": "ext4", "mountpoint": "/data"}, "points": [[ts, 100.0]]},
                    {"name": "node_filesystem_avail_bytes", "type": "gauge",
                     "labels": {"device": "/dev/b", "fstype": "ext4", "mountpoint": "/data"}, "points": [[ts, 10.0]]}]
        status, _ = console.push(host, token, metrics)
        assert status == 200
    return {"host": host, "token": token, "viewer": console.api_token("viewer")}


def query(console, data, **params):
    from urllib.parse import urlencode

    params.setdefault("host", data["host"])
    params.setdefault("start", T0 / 1000 - 60)
    params.setdefault("end", T0 / 1000 + 60)
    return console.request("GET", "/api/v1/metrics/range?" + urlencode(params), token=data["viewer"])


def by_labels(body: dict, key: str) -> dict:
    return {s["labels"][key]: s["points"] for s in body["series"]}


def test_raw_returns_stored_points(console, data):
    body = query(console, data, metric="node_load1").json()
    assert body["resolution"] == "raw"
    assert body["series"] == [{"labels": {"host": "query-1"},
                               "points": [[T0 + i * 10_000, 0.5 + i] for i in range(4)]}]


def test_rate_is_per_second_and_handles_a_counter_reset(console, data):
    body = query(console, data, metric="node_cpu_seconds_total", fn="rate", **{"label.mode": "idle"}).json()
    rates = {s["labels"]["cpu"]: s["points"] for s in body["series"]}
    assert rates["0"] == [[T0 + 10_000, 0.9], [T0 + 20_000, 0.9], [T0 + 30_000, 0.9]]
    # 200 -> 205 (+5), reset to 3 (counts as +3), 3 -> 8 (+5); over 10 s each.
    assert rates["1"] == [[T0 + 10_000, 0.5], [T0 + 20_000, 0.3], [T0 + 30_000, 0.5]]


def test_rate_window_wider_than_the_step(console, data):
    # Samples are 10 s apart: a 5 s step's own window never holds two of them, so without a
    # window there is no rate at all, as in Prometheus' rate(x[5s]).
    matchers = {"label.mode": "idle", "label.cpu": "0"}
    narrow = query(console, data, metric="node_cpu_seconds_total", fn="rate", step=5, **matchers).json()
    assert narrow["series"][0]["points"] == []
    # rate(x[20s]) every 5 s: every window holding two samples gives the counter's slope.
    wide = query(console, data, metric="node_cpu_seconds_total", fn="rate", step=5, window=20, **matchers).json()
    assert wide["series"][0]["points"] == [[T0 + k * 5_000, pytest.approx(0.9)] for k in range(2, 9)]


def test_group_by_and_agg_on_aligned_steps(console, data):
    body = query(console, data, metric="node_cpu_seconds_total", fn="rate", step=10,
                 group_by="mode", agg="avg").json()
    assert body["step"] == 10
    modes = by_labels(body, "mode")
    assert modes["idle"] == [[T0 + 10_000, pytest.approx(0.7)], [T0 + 20_000, pytest.approx(0.6)],
                             [T0 + 30_000, pytest.approx(0.7)]]
    assert modes["user"] == [[T0 + 10_000, pytest.approx(0.3)]] * 1 + [[T0 + 20_000, pytest.approx(0.3)],
                                                                         [T0 + 30_000, pytest.approx(0.3)]]
    total = query(console, data, metric="node_cpu_seconds_total", fn="rate", step=10, group_by="", agg="sum").json()
    assert total["series"] == [{"labels": {}, "points": [[T0 + 10_000, pytest.approx(2.0)],
                                                         [T0 + 20_000, pytest.approx(1.8)],
                                                         [T0 + 30_000, pytest.approx(2.0)]]}]


def test_label_matchers(console, data):
    eq = query(console, data, metric="node_filesystem_avail_bytes", **{"label.mountpoint": "/data"}).json()
    assert [s["labels"]["mountpoint"] for s in eq["series"]] == ["/data"]
    ne = query(console, data, metric="node_filesystem_avail_bytes", **{"label.mountpoint!": "/data"}).json()
    assert [s["labels"]["mountpoint"] for s in ne["series"]] == ["/"]
    rx = query(console, data, metric="node_filesystem_avail_bytes", **{"label.device~": "/dev/[ab]"}).json()
    assert len(rx["series"]) == 2



def test_the_metric_name_is_the_label_name_as_in_promql(console, data):
    grouped = query(console, data, metric="node_load1", step=20, group_by="__name__", agg="sum").json()
    assert [s["labels"] for s in grouped["series"]] == [{"__name__": "node_load1"}]
    assert grouped["series"][0]["points"] == [[T0, 1.5], [T0 + 20_000, 3.5]]
    plain = query(console, data, metric="node_load1", step=20).json()
    named = query(console, data, metric="node_load1", step=20, **{"label.__name__": "node_load1"}).json()
    assert named == plain and "__name__" not in named["series"][0]["labels"]
    assert query(console, data, metric="node_load1", **{"label.__name__": "node_load5"}).json()["series"] == []
    assert query(console, data, metric="node_load1", **{"label.__name__~": "node_load.*"}).json()["series"]

def test_step_alignment_keeps_the_last_sample_of_each_bucket(console, data):
    body = query(console, data, metric="node_load1", step=20).json()
    assert body["series"][0]["points"] == [[T0, 1.5], [T0 + 20_000, 3.5]]


@pytest.mark.parametrize("params, status, code", [
    ({"metric": "bad name"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "fn": "median"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "step": "-1"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "window": "0"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "start": "-1e300", "end": "1e300"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "start": 0, "end": 1e20}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "start": "soon"}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "label.device~": "("}, 400, "invalid_parameter"),
    ({"metric": "node_load1", "start": 100, "end": 50}, 422, "invalid_range"),
    ({"metric": "node_load1", "start": 0, "end": 10_000_000, "step": 1}, 422, "too_many_steps"),
])
def test_bad_queries_get_clear_errors(console, data, params, status, code):
    resp = query(console, data, **params)
    assert resp.status == status
    assert resp.json()["error"]["code"] == code


def test_hosts_summary(console, data):
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=data["viewer"]).json()}
    host = hosts["query-1"]
    assert host["up"] is True
    assert host["agent_version"] == "test"
    summary = host["summary"]
    # Idle rates over the last two samples: cpu0 0.9, cpu1 0.5 -> busy 1 - 0.7.
    assert summary["cpu_ratio"] == pytest.approx(0.3)
    assert summary["memory_ratio"] == pytest.approx(0.75)
    assert summary["disk_max_ratio"] == pytest.approx(0.9)
    assert summary["disk_max_mountpoint"] == "/data"  # the fuller of "/" (60 %) and "/data" (90 %)
    assert summary["load1"] == pytest.approx(3.5)


def test_host_goes_down_after_missed_intervals(console, data):
    services = console.services
    later = time.time() + 10 * 3 + 1
    hosts = {h["host"]: h for h in services.db.run(
        lambda s: type(services.query)(services.config.console, clock=lambda: later).hosts(s))}
    assert hosts["query-1"]["up"] is False


def test_metric_names(console, data):
    body = console.request("GET", "/api/v1/metrics/names?host=query-1", token=data["viewer"]).json()
    assert "node_load1" in body["names"] and "node_cpu_seconds_total" in body["names"]


def test_metric_names_refuse_an_end_before_the_start_as_the_range_query_does(console, data):
    for path in ("/api/v1/metrics/names?host=query-1&", "/api/v1/metrics/range?metric=node_load1&"):
        resp = console.request("GET", f"{path}start={T0 / 1000 + 60}&end={T0 / 1000}", token=data["viewer"])
        assert resp.status == 422 and resp.json()["error"]["code"] == "invalid_range", (path, resp.body)
