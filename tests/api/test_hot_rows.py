"""Hot rows read back exactly, on SQLite (``samples`` clustered by minute, then series:
console/storage/hot_samples.py) and PostgreSQL: ranges that cut minutes, series whose
samples arrived out of order and late, the latest values of the host page, PromQL, and
the rows' minute on SQLite."""
from __future__ import annotations

import random
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.storage.hot_samples import BUCKET_MS

NOW_MS = int(time.time() * 1000)
T0 = (NOW_MS - 50 * 60_000) // 60_000 * 60_000 + 7_777  # 50 minutes ago, not on a minute
CPUS = ("0", "1", "2", "3")


def series_points(seed: int) -> list[list]:
    """40 minutes of a gauge every 10 s with the agent's jitter."""
    rnd = random.Random(seed)
    return [[T0 + k * 10_000 + rnd.randint(-40, 40), round(rnd.random() * 100, 3)] for k in range(240)]


DATA = {cpu: series_points(i + 1) for i, cpu in enumerate(CPUS)}


@pytest.fixture(scope="module")
def console(db_console):
    """Batches of one point per series, as agents send, in time order; then, late, the
    points of minutes 12-14 of cpu 2 held back until the rest was stored."""
    token = db_console.agent_token("hot-1")
    held = [p for p in DATA["2"] if T0 + 12 * 60_000 <= p[0] < T0 + 15 * 60_000]
    for k in range(240):
        metrics = [{"name": "hot_gauge", "type": "gauge", "labels": {"cpu": cpu}, "points": [DATA[cpu][k]]}
                   for cpu in CPUS if not (cpu == "2" and DATA[cpu][k] in held)]
        status, body = db_console.push("hot-1", token, metrics)
        assert status == 200, body
    status, body = db_console.push("hot-1", token, [{"name": "hot_gauge", "type": "gauge",
                                                     "labels": {"cpu": "2"}, "points": held[::-1]}])
    assert status == 200, body
    db_console.viewer = db_console.api_token("viewer")
    return db_console


def raw(console, start_ms: int, end_ms: int) -> dict:
    params = urlencode({"metric": "hot_gauge", "host": "hot-1", "start": start_ms / 1000, "end": end_ms / 1000})
    resp = console.request("GET", "/api/v1/metrics/range?" + params, token=console.viewer)
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["resolution"] == "raw"
    return {s["labels"]["cpu"]: s["points"] for s in body["series"]}


@pytest.mark.parametrize("start_min, end_min", [(0, 40), (3.3, 3.9), (11.5, 15.2), (12, 13), (-5, 2.25), (39.9, 45)])
def test_a_range_reads_exactly_the_samples_within_it(console, start_min, end_min):
    lo, hi = T0 + int(start_min * 60_000), T0 + int(end_min * 60_000)
    want = {cpu: [p for p in points if lo <= p[0] <= hi] for cpu, points in DATA.items()}
    got = raw(console, lo, hi)
    assert {cpu: got.get(cpu, []) for cpu in CPUS} == want


def test_promql_reads_the_hot_rows(console):
    t = T0 + 14 * 60_000
    params = urlencode({"query": 'count_over_time(hot_gauge{cpu="2"}[3m])', "time": t / 1000})
    resp = console.request("GET", f"/prometheus/api/v1/query?{params}", token=console.viewer)
    assert resp.status == 200, resp.body
    result = resp.json()["data"]["result"]
    # Prometheus' range selector: (t - 3m, t]
    assert [float(r["value"][1]) for r in result] == [sum(1 for ts, _ in DATA["2"] if t - 180_000 < ts <= t)]


def test_the_host_page_shows_the_latest_sample(console):
    from console.storage.blocks import latest_samples

    def read(session):
        ids = session.execute(text("SELECT s.labels, s.id FROM series s JOIN hosts h ON h.id = s.host_id "
                                   "WHERE h.name = 'hot-1'")).all()
        return {labels: latest_samples(session, sid, 3) for labels, sid in ids}

    latest = console.services.db.run(read)
    assert {labels: [list(p) for p in points] for labels, points in latest.items()} == \
        {f'{{"cpu":"{cpu}"}}': points[-3:] for cpu, points in DATA.items()}


def test_sqlite_rows_are_keyed_by_their_minute_first(console):
    if console.services.db.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps (series_id, ts)")

    def read(session):
        key = sorted((r[5], r[1]) for r in session.execute(text("PRAGMA table_info(samples)")) if r[5])
        wrong = session.execute(text(f"SELECT COUNT(*) FROM samples WHERE bucket != ts / {BUCKET_MS}")).scalar()
        total = session.execute(text("SELECT COUNT(*) FROM samples")).scalar()
        return key, wrong, total

    key, wrong, total = console.services.db.run(read)
    assert [name for _, name in key] == ["bucket", "series_id", "ts"]
    assert (wrong, total) == (0, sum(len(p) for p in DATA.values()))
