"""A dashboard's first load of a day at a 1 m step over HTTP, on SQLite and PostgreSQL, once the
rollup job has packed the 1m tier into day blocks: every point per series is the 1m tier's
own bucket value, bit for bit (``sum / count`` of the row or packed row, as stored), for
series that share their minutes and for series that start later or stop for a while (whose
stamps differ from their neighbours'), and the one aggregated line is their average.

The expected points come from the stored 1m tier (``rollup_blocks.stored_rows``: blocks and
rows as tuples), not from the range API's read path; the cache of closed buckets is off, so
every answer is a first load."""
from __future__ import annotations

import random
import time
from urllib.parse import urlencode

import orjson
import pytest
from sqlalchemy import text

from console.query import service
from console.storage import rollup_blocks
from console.tiers.service import TIERS, RollupService
from tests.conftest import console_on

NOW = time.time()
DAY_S = 86_400
START_MS = (int(NOW) - 28 * 3600) * 1000  # 28 h back: a packed UTC day and today's rows
HOST = "qfl-a"
GAP = (int(NOW) - 15 * 3600) * 1000, (int(NOW) - 14 * 3600 + 1234) * 1000  # the agent stopped for an hour
LATE_START_MS = (int(NOW) - 9 * 3600 - 17) * 1000


def samples(seed: int, start_ms: int, gap: tuple[int, int] | None = None) -> list[list]:
    """A gauge every 20 s (jittered) from ``start_ms`` to now, values with long mantissas
    (a bit for bit comparison sees a float read as text and parsed back differently)."""
    rnd = random.Random(seed)
    out, ts = [], start_ms + rnd.randint(0, 999)
    while ts < NOW * 1000:
        if gap is None or not gap[0] <= ts < gap[1]:
            out.append([ts, rnd.random() * 10 ** rnd.randint(-6, 12) * rnd.choice((1, -1))])
        ts += 20_000 + rnd.randint(-25, 25)
    return out


RACK = {"0": "a", "1": "b", "2": "a", "3": "a", "4": "b"}
SERIES = {"0": samples(1, START_MS), "1": samples(2, START_MS), "2": samples(3, START_MS, GAP),
          "3": samples(4, LATE_START_MS), "4": samples(5, START_MS)}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    with console_on(request.param, tmp_path_factory, query_cache_points=0) as harness:
        token = harness.agent_token(HOST)
        for dev, points in SERIES.items():
            for i in range(0, len(points), 2000):
                status, body = harness.push(HOST, token, [{"name": "qfl_temp", "type": "gauge", "labels": {"dev": dev, "rack": RACK[dev]},
                                                           "points": points[i:i + 2000]}])
                assert status == 200, body
        job = RollupService(harness.services.db, harness.services.config.console, clock=lambda: NOW)
        for tier in TIERS:
            while job.rollup_step(tier.name):
                pass
        while job.pack_1m_step():
            pass
        yield harness


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


def stored(console) -> dict[str, list[tuple]]:
    """``{dev: [(ts, min, max, sum, count, increase), ...]}``: the 1m tier, blocks and rows."""
    def read(session):
        ids = dict(session.execute(text("SELECT labels, id FROM series WHERE name = 'qfl_temp'")).all())
        rows = rollup_blocks.stored_rows(session, list(ids.values()), 0, 2 ** 62)
        return {label: rows[sid] for label, sid in ids.items()}
    return {orjson.loads(labels)["dev"]: rows for labels, rows in console.services.db.run(read).items()}


def day(console, viewer, **params) -> dict:
    end = NOW // 60 * 60 - 600  # closed minutes only: every bucket is a rollup row
    q = {"metric": "qfl_temp", "start": end - DAY_S, "end": end, "step": 60, "fn": "avg", **params}
    resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(q), token=viewer)
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["resolution"] == "1m"
    return {"start": int(q["start"] * 1000), "end": int(end * 1000), **body}


def test_the_1m_tier_is_packed_into_day_blocks_with_the_last_hours_as_rows(console):
    blocks, rows = console.services.db.run(lambda s: s.execute(text(
        "SELECT (SELECT COUNT(*) FROM rollup_1m_blocks), (SELECT COUNT(*) FROM rollup_1m)")).one())
    assert blocks >= len(SERIES) and rows > 0


def test_each_series_answers_its_1m_buckets_bit_for_bit(console, viewer):
    body = day(console, viewer)
    want = {dev: [[ts, sm / n] for ts, _, _, sm, n, _ in rows
                  if (body["start"] // 60_000 * 60_000) <= ts <= body["end"]]
            for dev, rows in stored(console).items()}
    got = {s["labels"]["dev"]: s["points"] for s in body["series"]}
    assert sorted(got) == sorted(SERIES)
    stamps = {dev: [p[0] for p in points] for dev, points in got.items()}
    assert stamps["0"] != stamps["3"] and stamps["0"] != stamps["2"]  # series whose minutes differ
    assert len(stamps["3"]) < 600 < len(stamps["2"]) < len(stamps["0"]) - 55
    for dev in SERIES:
        assert got[dev] == want[dev], dev  # exact: the stored value, no float read back from text


def test_the_answer_is_the_json_of_the_stored_buckets_byte_for_byte(console, viewer):
    """The body, not only its values: each point is ``[ts, value]`` with the stamp an
    integer and the value written as orjson writes that stored float (exponents, signs,
    shortest digits), in the key order of every range answer."""
    end = NOW // 60 * 60 - 600
    q = {"metric": "qfl_temp", "start": end - DAY_S, "end": end, "step": 60, "fn": "avg"}
    resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(q), token=viewer)
    assert resp.status == 200, resp.body
    body = resp.json()
    first = int(q["start"] * 1000) // 60_000 * 60_000
    want = {dev: [[ts, sm / n] for ts, _, _, sm, n, _ in rows if first <= ts <= int(end * 1000)]
            for dev, rows in stored(console).items()}
    assert list(body) == ["metric", "step", "fn", "resolution", "series"]
    expected = {**body, "series": [{"labels": s["labels"], "points": want[s["labels"]["dev"]]}
                                   for s in body["series"]]}
    assert any("e-" in repr(p[1]) for p in want["0"]) and any(p[1] < 0 for p in want["0"])
    assert resp.body == orjson.dumps(expected)


def test_five_minute_maxima_per_series(console, viewer):
    body = day(console, viewer, fn="max", step=300)
    got = {s["labels"]["dev"]: s["points"] for s in body["series"]}
    first = body["start"] // 300_000 * 300_000
    for dev, rows in stored(console).items():
        buckets: dict[int, float] = {}
        for ts, _, mx, _, _, _ in rows:
            if first <= ts < body["end"] // 300_000 * 300_000 + 300_000:
                b = ts // 300_000 * 300_000
                buckets[b] = max(buckets.get(b, mx), mx)
        assert got[dev] == [[b, v] for b, v in sorted(buckets.items())], dev


def test_one_line_averages_the_series_minute_by_minute(console, viewer):
    body = day(console, viewer, group_by="", agg="avg")
    per_minute: dict[int, list[float]] = {}
    for rows in stored(console).values():
        for ts, _, _, sm, n, _ in rows:
            if (body["start"] // 60_000 * 60_000) <= ts <= body["end"]:
                per_minute.setdefault(ts, []).append(sm / n)
    (line,) = body["series"]
    assert [p[0] for p in line["points"]] == sorted(per_minute)
    for ts, value in line["points"]:
        values = per_minute[ts]
        assert value == pytest.approx(sum(values) / len(values), rel=1e-9, abs=1e-12), ts


@pytest.mark.parametrize("fn,step,agg", [("avg", 60, "max"), ("avg", 60, "min"), ("max", 300, "sum"),
                                         ("min", 120, "avg")])
def test_lines_per_rack_aggregate_their_series_buckets(console, viewer, fn, step, agg):
    body = day(console, viewer, fn=fn, step=step, group_by="rack", agg=agg)
    step_ms = step * 1000
    first, last = body["start"] // step_ms * step_ms, body["end"] // step_ms * step_ms
    buckets: dict[str, dict[int, dict[str, float]]] = {}  # rack -> bucket -> dev -> the series' value
    for dev, rows in stored(console).items():
        for ts, mn, mx, sm, n, _ in rows:
            b = ts // step_ms * step_ms
            if first <= b <= last:
                per = buckets.setdefault(RACK[dev], {}).setdefault(b, {})
                if fn == "avg":
                    per[dev] = sm / n  # a 60 s step: one row per bucket
                else:
                    per[dev] = (max if fn == "max" else min)(per.get(dev, mx if fn == "max" else mn),
                                                              mx if fn == "max" else mn)
    combine = {"max": max, "min": min, "sum": sum, "avg": lambda v: sum(v) / len(v)}[agg]
    assert [s["labels"] for s in body["series"]] == [{"rack": "a"}, {"rack": "b"}]
    for line in body["series"]:
        want = buckets[line["labels"]["rack"]]
        assert [p[0] for p in line["points"]] == sorted(want)
        for ts, value in line["points"]:
            expected = combine(list(want[ts].values()))
            if agg in ("min", "max"):
                assert value == expected, ts  # one of the stored values, as stored
            else:
                assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), ts


@pytest.mark.parametrize("fn,step,agg", [("avg", 60, "avg"), ("avg", 60, "sum"), ("max", 300, "max"),
                                         ("min", 120, "min")])
def test_sqlite_aggregates_a_few_series_at_a_time_as_all_at_once(console, viewer, monkeypatch, fn, step, agg):
    """On SQLite a cross-series aggregate is read a part of the series at a time (here 2: a
    part of 2, 2 and 1 series, in every rack) and the parts' partial aggregates combined:
    the answer is the one-statement answer (min/max exactly, sums within 1e-9 relative)."""
    if console.kind != "sqlite":
        pytest.skip("PostgreSQL aggregates in one statement (hash aggregation)")
    params = dict(fn=fn, step=step, group_by="rack", agg=agg)
    whole = day(console, viewer, **params)
    monkeypatch.setattr(service, "_SQLITE_GROUP_SERIES", 2)
    parts = day(console, viewer, **params)
    assert [s["labels"] for s in parts["series"]] == [s["labels"] for s in whole["series"]]
    for mine, theirs in zip(parts["series"], whole["series"]):
        assert [p[0] for p in mine["points"]] == [p[0] for p in theirs["points"]]
        for (_, value), (_, expected) in zip(mine["points"], theirs["points"]):
            assert value == (expected if agg in ("min", "max") else pytest.approx(expected, rel=1e-9, abs=1e-12))


def test_a_damaged_block_is_an_error_answer_and_the_next_queries_answer_in_full(console, viewer):
    """A block that does not decode, met while the blocks are still arriving (PostgreSQL
    sends them one by one): that query answers a JSON error, nothing is left half-read on
    the database connection, and the queries after it answer in full again."""
    before = day(console, viewer)

    def damage(session):
        sid, start, data = session.execute(text(
            "SELECT b.series_id, b.start_ts, b.data FROM rollup_1m_blocks b JOIN series s ON s.id = b.series_id "
            "WHERE s.name = 'qfl_temp' ORDER BY b.series_id, b.start_ts")).all()[1]  # not the last one read
        session.execute(text("UPDATE rollup_1m_blocks SET data = :d WHERE series_id = :s AND start_ts = :t"),
                        {"d": b"\x01\x00\x00\x00garbage", "s": sid, "t": start})
        return sid, start, bytes(data)

    sid, start, data = console.services.db.run(damage)
    try:
        end = NOW // 60 * 60 - 600
        q = {"metric": "qfl_temp", "start": end - DAY_S, "end": end, "step": 60, "fn": "avg"}
        resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(q), token=viewer)
        assert resp.status >= 500 and "error" in resp.json(), resp.body[:300]
    finally:
        console.services.db.run(lambda s: s.execute(text(
            "UPDATE rollup_1m_blocks SET data = :d WHERE series_id = :s AND start_ts = :t"),
            {"d": data, "s": sid, "t": start}))
    for _ in range(6):  # more than the connections the pool keeps
        assert day(console, viewer) == before
