"""Range queries on rollup tiers over HTTP, on SQLite and PostgreSQL: answers through the
cache of closed buckets and the cross-series rollups equal those of the per-series,
uncached path on the same data (a repeat, a window moved forward over newly closed
buckets, a late sample that reopens a closed bucket), and a dashboard's 24 h x 500 series
per-series query answers with the default limits."""
from __future__ import annotations

import time
from urllib.parse import urlencode

import orjson
import pytest
from sqlalchemy import text

from console.query.service import Matcher, QueryService, RangeQuery
from console.storage.models import RollupWatermark
from tests.conftest import console_on

NOW = time.time()
BASE = (int(NOW) // 3600 - 3) * 3_600_000  # a whole hour, three hours ago, Unix ms
SPAN = 2 * 3_600_000 + 30 * 60_000  # 2.5 hours of samples from BASE


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    """A console with the cross-series rollups on (``rollup_1m_host``), the rollup job
    driven by the tests."""
    with console_on(request.param, tmp_path_factory, rollup_1m_host=True) as harness:
        yield harness


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


def push(console, host, metrics):
    status, body = console.push(host, console.agent_token(host), metrics)
    assert status == 200, body


def series_points(k, kind):
    """A sample every 10 s over SPAN; counters grow by a series-dependent step and reset once."""
    points, value = [], 0.0
    for i in range(SPAN // 10_000):
        if kind == "counter":
            value = 3.0 if i == 500 + 40 * k else value + (i * (k + 3)) % 7 + 0.5
        else:
            value = float((i * 37 + k * 11) % 101) + k / 8
        points.append([BASE + i * 10_000 + k * 700, value])
    return points


@pytest.fixture(scope="module")
def loaded(console):
    for host in ("qc-1", "qc-2"):
        metrics = []
        for k in range(3):
            labels = {"core": str(k), "site": "a" if k < 2 else "b"}
            metrics.append({"name": "qc_temp", "type": "gauge", "labels": labels,
                            "points": series_points(k + (host == "qc-2") * 3, "gauge")})
            metrics.append({"name": "qc_requests_total", "type": "counter", "labels": labels,
                            "points": series_points(k + (host == "qc-2") * 3, "counter")})
        for i in range(0, len(metrics[0]["points"]), 300):
            push(console, host, [{**m, "points": m["points"][i:i + 300]} for m in metrics])
    console.services.rollups.run_all()
    return console


SHAPES = [
    {"metric": "qc_temp", "step": 60, "fn": "avg"},
    {"metric": "qc_temp", "step": 60, "fn": "raw", "host": "qc-1"},
    {"metric": "qc_temp", "step": 300, "fn": "min"},
    {"metric": "qc_temp", "step": 300, "fn": "max", "label.site": "a"},
    {"metric": "qc_temp", "step": 60, "fn": "avg", "group_by": "", "agg": "avg"},
    {"metric": "qc_temp", "step": 60, "fn": "max", "group_by": "host", "agg": "sum"},
    {"metric": "qc_temp", "step": 600, "fn": "avg", "group_by": "site", "agg": "min"},
    {"metric": "qc_temp", "step": 3600, "fn": "avg", "group_by": "host,site", "agg": "max"},
    {"metric": "qc_requests_total", "step": 60, "fn": "rate"},
    {"metric": "qc_requests_total", "step": 300, "fn": "increase", "group_by": "host", "agg": "sum"},
    {"metric": "qc_requests_total", "step": 60, "fn": "rate", "group_by": "", "agg": "avg"},
    # Read from the cross-series rollups (group_by= or host, a 60 s step, no label matchers):
    {"metric": "qc_temp", "step": 60, "fn": "min", "group_by": "host", "agg": "min"},
    {"metric": "qc_temp", "step": 60, "fn": "raw", "group_by": "", "agg": "sum", "host": "qc-2"},
    {"metric": "qc_temp", "step": 60, "fn": "max", "group_by": "", "agg": "max"},
    {"metric": "qc_requests_total", "step": 60, "fn": "increase", "group_by": "host", "agg": "max"},
    {"metric": "qc_requests_total", "step": 60, "fn": "rate", "group_by": "", "agg": "min"},
    {"metric": "qc_requests_total", "step": 60, "fn": "increase", "group_by": "", "agg": "sum"},
]


def range_query(params, start, end):
    """The RangeQuery the handler builds from ``params`` (console/query/handlers.py)."""
    group_by = None
    if "group_by" in params:
        group_by = tuple(p for p in params["group_by"].split(",") if p)
    matchers = tuple(Matcher(k[len("label."):], "=", v) for k, v in params.items() if k.startswith("label."))
    return RangeQuery(metric=params["metric"], start=start, end=end, step=params["step"], fn=params["fn"],
                      host=params.get("host"), matchers=matchers, group_by=group_by,
                      agg=params.get("agg", "sum"))


class _Answer(Exception):
    """Carries an answer out of a transaction that must roll back."""


def uncached(console, params, start, end):
    """The answer of the path as it was before the cache of closed buckets and the
    cross-series rollups, on the same data: no cache (query_cache_points 0), and every
    bucket read per series (the ``1m_host`` watermark deleted in a transaction that rolls
    back)."""
    config = console.services.config.console.model_copy(update={"query_cache_points": 0})
    service = QueryService(config, clock=console.services.clock, db=console.services.db)

    def per_series(session):
        session.execute(text("DELETE FROM rollup_watermarks WHERE tier = '1m_host'"))
        raise _Answer(service.range(session, range_query(params, start, end)))
    try:
        console.services.db.run(per_series)
    except _Answer as answer:
        return orjson.loads(orjson.dumps(answer.args[0]))
    raise AssertionError("unreachable")


def over_http(console, viewer, params, start, end):
    resp = console.request("GET", "/api/v1/metrics/range?" + urlencode({**params, "start": start, "end": end}),
                           token=viewer)
    assert resp.status == 200, resp.json()
    return resp.json()


def assert_same(got, want, params):
    """Equal answers: exact per series; across series within 1e-9 relative, as the
    database adds a group's values in an order of its own, statement by statement."""
    if "group_by" not in params:
        assert got == want
        return
    assert {k: v for k, v in got.items() if k != "series"} == {k: v for k, v in want.items() if k != "series"}
    assert [s["labels"] for s in got["series"]] == [s["labels"] for s in want["series"]]
    for a, b in zip(got["series"], want["series"]):
        assert a["points"] == [[t, pytest.approx(v, rel=1e-9, abs=1e-12)] for t, v in b["points"]]


def set_mark(console, done_until):
    def write(session):
        session.get(RollupWatermark, "1m").done_until = done_until
    console.services.db.run(write)


@pytest.mark.parametrize("params", SHAPES, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_cached_answers_equal_the_uncached_path(loaded, viewer, params):
    cache = loaded.services.query.closed_buckets
    start, end = BASE / 1000 - 120, (BASE + SPAN) / 1000 + 300
    first = over_http(loaded, viewer, params, start, end)
    hits = cache.hits
    again = over_http(loaded, viewer, params, start, end)
    later = over_http(loaded, viewer, params, start + 1800, end + 7)  # the window moved on
    assert cache.hits == hits + 2  # both answered from the cache
    want = uncached(loaded, params, start, end)
    assert sum(len(s["points"]) for s in want["series"]) > 10
    assert_same(first, want, params)
    assert_same(again, want, params)
    assert_same(later, uncached(loaded, params, start + 1800, end + 7), params)


def test_buckets_closed_since_are_read_and_appended(loaded, viewer):
    """The rollup watermark moves on between two queries: the second reads the buckets
    closed since and answers as the uncached path."""
    mark = loaded.services.db.run(lambda s: s.get(RollupWatermark, "1m").done_until)
    params = {"metric": "qc_temp", "step": 60, "fn": "avg", "group_by": "site", "agg": "avg"}
    start, end = BASE / 1000, (BASE + SPAN) / 1000
    try:
        # As if the job had rolled up only the first hour: the rest is read from raw.
        set_mark(loaded, BASE + 3_600_000)
        early = over_http(loaded, viewer, params, start, end)
        assert_same(early, uncached(loaded, params, start, end), params)
    finally:
        set_mark(loaded, mark)
    cache = loaded.services.query.closed_buckets
    hits = cache.hits
    late = over_http(loaded, viewer, params, start, end)
    assert cache.hits == hits + 1
    assert_same(late, uncached(loaded, params, start, end), params)
    assert [len(s["points"]) for s in late["series"]] == [150, 150]


@pytest.mark.parametrize("params", [SHAPES[0], SHAPES[4], SHAPES[9], SHAPES[14]],
                         ids=["per-series", "avg-all", "increase", "increase-by-host"])
def test_a_late_sample_reopens_a_cached_bucket(loaded, viewer, params):
    start, end = BASE / 1000, (BASE + SPAN) / 1000
    before = over_http(loaded, viewer, params, start, end)
    assert_same(before, uncached(loaded, params, start, end), params)
    # One sample late into a closed minute of one series of each metric (ingest keeps
    # the first sample of a timestamp, so it is a new one), rolled up by the job.
    stamp = BASE + 3_600_000 + 5_555 + 10_000 * SHAPES.index(params)
    labels = {"core": "1", "site": "a"}
    push(loaded, "qc-1", [{"name": "qc_temp", "type": "gauge", "labels": labels, "points": [[stamp, 5000.0]]},
                          {"name": "qc_requests_total", "type": "counter", "labels": labels,
                           "points": [[stamp, 1e6]]}])
    loaded.services.rollups.run_all()
    after = over_http(loaded, viewer, params, start, end)
    assert_same(after, uncached(loaded, params, start, end), params)
    changed = [(a, b) for x, y in zip(after["series"], before["series"]) for a, b in zip(x["points"], y["points"])
               if a[0] == b[0] and abs(a[1] - b[1]) > 1e-6 * max(1.0, abs(b[1]))]
    assert changed  # the late sample shows


def test_a_day_of_500_series_answers_per_series_with_the_default_limits(console, viewer):
    """24 h x 500 series at 1 m (720,000 points): a dashboard's per-series query answers
    with the default ``max_points_per_query``."""
    config = console.services.config.console
    assert config.max_points_per_query == type(config)().max_points_per_query  # the default stands
    done = console.services.db.run(lambda s: s.get(RollupWatermark, "1m"))
    end_ms = (done.done_until if done else int(time.time() * 1000)) // 60_000 * 60_000
    start_ms = end_ms - 86_400_000

    def write(session):
        conn = session.connection()
        host_id = conn.execute(text("INSERT INTO hosts (name, first_seen, labels) VALUES ('qc-day', 0, '{}') "
                                    "RETURNING id")).scalar()
        ids = [conn.execute(text(
            "INSERT INTO series (host_id, name, labels, type, first_ts, last_ts) "
            "VALUES (:h, 'qc_day', :l, 'gauge', :a, :b) RETURNING id"),
            {"h": host_id, "l": orjson.dumps({"i": str(i)}).decode(), "a": start_ms, "b": end_ms - 1}).scalar()
            for i in range(500)]
        # What the rollup job writes for a gauge sampled every 10 s: the values are the series' index.
        rows = [(sid, start_ms + m * 60_000, float(i), float(i), 6.0 * i, 6)
                for i, sid in enumerate(ids) for m in range(1440)]
        cursor = conn.connection.cursor()
        if console.kind == "sqlite":
            cursor.executemany("INSERT INTO rollup_1m (series_id, ts, min, max, sum, count) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows)
        else:
            with cursor.copy("COPY rollup_1m (series_id, ts, min, max, sum, count) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        if done is None:
            session.add(RollupWatermark(tier="1m", done_until=end_ms, generation=0, updated_at=time.time()))
    console.services.db.run(write)
    body = over_http(console, viewer, {"metric": "qc_day", "step": 60, "fn": "avg"},
                     start_ms / 1000, end_ms / 1000 - 60)
    assert body["resolution"] == "1m"
    assert len(body["series"]) == 500
    for s in body["series"]:
        assert s["points"] == [[start_ms + m * 60_000, float(s["labels"]["i"])] for m in range(1440)]
