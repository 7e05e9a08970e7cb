"""The Prometheus query API over HTTP (``/prometheus/api/v1/``) on data written through
the ingest API, on SQLite and PostgreSQL: the label model, selector and window edges,
Grafana's requests, and bad input answered as Prometheus answers it."""
from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

import pytest

from tests.harness import ConsoleHarness

T0 = (int(time.time()) // 60 - 30) * 60  # a whole minute, half an hour ago (Unix s)
API = "/prometheus/api/v1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def console(db_console):
    return db_console


@pytest.fixture(scope="module")
def viewer(console):
    """A viewer token, after pushing: host ``pq-1`` (agent series: a gauge every 10 s from T0
    to T0+90, a counter with a reset) and host ``pq-2`` (a remote-written-like series that
    carries its own ``instance`` and ``job``)."""
    token = console.agent_token("pq-1")
    gauge = [[(T0 + 10 * i) * 1000, float(i)] for i in range(10)]
    counter = [[(T0 + 10 * i) * 1000, v] for i, v in enumerate([10, 20, 30, 5, 15, 25, 35, 45, 55, 65])]
    status, body = console.push("pq-1", token, [
        {"name": "pq_temp", "type": "gauge", "labels": {"room": "a"}, "points": gauge},
        {"name": "pq_requests_total", "type": "counter", "labels": {"code": "200"}, "points": counter},
        {"name": "pq_dup_a", "type": "gauge", "labels": {}, "points": gauge[:2]},
        {"name": "pq_dup_b", "type": "gauge", "labels": {}, "points": gauge[:2]},
    ])
    assert status == 200, body
    token2 = console.agent_token("pq-2")
    status, body = console.push("pq-2", token2, [
        {"name": "pq_temp", "type": "gauge", "labels": {"room": "b", "instance": "10.0.0.7:9100", "job": "app"},
         "points": [[(T0 + 5) * 1000, 42.0]]}])
    assert status == 200, body
    return console.api_token("viewer")


def get(console, token, path, **params):
    return console.request("GET", f"{API}/{path}?{urlencode(params, doseq=True)}", token=token)


def query(console, token, expr, at):
    resp = get(console, token, "query", query=expr, time=at)
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["status"] == "success"
    return body["data"]


def values(data):
    return {tuple(sorted(s["metric"].items())): s["value"][1] for s in data["result"]}


def test_label_model(console, viewer):
    data = query(console, viewer, "pq_temp", T0 + 20)
    assert data["resultType"] == "vector"
    metrics = sorted((s["metric"] for s in data["result"]), key=lambda m: m["host"])
    # Agent series: instance = host, job = node; stored labels win over both.
    assert metrics == [
        {"__name__": "pq_temp", "host": "pq-1", "instance": "pq-1", "job": "node", "room": "a"},
        {"__name__": "pq_temp", "host": "pq-2", "instance": "10.0.0.7:9100", "job": "app", "room": "b"},
    ]
    assert [s["value"] for s in data["result"] if s["metric"]["host"] == "pq-1"] == [[T0 + 20, "2"]]
    assert len(query(console, viewer, 'pq_temp{job="app", instance=~"10\\\\.0\\\\..*"}', T0 + 20)["result"]) == 1
    assert len(query(console, viewer, 'pq_temp{job="node"}', T0 + 20)["result"]) == 1
    # Regex matchers are anchored: "pq" matches no host name in full.
    assert query(console, viewer, 'pq_temp{host=~"pq"}', T0 + 20)["result"] == []


def test_lookback_window_is_five_minutes_inclusive(console, viewer):
    last = T0 + 90  # pq-1's last pq_temp sample
    at_edge = query(console, viewer, 'pq_temp{host="pq-1"}', last + 300)["result"]
    assert [s["value"] for s in at_edge] == [[last + 300, "9"]]
    assert query(console, viewer, 'pq_temp{host="pq-1"}', last + 300.001)["result"] == []
    assert query(console, viewer, 'pq_temp{host="pq-1"}', T0 - 0.001)["result"] == []


def test_range_selector_includes_both_ends(console, viewer):
    data = query(console, viewer, 'pq_temp{host="pq-1"}[20s]', T0 + 40)
    assert data["resultType"] == "matrix"
    assert data["result"][0]["values"] == [[T0 + 20, "2"], [T0 + 30, "3"], [T0 + 40, "4"]]


def test_rate_and_increase_handle_the_reset(console, viewer):
    # Samples 10..65 with a reset after 30: increase over [T0, T0+90] = 20 (10 -> 30) + 5 (the
    # reset, from 0) + 60 (5 -> 65) = 85, with no extrapolation (the first and last samples
    # sit on the window's edges).
    got = values(query(console, viewer, "increase(pq_requests_total[90s])", T0 + 90))
    assert list(got.values()) == ["85"]
    got = values(query(console, viewer, "rate(pq_requests_total[90s])", T0 + 90))
    assert float(list(got.values())[0]) == pytest.approx(85 / 90)
    assert list(values(query(console, viewer, "resets(pq_requests_total[90s])", T0 + 90)).values()) == ["1"]


def test_query_range_steps_and_series(console, viewer):
    resp = get(console, viewer, "query_range", query='sum by (job) (pq_temp)', start=T0, end=T0 + 60, step=30)
    assert resp.status == 200, resp.body
    result = resp.json()["data"]["result"]
    assert resp.json()["data"]["resultType"] == "matrix"
    by_job = {s["metric"]["job"]: s["values"] for s in result}
    assert by_job["node"] == [[T0, "0"], [T0 + 30, "3"], [T0 + 60, "6"]]
    assert by_job["app"] == [[T0 + 30, "42"], [T0 + 60, "42"]]  # from T0+5 on, within the lookback


def test_grafana_requests(console, viewer):
    """What Grafana's Prometheus data source sends: form-encoded POSTs, the metric name
    list, series lookups with match[], and the health check's buildinfo/query."""
    body = urlencode({"query": "pq_temp", "start": T0, "end": T0 + 30, "step": 15}).encode()
    resp = console.request("POST", f"{API}/query_range", body, token=viewer, headers=FORM)
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert doc["status"] == "success" and doc["data"]["resultType"] == "matrix"
    assert all(isinstance(v, str) for s in doc["data"]["result"] for _, v in s["values"])
    body = urlencode({"query": "1+1", "time": T0}).encode()
    resp = console.request("POST", f"{API}/query", body, token=viewer, headers=FORM)
    assert resp.json() == {"status": "success", "data": {"resultType": "scalar", "result": [T0, "2"]}}
    names = get(console, viewer, "label/__name__/values").json()
    assert names["status"] == "success" and {"pq_temp", "pq_requests_total"} <= set(names["data"])
    series = get(console, viewer, "series", **{"match[]": ['pq_temp{host="pq-2"}', "pq_requests_total"]},
                 start=T0, end=T0 + 100).json()
    assert series["status"] == "success"
    assert sorted(s["__name__"] + "/" + s["host"] for s in series["data"]) == ["pq_requests_total/pq-1",
                                                                             "pq_temp/pq-2"]
    # Outside the samples' time range, no series.
    assert get(console, viewer, "series", **{"match[]": "pq_temp"}, start=T0 - 7200, end=T0 - 3600).json()["data"] == []
    labels = get(console, viewer, "labels", **{"match[]": "pq_temp"}).json()["data"]
    assert labels == ["__name__", "host", "instance", "job", "room"]
    jobs = get(console, viewer, "label/job/values").json()["data"]
    assert {"node", "app"} <= set(jobs)
    info = get(console, viewer, "status/buildinfo").json()
    assert info["status"] == "success" and info["data"]["version"].startswith("2.")
    meta = get(console, viewer, "metadata", metric="pq_requests_total").json()
    assert meta == {"status": "success", "data": {"pq_requests_total": [{"type": "counter", "help": "", "unit": ""}]}}
    assert get(console, viewer, "status/runtimeinfo").json()["status"] == "success"
    # Explore's exemplar request: none are stored; an unknown API path is a JSON 404, not a page.
    assert get(console, viewer, "query_exemplars", query="pq_temp", start=T0, end=T0 + 60).json() == {
        "status": "success", "data": []}
    missing = get(console, viewer, "no_such_endpoint")
    assert missing.status == 404 and missing.headers["content-type"].startswith("application/json")


def test_queries_before_the_raw_retention_warn(console, viewer):
    """PromQL reads raw samples only: an answer that needed older ones says so."""
    old = T0 - 8 * 86400  # raw samples are kept 7 days by default
    resp = get(console, viewer, "query", query="pq_temp", time=old)
    assert resp.status == 200, resp.body
    assert resp.json()["data"]["result"] == []
    (warning,) = resp.json()["warnings"]
    assert "raw retention (7 days)" in warning
    resp = get(console, viewer, "query_range", query="rate(pq_temp[5m])", start=old, end=T0, step=3600)
    assert "raw retention" in resp.json()["warnings"][0]
    recent = get(console, viewer, "query", query="pq_temp", time=T0 + 20).json()
    assert "warnings" not in recent
    assert "warnings" not in get(console, viewer, "query", query="1", time=old).json()  # no samples read


def test_rfc3339_time(console, viewer):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 20))
    assert query(console, viewer, "time()", stamp)["result"] == [T0 + 20, str(T0 + 20)]


@pytest.mark.parametrize("params, status, error_type, fragment", [
    ({"query": "sum(pq_temp"}, 400, "bad_data", "unclosed left parenthesis"),
    ({"query": "rate(pq_temp)"}, 400, "bad_data", "expected type matrix"),
    ({"query": ""}, 400, "bad_data", "query"),
    ({"query": "pq_temp", "time": "yesterday"}, 400, "bad_data", 'invalid parameter "time"'),
    ({"query": "pq_temp offset 300000000y"}, 400, "bad_data", "out of range"),
    ({"query": "pq_temp @ 1e15"}, 422, "execution", "@ modifier"),
    ({"query": "ln(-1)"}, 400, "bad_data", "expected type instant vector in call to function 'ln', got scalar"),
    ({"query": "topk(NaN, pq_temp)"}, 422, "execution", "Scalar value NaN overflows int64"),
    ({"query": "day_of_week(vector(1e20))"}, 200, None, None),
    ({"query": "info(pq_temp)"}, 422, "execution", "info()"),
    ({"query": "limitk(1, pq_temp)"}, 422, "execution", "limitk()"),
    ({"query": "rate({__name__=~\"pq_dup_.*\"}[1m])"}, 422, "execution", "same labelset"),
    ({"query": "pq_temp + on() pq_temp"}, 422, "execution", "many-to-many matching not allowed"),
    ({"query": 'label_replace(pq_temp, "x", "$1", "room", "(")'}, 422, "execution", "invalid regular expression"),
    ({"query": 'label_replace(pq_temp, "1x", "$1", "room", "(.*)")'}, 422, "execution", "destination label"),
])
def test_bad_query(console, viewer, params, status, error_type, fragment):
    resp = get(console, viewer, "query", **{"time": T0 + 20, **params})
    assert resp.status == status, resp.body
    body = resp.json()
    if status == 200:  # beyond the calendar: NaN, not a 500
        assert body["data"]["result"][0]["value"][1] == "NaN"
        return
    assert body["status"] == "error" and body["errorType"] == error_type, body
    assert fragment in body["error"], body


@pytest.mark.parametrize("params, fragment", [
    ({"start": T0 + 60, "end": T0, "step": 15}, "end timestamp must not be before start time"),
    ({"start": T0, "end": T0 + 60, "step": 0}, "zero or negative query resolution step"),
    ({"start": T0, "end": T0 + 60, "step": "-5"}, "step"),
    ({"start": T0, "end": T0 + 86400 * 10, "step": 1}, "exceeded maximum resolution of 11,000 points"),
    ({"end": T0, "step": 15}, 'invalid parameter "start"'),
    ({"start": T0, "end": T0 + 60, "step": "soon"}, 'invalid parameter "step"'),
])
def test_bad_range(console, viewer, params, fragment):
    resp = get(console, viewer, "query_range", query="pq_temp", **params)
    assert resp.status == 400, resp.body
    assert resp.json()["errorType"] == "bad_data" and fragment in resp.json()["error"], resp.body


@pytest.mark.parametrize("expr", ["-" * 20000 + "pq_temp", "+".join(["pq_temp"] * 5000), "(" * 7000 + "1" + ")" * 7000])
def test_deep_expressions_are_refused_and_the_console_lives(console, viewer, expr):
    """The parser recurses natively: thousands of chained operators would overflow its stack
    and kill the console; they are refused before parsing."""
    body = urlencode({"query": expr, "time": T0}).encode()
    resp = console.request("POST", f"{API}/query", body, token=viewer, headers=FORM)
    assert resp.status == 400, resp.body[:200]
    assert resp.json()["errorType"] == "bad_data" and "too complex" in resp.json()["error"]
    assert console.request("GET", "/healthz").status == 200
    ok = "+".join(["pq_temp"] * 200)  # long but legitimate
    assert get(console, viewer, "query", query=ok, time=T0 + 20).status == 200


def test_range_query_of_a_range_vector_is_refused(console, viewer):
    resp = get(console, viewer, "query_range", query="pq_temp[1m]", start=T0, end=T0 + 60, step=15)
    assert resp.status == 400 and "range vector" in resp.json()["error"], resp.body


@pytest.mark.parametrize("path, params, fragment", [
    ("series", {}, "no match[] parameter provided"),
    ("series", {"match[]": "rate(x[5m])"}, "match[]"),
    ("series", {"match[]": 'x{a=~"(a)\\\\1"}'}, "match[]"),
    ("labels", {"match[]": "{"}, "match[]"),
    ("label/1bad/values", {}, "invalid label name"),
])
def test_bad_metadata_requests(console, viewer, path, params, fragment):
    resp = get(console, viewer, path, **params)
    assert resp.status == 400, resp.body
    assert resp.json()["status"] == "error" and fragment in resp.json()["error"], resp.body


def test_credentials(console, viewer):
    resp = console.request("GET", f"{API}/query?query=1")
    assert resp.status == 401 and resp.json() == {"status": "error", "errorType": "unauthorized",
                                                  "error": "credentials are missing or invalid"}
    resp = console.request("GET", f"{API}/query?query=1", token=console.agent_token("pq-3"))
    assert resp.status == 403 and resp.json()["status"] == "error"


def test_timeout_answers_503_and_the_ioloop_keeps_serving(console, viewer):
    """A query over its deadline answers Prometheus' timeout; while it evaluates (on a
    reader thread) the console keeps answering other requests."""
    answer = {}

    def slow():
        answer["resp"] = get(console, viewer, "query", query="count_over_time(vector(1)[1y:1s])", time=T0,
                             timeout="2s")

    thread = threading.Thread(target=slow)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    latencies = []
    while thread.is_alive() and time.monotonic() - started < 30:
        t = time.monotonic()
        assert console.request("GET", "/healthz").status == 200
        latencies.append(time.monotonic() - t)
        time.sleep(0.05)
    thread.join(30)
    resp = answer["resp"]
    assert resp.status == 503, resp.body
    assert resp.json() == {"status": "error", "errorType": "timeout",
                           "error": "query timed out in expression evaluation"}
    assert 1.9 < time.monotonic() - started < 10
    # A loop blocked by the evaluation would hold /healthz for the whole 2 s; a busy shared
    # machine can still delay one answer by a few hundred milliseconds (and so fit fewer
    # probes into the 2 s: the count only shows that the probes ran during the evaluation).
    assert len(latencies) >= 3 and max(latencies) < 1.0, latencies


def test_max_samples_answers_422(tmp_path):
    harness = ConsoleHarness(tmp_path, promql_max_samples=50).start()
    try:
        token = harness.agent_token("ms-1")
        points = [[(T0 + i) * 1000, float(i)] for i in range(100)]
        assert harness.push("ms-1", token, [{"name": "ms_gauge", "type": "gauge", "labels": {},
                                              "points": points}])[0] == 200
        viewer = harness.api_token("viewer")
        ok = get(harness, viewer, "query", query="count_over_time(ms_gauge[30s])", time=T0 + 99)
        assert ok.status == 200 and ok.json()["data"]["result"][0]["value"][1] == "31"
        resp = get(harness, viewer, "query", query="count_over_time(ms_gauge[2m])", time=T0 + 99)
        assert resp.status == 422, resp.body
        assert resp.json() == {"status": "error", "errorType": "execution",
                               "error": "query processing would load too many samples into memory in query "
                                        "execution"}
    finally:
        harness.close()
