"""PromQL counter rates over long ranges read the cross-series 1m rows (``rollup_1m_host``)
where the rollup job keeps them, less the rows of the series the selector leaves out, on
SQLite and PostgreSQL, over HTTP: the answers are the per-series bucket sums, computed
here from the pushed samples (the definitions of tests/api/test_promql_rollups.py), and a
host row changed in the database changes exactly the steps whose window holds it, so the
answer is read from those rows. Shapes the host rows cannot answer (a host's series in two
output groups) read the per-series rows and are right too.
"""
from __future__ import annotations

from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.tiers.service import RollupService
from tests.api.test_promql_rollups import HOSTS, Range, bucket_rate, close, dataset, prometheus_rate
from tests.conftest import console_on

NAME = "node_cpu_seconds_total"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    with console_on(request.param, tmp_path_factory, rollup_1m_host=True) as c:
        c.range = r = Range()
        c.data = data = dataset(r)
        for host in HOSTS:
            token = c.agent_token(host)
            series = [(labels, points) for labels, points in data.items() if labels[0] == host]
            for i in range(0, len(series[0][1]), 500):
                status, body = c.push(host, token, [
                    {"name": NAME, "type": "counter", "labels": {"cpu": cpu, "mode": mode},
                     "points": points[i:i + 500]} for (_, cpu, mode), points in series])
                assert status == 200, body
        RollupService(c.services.db, c.services.config.console, clock=lambda: r.now).run_all()
        marks = c.services.db.run(lambda s: dict(s.execute(text(
            "SELECT tier, done_until FROM rollup_watermarks")).all()))
        # the host rows are complete from before the range's first window to the 1m watermark
        assert marks["1m_host"] <= (r.start - 300) * 1000 < marks["1m"], marks
        c.watermark_s = marks["1m"] // 1000
        c.viewer = c.api_token("viewer", f"host-rollups-{request.param}")
        yield c


def query_range(console, query: str, end: int | None = None) -> dict[tuple, dict[int, float]]:
    r = console.range
    resp = console.request("GET", "/prometheus/api/v1/query_range?" + urlencode(
        {"query": query, "start": r.start, "end": end or r.end, "step": 60}), token=console.viewer)
    assert resp.status == 200, resp.body
    return {tuple(sorted(s["metric"].items())): {int(t): float(v) for t, v in s["values"]}
            for s in resp.json()["data"]["result"]}


def expected(console, keep, group) -> dict[tuple, dict[int, float]]:
    """Per output label set (``group(host, cpu, mode)``) and step, the sum over the kept
    series of their bucket rate below the 1m watermark, Prometheus' rate past it."""
    out: dict[tuple, dict[int, float]] = {}
    for (host, cpu, mode), points in console.data.items():
        if not keep(host, cpu, mode):
            continue
        for t in console.range.steps:
            v = (bucket_rate if t <= console.watermark_s else prometheus_rate)(points, t * 1000)
            if v is not None:
                steps = out.setdefault(group(host, cpu, mode), {})
                steps[t] = steps.get(t, 0.0) + v
    return out


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, steps in want.items():
        assert sorted(got[key]) == sorted(steps), key
        for t, v in steps.items():
            assert close(got[key][t], v, 1e-9), (key, t, got[key][t], v)


CASES = [
    ('sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))',
     lambda h, c, m: m != "idle", lambda h, c, m: (("instance", h),)),
    ('sum(rate(node_cpu_seconds_total[5m]))', lambda h, c, m: True, lambda h, c, m: ()),
    ('sum by (instance) (rate(node_cpu_seconds_total{mode=~"user|system", instance="r2"}[5m]))',
     lambda h, c, m: m in ("user", "system") and h == "r2", lambda h, c, m: (("instance", h),)),
    ('sum without (cpu, mode) (rate(node_cpu_seconds_total{mode!="system"}[5m]))',
     lambda h, c, m: m != "system", lambda h, c, m: (("host", h), ("instance", h), ("job", "node"))),
    # each host's series fall in two groups: read per series
    ('sum by (cpu) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))',
     lambda h, c, m: m != "idle", lambda h, c, m: (("cpu", c),)),
]


@pytest.mark.parametrize("query, keep, group", CASES, ids=[c[0] for c in CASES])
def test_long_range_sums_match_the_per_series_buckets(console, query, keep, group):
    assert_same(query_range(console, query), expected(console, keep, group))


def test_the_answer_is_read_from_the_host_rows(console):
    query = CASES[0][0]
    before = query_range(console, query)
    bucket = (console.range.start + 3600) * 1000  # a minute well below the watermark
    change = "UPDATE rollup_1m_host SET inc_sum = inc_sum + :d WHERE name = :n AND ts = :ts " \
             "AND host_id = (SELECT id FROM hosts WHERE name = 'r1')"

    def shift(d: float) -> None:
        def run(s) -> None:
            assert s.execute(text(change), {"d": d, "n": NAME, "ts": bucket}).rowcount == 1
            s.commit()
        console.services.db.run(run)

    cache = console.services.promql.closed_sums
    cells, cache.max_size = cache.max_size, 0  # read the database, not the bucket sums kept from `before`
    shift(60.0)
    try:
        after = query_range(console, query)
    finally:
        shift(-60.0)
        cache.max_size = cells
    r1, r2 = (("instance", "r1"),), (("instance", "r2"),)
    assert after[r2] == before[r2]
    # the steps t whose window [t - 5m, t) holds the bucket gain 60 / 300 s; no other
    moved = {t for t in console.range.steps if t * 1000 - 300_000 <= bucket < t * 1000}
    assert len(moved) == 5
    for t, v in after[r1].items():
        assert close(v, before[r1][t] + (0.2 if t in moved else 0.0), 1e-9), (t, v, before[r1][t])
    assert query_range(console, query) == before


def test_a_repeated_or_moved_window_reads_only_the_newer_buckets(console):
    query, keep, group = CASES[0]
    cache = console.services.promql.closed_sums
    r = console.range
    want = expected(console, keep, group)
    earlier = query_range(console, query, end=r.end - 1800)  # the dashboard half an hour ago
    hits = cache.hits
    again = query_range(console, query)  # its window moved on: older buckets from the cache
    assert cache.hits == hits + 1
    assert_same(again, want)
    assert_same(earlier, {key: {t: v for t, v in steps.items() if t <= r.end - 1800} for key, steps in want.items()})


def test_a_late_sample_reopens_the_buckets_kept(console):
    """A counter sample arrives late into a rolled-up minute (higher than the next sample,
    so that one counts as a reset): the job rolls the minute up again, and the answer, read
    before into the cache, shows it."""
    query, keep, group = CASES[0]
    r = console.range
    before = query_range(console, query)  # kept in the cache
    points = console.data[("r1", "0", "user")]
    i = next(i for i, (ts, _) in enumerate(points) if ts > (r.start + 2 * 3600) * 1000)
    late = (points[i - 1][0] + 5_000, points[i][1] + 1000.0)  # between two samples 15 s apart
    status, body = console.push("r1", console.agent_token("r1"), [
        {"name": NAME, "type": "counter", "labels": {"cpu": "0", "mode": "user"}, "points": [list(late)]}])
    assert status == 200 and body["accepted_samples"] == 1, body
    points.insert(i, late)  # the tests' expectations follow the stored data from now on
    RollupService(console.services.db, console.services.config.console, clock=lambda: r.now).run_all()
    got = query_range(console, query)
    assert_same(got, expected(console, keep, group))
    r1 = (("instance", "r1"),)
    moved = [t for t, v in got[r1].items() if not close(v, before[r1][t], 1e-9)]
    assert moved and all(t * 1000 - 300_000 <= late[0] + 60_000 and late[0] - 60_000 < t * 1000 for t in moved), moved
