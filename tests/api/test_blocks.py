"""Cold blocks over HTTP on SQLite and PostgreSQL: samples older than the hot window are
packed by the rollup job, and the range API and PromQL answer exactly as they did from hot
rows; late and replayed samples, a crash in the middle of packing, host deletion."""
from __future__ import annotations

import random
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text

from console.storage import blocks, rollup_blocks
from console.storage.models import Base, Host, Series
from console.tiers.service import BLOCK_MS, HOUR_MS, TIERS, RollupService

NOW = time.time()
START = (int(NOW) - 7 * 3600) * 1000  # seven hours ago, Unix ms: more than one whole block is due


def host_series(seed: int) -> tuple[list, list]:
    """A counter (CPU seconds, reset once) and a gauge (available bytes) every 10 s with the
    agent's jitter, from START to now."""
    rnd = random.Random(seed)
    counter, gauge = [], []
    total, free = 1000.0 * seed, 8e9
    ts = START + rnd.randint(0, 999)
    i = 0
    while ts < NOW * 1000:
        total = 3.0 if i == 700 else round(total + rnd.random() * 9.7, 2)
        free = free + rnd.choice((-1, 1)) * rnd.randint(0, 64) * 4096
        counter.append([ts, total])
        gauge.append([ts, float(free)])
        ts += 10_000 + rnd.randint(-25, 25)
        i += 1
    return counter, gauge


DATA = {f"cpu{n}": host_series(n + 1) for n in range(3)}
# Every test runs after the before/after answers are taken: the other tests run the whole
# job (run_all), which would pack blk-1 too, and tests run in random order.
pytestmark = pytest.mark.usefixtures("before_and_after")


@pytest.fixture(scope="module")
def console(db_console):
    token = db_console.agent_token("blk-1")
    for cpu, (counter, gauge) in DATA.items():
        for i in range(0, len(counter), 500):
            status, body = db_console.push("blk-1", token, [
                {"name": "blk_cpu_seconds_total", "type": "counter", "labels": {"cpu": cpu},
                 "points": counter[i:i + 500]},
                {"name": "blk_available_bytes", "type": "gauge", "labels": {"cpu": cpu}, "points": gauge[i:i + 500]}])
            assert status == 200, body
    db_console.agent = token
    return db_console


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


def host_rows(console, table: str) -> int:
    """Rows of ``table`` (samples or sample_blocks) belonging to host blk-1."""
    rows = Base.metadata.tables[table]
    return console.services.db.run(lambda s: s.execute(
        select(func.count()).select_from(rows).join(Series, Series.id == rows.c.series_id)
        .join(Host, Host.id == Series.host_id).where(Host.name == "blk-1")).scalar())


def is_hot(console, name: str, cpu: str, ts: int) -> bool:
    """Whether the sample at ``ts`` is still a row of ``samples`` (not packed)."""
    return console.services.db.run(lambda s: s.execute(text(
        "SELECT COUNT(*) FROM samples x JOIN series s ON s.id = x.series_id WHERE s.name = :n AND s.labels = :l "
        "AND x.ts = :t"), {"n": name, "l": f'{{"cpu":"{cpu}"}}', "t": ts}).scalar()) > 0


def minute_row(console, name: str, cpu: str, minute: int) -> tuple:
    """``(min, max, sum, count, increase)`` of one series' 1m bucket, from its 1m rows and
    1m blocks together (the rollup job packs the 1m rows the 1h tier has read)."""
    def read(s):
        sid = s.execute(text("SELECT id FROM series WHERE name = :n AND labels = :l"),
                        {"n": name, "l": f'{{"cpu":"{cpu}"}}'}).scalar_one()
        return rollup_blocks.stored_rows(s, [sid], minute, minute + 60_000)[sid]
    rows = console.services.db.run(read)
    assert len(rows) == 1
    return rows[0][1:]


HOT_MS = 3_600_000  # the default hot window, one hour
PACKED_UNTIL = (int(NOW * 1000) - HOT_MS) // HOUR_MS * HOUR_MS  # samples before it are packed, by the hour
START_S, END_S = START / 1000, NOW
RANGE_QUERIES = [
    dict(metric="blk_available_bytes", start=START_S, end=END_S),  # raw samples, no step
    dict(metric="blk_cpu_seconds_total", start=START_S, end=END_S),
    dict(metric="blk_cpu_seconds_total", start=START_S + 1234, end=END_S - 4321, fn="rate"),
    dict(metric="blk_cpu_seconds_total", start=START_S, end=END_S, fn="increase", step=20),
    dict(metric="blk_available_bytes", start=START_S, end=END_S, fn="max", step=30),
    dict(metric="blk_available_bytes", start=START_S, end=END_S, fn="raw", step=15),
    dict(metric="blk_available_bytes", start=START_S, end=END_S, fn="avg", step=300, group_by="host"),
    dict(metric="blk_cpu_seconds_total", start=START_S, end=END_S, fn="rate", step=600),
]
PROMQL_RANGE = ["rate(blk_cpu_seconds_total[5m])", "max_over_time(blk_available_bytes[7m])",
                "blk_available_bytes", "sum by (host) (increase(blk_cpu_seconds_total[1h]))",
                "count_over_time(blk_available_bytes[2h])", "resets(blk_cpu_seconds_total[3h])"]
PROMQL_INSTANT = ["blk_available_bytes", "last_over_time(blk_cpu_seconds_total[6h])",
                  "min_over_time(blk_available_bytes[10h])"]


def answers(console, viewer) -> dict:
    out = {}
    for q in RANGE_QUERIES:
        resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(q), token=viewer)
        assert resp.status == 200, (q, resp.body)
        out[("range", tuple(q.items()))] = resp.json()
    for expr in PROMQL_RANGE:
        params = urlencode({"query": expr, "start": START_S, "end": END_S, "step": 60})
        resp = console.request("GET", f"/prometheus/api/v1/query_range?{params}", token=viewer)
        assert resp.status == 200, (expr, resp.body)
        out[("query_range", expr)] = resp.json()
    for expr in PROMQL_INSTANT:
        for at in (START_S + 3 * 3600 + 7, END_S - 60):
            resp = console.request("GET", "/prometheus/api/v1/query?" + urlencode({"query": expr, "time": at}),
                                   token=viewer)
            assert resp.status == 200, (expr, resp.body)
            out[("query", expr, at)] = resp.json()
    return out


@pytest.fixture(scope="module")
def before_and_after(console, viewer):
    """Answers with every tier rolled up and nothing packed, then again once packed."""
    rollups = console.services.rollups
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    assert host_rows(console, "sample_blocks") == 0
    hot = host_rows(console, "samples")
    before = answers(console, viewer)
    # Packed as of NOW, the time the data and PACKED_UNTIL are computed from: the real clock
    # may have passed a block boundary since this module was collected.
    packer = RollupService(console.services.db, console.services.config.console, clock=lambda: NOW)
    while packer.pack_step():
        pass
    return before, answers(console, viewer), hot


def test_packing_moves_samples_past_the_hot_window_into_blocks(console, before_and_after):
    _, _, hot_before = before_and_after
    cutoff = PACKED_UNTIL
    due = sum(1 for counter, gauge in DATA.values() for ts, _ in counter + gauge if ts < cutoff)
    assert due > 720 * 6  # more than a block of each of the six series
    assert host_rows(console, "samples") == hot_before - due
    stored = console.services.db.run(lambda s: s.execute(text(
        "SELECT b.start_ts, b.end_ts, b.count, b.data FROM sample_blocks b JOIN series s ON s.id = b.series_id "
        "WHERE s.name = 'blk_available_bytes' AND s.labels = '{\"cpu\":\"cpu0\"}' ORDER BY b.start_ts")).all())
    want = [p for p in DATA["cpu0"][1] if p[0] < cutoff]
    got = [[ts, v] for *_, data in stored for ts, v in blocks.decode(bytes(data))]
    assert got == want
    for start, end, count, data in stored:
        assert start % BLOCK_MS == 0 and start <= end < start + BLOCK_MS
        assert count == len(blocks.decode(bytes(data)))
    total_bytes = sum(len(bytes(r[3])) for r in stored)
    assert total_bytes < 4 * len(want)  # the codec's share: well under 4 bytes a sample


def test_range_api_and_promql_answer_exactly_as_from_hot_rows(before_and_after):
    before, after, _ = before_and_after
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key
    raw = before[("range", tuple(RANGE_QUERIES[0].items()))]["series"]
    by_cpu = {s["labels"]["cpu"]: s["points"] for s in raw}
    assert by_cpu == {cpu: [p for p in gauge if START <= p[0] <= NOW * 1000] for cpu, (_, gauge) in DATA.items()}


def test_late_and_replayed_samples_into_packed_blocks(console, viewer, before_and_after):
    counter, gauge = DATA["cpu1"]
    i = next(j for j, p in enumerate(gauge) if p[0] > PACKED_UNTIL - 3_600_000)  # inside a packed block
    assert not is_hot(console, "blk_available_bytes", "cpu1", gauge[i][0])
    late = [gauge[i][0] + 5_000, 1.5]  # between two packed samples
    replay = [gauge[i][0], -7.0]  # a packed timestamp: the first value stored is kept
    status, body = console.push("blk-1", console.agent, [
        {"name": "blk_available_bytes", "type": "gauge", "labels": {"cpu": "cpu1"}, "points": [late, replay]}])
    assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    want = sorted(gauge + [late])
    lo, hi = want[0][0] / 1000, want[-1][0] / 1000
    resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(
        dict(metric="blk_available_bytes", host="blk-1", start=lo, end=hi, **{"label.cpu": "cpu1"})), token=viewer)
    assert resp.status == 200, resp.body
    assert resp.json()["series"][0]["points"] == want
    minute = late[0] // 60_000 * 60_000
    in_minute = [v for ts, v in want if minute <= ts < minute + 60_000]
    row = minute_row(console, "blk_available_bytes", "cpu1", minute)[:4]
    assert tuple(row) == (min(in_minute), max(in_minute), pytest.approx(sum(in_minute), rel=1e-12), len(in_minute))
    at = (late[0] + 1) / 1000
    resp = console.request("GET", "/prometheus/api/v1/query?" + urlencode(
        {"query": 'blk_available_bytes{cpu="cpu1"}', "time": at}), token=viewer)
    assert resp.json()["data"]["result"][0]["value"] == [at, "1.5"]


def test_a_crash_in_the_middle_of_packing_loses_and_doubles_nothing(console, viewer, monkeypatch):
    host, base = "blk-crash", (int(NOW) - 6 * 3600) * 1000 // BLOCK_MS * BLOCK_MS
    token = console.agent_token(host)
    data = {f"d{k}": [[base + j * 10_000, float(k * 10_000 + j)] for j in range(1500)] for k in range(4)}
    status, body = console.push(host, token, [
        {"name": "blk_crash", "type": "gauge", "labels": {"disk": k}, "points": p} for k, p in data.items()])
    assert status == 200, body
    real_encode, calls = blocks.encode, []

    def dying(ts, values):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")  # after the DELETE, before the commit
        return real_encode(ts, values)
    monkeypatch.setattr(blocks, "encode", dying)
    with pytest.raises(RuntimeError, match="power cut"):
        RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    monkeypatch.setattr(blocks, "encode", real_encode)
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    for k, points in data.items():
        resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(
            dict(metric="blk_crash", host=host, start=base / 1000, end=NOW, **{"label.disk": k})), token=viewer)
        assert resp.json()["series"][0]["points"] == points
    packed = console.services.db.run(lambda s: s.execute(text(
        "SELECT SUM(b.count) FROM sample_blocks b JOIN series s ON s.id = b.series_id WHERE s.name = 'blk_crash'"
    )).scalar())
    assert packed and packed > 4 * 720


def test_deleting_a_host_deletes_its_blocks(console):
    admin = console.api_token("admin")
    token = console.agent_token("blk-gone")
    base = (int(NOW) - 8 * 3600) * 1000
    status, body = console.push("blk-gone", token, [{"name": "blk_gone", "type": "gauge", "labels": {},
                                                     "points": [[base + j * 10_000, 1.0] for j in range(1000)]}])
    assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    count = lambda: console.services.db.run(lambda s: s.execute(text(  # noqa: E731
        "SELECT COUNT(*) FROM sample_blocks b JOIN series s ON s.id = b.series_id WHERE s.name = 'blk_gone'")).scalar())
    assert count() > 0
    resp = console.request("DELETE", "/api/v1/hosts/blk-gone", token=admin)
    assert resp.status == 200, resp.body
    assert resp.json()["samples"] == 1000
    orphans = console.services.db.run(lambda s: s.execute(text(
        "SELECT COUNT(*) FROM sample_blocks WHERE series_id NOT IN (SELECT id FROM series)")).scalar())
    assert orphans == 0


def test_the_hot_window_setting_decides_what_is_packed(console):
    token = console.agent_token("blk-window")
    base = (int(NOW) - 9 * 3600) * 1000
    status, body = console.push(token=token, host="blk-window", metrics=[
        {"name": "blk_window", "type": "gauge", "labels": {}, "points": [[base + j * 60_000, 2.0] for j in range(500)]}])
    assert status == 200, body
    rows = lambda: console.services.db.run(lambda s: s.execute(text(  # noqa: E731
        "SELECT COUNT(*) FROM samples x JOIN series s ON s.id = x.series_id WHERE s.name = 'blk_window'")).scalar())
    wide = console.services.config.console.model_copy(update={"sample_hot_window": 12 * 3600.0})
    RollupService(console.services.db, wide, clock=lambda: NOW).run_all()
    assert rows() == 500  # all of it is younger than 12 h: no block is due
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()  # 1 h
    cutoff = (int(NOW * 1000) - HOT_MS) // HOUR_MS * HOUR_MS
    assert rows() == sum(1 for j in range(500) if base + j * 60_000 >= cutoff)


def test_a_host_silent_past_the_hot_window_keeps_its_summary(console, viewer):
    token = console.agent_token("blk-quiet")
    base = (int(NOW) - 5 * 3600) * 1000
    ts = [base + j * 10_000 for j in range(30)]
    status, body = console.push("blk-quiet", token, [
        {"name": "node_memory_MemTotal_bytes", "type": "gauge", "labels": {}, "points": [[t, 1000.0] for t in ts]},
        {"name": "node_memory_MemAvailable_bytes", "type": "gauge", "labels": {},
         "points": [[t, 1000.0 - j] for j, t in enumerate(ts)]},
        {"name": "node_load1", "type": "gauge", "labels": {}, "points": [[t, j / 10] for j, t in enumerate(ts)]}])
    assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    assert console.services.db.run(lambda s: s.execute(text(
        "SELECT COUNT(*) FROM samples x JOIN series s ON s.id = x.series_id JOIN hosts h ON h.id = s.host_id "
        "WHERE h.name = 'blk-quiet'")).scalar()) == 0  # all packed
    hosts = console.request("GET", "/api/v1/hosts", token=viewer).json()
    summary = next(h for h in hosts if h["host"] == "blk-quiet")["summary"]
    assert summary["memory_ratio"] == pytest.approx(1 - 971 / 1000)
    assert summary["load1"] == 2.9


def test_a_late_counter_sample_recomputes_its_minute_from_blocks(console, before_and_after):
    counter, _ = DATA["cpu2"]
    i = next(j for j, p in enumerate(counter) if p[0] > PACKED_UNTIL - 3_600_000 and p[1] > counter[j - 1][1] + 1)
    assert not is_hot(console, "blk_cpu_seconds_total", "cpu2", counter[i - 1][0])
    late = [counter[i - 1][0] + 3_000, counter[i - 1][1] + 0.5]  # between two packed samples, no reset
    status, body = console.push("blk-1", console.agent, [
        {"name": "blk_cpu_seconds_total", "type": "counter", "labels": {"cpu": "cpu2"}, "points": [late]}])
    assert status == 200, body
    RollupService(console.services.db, console.services.config.console, clock=lambda: NOW).run_all()
    series = sorted(counter + [late])
    minute = late[0] // 60_000 * 60_000
    pairs = [(a, b) for a, b in zip(series, series[1:]) if minute <= b[0] < minute + 60_000]
    increase = sum(b[1] - a[1] if b[1] >= a[1] else b[1] for a, b in pairs)
    in_minute = [v for ts, v in series if minute <= ts < minute + 60_000]
    row = minute_row(console, "blk_cpu_seconds_total", "cpu2", minute)
    assert tuple(row) == (min(in_minute), max(in_minute), pytest.approx(sum(in_minute), rel=1e-12), len(in_minute),
                          pytest.approx(increase, rel=1e-12))


def test_a_block_is_made_by_its_first_hour_and_its_second_hour_merged_into_it(console, viewer):
    """Packing goes by the hour: the first hour of a 2 h block past the hot window makes the
    block, a late sample into that hour is merged into it, and the second hour is merged
    into it an hour later: one block with every sample, read back exactly."""
    token = console.agent_token("blk-hourly")
    block = (int(NOW * 1000) - 10 * 3_600_000) // BLOCK_MS * BLOCK_MS  # a whole 2 h block, 8-10 hours ago
    points = [[block + 4_321 + j * 10_000, float(j % 97)] for j in range(720)]  # its two hours at 10 s
    status, body = console.push("blk-hourly", token, [
        {"name": "blk_hourly", "type": "gauge", "labels": {}, "points": points}])
    assert status == 200, body
    stored = lambda: console.services.db.run(lambda s: s.execute(text(  # noqa: E731
        "SELECT b.start_ts, b.end_ts, b.count, b.data FROM sample_blocks b JOIN series s ON s.id = b.series_id "
        "WHERE s.name = 'blk_hourly' ORDER BY b.start_ts")).all())
    hot = lambda: console.services.db.run(lambda s: s.execute(text(  # noqa: E731
        "SELECT COUNT(*) FROM samples x JOIN series s ON s.id = x.series_id WHERE s.name = 'blk_hourly'")).scalar())
    config = console.services.config.console
    # One hour past the hot window after the block's first hour: that hour is due, not the second.
    first_hour = (block + HOUR_MS + config.sample_hot_window * 1000 + 600_000) / 1000
    RollupService(console.services.db, config, clock=lambda: first_hour).run_all()
    (start, end, count, data), = stored()
    assert (start, count, hot()) == (block, 360, 360)
    assert [[t, v] for t, v in blocks.decode(bytes(data))] == points[:360] and end == points[359][0]
    late = [points[100][0] + 5_000, -1.25]  # between two samples of the packed first hour
    status, body = console.push("blk-hourly", token, [
        {"name": "blk_hourly", "type": "gauge", "labels": {}, "points": [late]}])
    assert status == 200, body
    RollupService(console.services.db, config, clock=lambda: first_hour).run_all()
    (start, end, count, data), = stored()
    assert (start, count, hot()) == (block, 361, 360)
    RollupService(console.services.db, config, clock=lambda: NOW).run_all()  # the second hour is due now
    (start, end, count, data), = stored()
    want = sorted(points + [late])
    assert (start, end, count, hot()) == (block, points[-1][0], 721, 0)
    assert [[t, v] for t, v in blocks.decode(bytes(data))] == want
    resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(dict(
        metric="blk_hourly", host="blk-hourly", start=block / 1000, end=(block + BLOCK_MS) / 1000)), token=viewer)
    assert resp.status == 200, resp.body
    assert resp.json()["series"][0]["points"] == want
