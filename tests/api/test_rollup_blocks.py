"""Cold 1m rollup blocks over HTTP on SQLite and PostgreSQL: the rollup job packs the 1m rows
the 1h tier has read into one block per series and day, and the range API (1m and 1h
resolution, per series and grouped) and PromQL's 1m paths answer as they did from rows; a
late sample's recomputed bucket wins over its block and is merged into it; a packing run
killed with SIGKILL loses and doubles nothing; retention to the minute; series lifecycle;
host deletion."""
from __future__ import annotations

import math
import random
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.storage import rollup_blocks
from console.storage.partitions import BLOCK_1M_MS, ensure_partitions, partitions
from console.storage.partitions import TABLES as PARTITIONED
from console.tiers.service import TIERS, RollupService
from tests.conftest import console_on
from tests.integration.procs import REPO, child_env

NOW = time.time()
START = (int(NOW) - 30 * 3600) * 1000 + 1234  # 30 hours ago, Unix ms: a UTC day boundary lies between
HOSTS = ("r1m-a", "r1m-b")
MINUTE_MS = 60_000


def host_series(seed: int, start: int = START, every: int = 20_000) -> tuple[list, list]:
    """A counter (CPU seconds, reset once) and a gauge (free bytes), every ``every`` ms with
    the agent's jitter, from ``start`` to now."""
    rnd = random.Random(seed)
    counter, gauge = [], []
    total, free = 1000.0 * seed, 8e9
    ts = start + rnd.randint(0, 999)
    i = 0
    while ts < NOW * 1000:
        total = 3.0 if i == 2000 else round(total + rnd.random() * 19.3, 2)
        free = free + rnd.choice((-1, 1)) * rnd.randint(0, 64) * 4096
        counter.append([ts, total])
        gauge.append([ts, float(free)])
        ts += every + rnd.randint(-25, 25)
        i += 1
    return counter, gauge


DATA = {(host, cpu): host_series(n) for n, (host, cpu) in enumerate((h, c) for h in HOSTS for c in ("0", "1"))}
pytestmark = pytest.mark.usefixtures("packed")


def job(console, **settings) -> RollupService:
    config = console.services.config.console
    return RollupService(console.services.db, config.model_copy(update=settings) if settings else config,
                         clock=lambda: NOW)


def push(console, host: str, metrics: list) -> None:
    token = console.agent_token(host)
    for metric in metrics:
        for i in range(0, len(metric["points"]), 2000):
            status, body = console.push(host, token, [{**metric, "points": metric["points"][i:i + 2000]}])
            assert status == 200, body


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    # The caches of closed buckets off: every answer below is read from the database.
    with console_on(request.param, tmp_path_factory, query_cache_points=0) as harness:
        for (host, cpu), (counter, gauge) in DATA.items():
            push(harness, host, [
                {"name": "r1m_cpu_seconds_total", "type": "counter", "labels": {"cpu": cpu}, "points": counter},
                {"name": "r1m_free_bytes", "type": "gauge", "labels": {"cpu": cpu}, "points": gauge}])
        yield harness


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


def series_ids(session, where: str, **params) -> list[int]:
    return list(session.execute(text(f"SELECT s.id FROM series s JOIN hosts h ON h.id = s.host_id WHERE {where} "
                                     "ORDER BY s.id"), params).scalars())


MODULE_HOSTS = "h.name IN ('r1m-a', 'r1m-b')"  # the series of DATA, which no test changes


def minute_rows(console, where: str = MODULE_HOSTS, **params) -> dict[int, list[tuple]]:
    """``{series_id: [(ts, min, max, sum, count, increase), ...]}`` of the 1m tier, rows and
    blocks together."""
    return console.services.db.run(lambda s: rollup_blocks.stored_rows(s, series_ids(s, where, **params), 0, 2**62))


def count(console, sql: str, **params) -> int:
    return console.services.db.run(lambda s: s.execute(text(sql), params).scalar())


START_S, END_S = START / 1000 + 600.5, NOW - 30
RANGE_QUERIES = [
    dict(metric="r1m_free_bytes", fn="avg", step=60),  # per series, the rows are the buckets
    dict(metric="r1m_free_bytes", fn="min", step=300),  # per series, buckets of 5 rows
    dict(metric="r1m_free_bytes", fn="max", step=60, group_by="host"),
    dict(metric="r1m_free_bytes", fn="avg", step=420, agg="avg"),
    dict(metric="r1m_free_bytes", fn="raw", step=60, group_by="cpu", agg="max"),
    dict(metric="r1m_free_bytes", fn="max", step=120, **{"label.cpu": "1"}),
    dict(metric="r1m_cpu_seconds_total", fn="rate", step=60),
    dict(metric="r1m_cpu_seconds_total", fn="increase", step=900, group_by="host"),
    dict(metric="r1m_cpu_seconds_total", fn="rate", step=120, group_by="cpu", agg="min"),
    dict(metric="r1m_cpu_seconds_total", fn="increase", step=180, host="r1m-b"),
    dict(metric="r1m_free_bytes", fn="avg", step=3600),  # the 1h tier, rolled up from the 1m tier
    dict(metric="r1m_cpu_seconds_total", fn="increase", step=3600, group_by="host"),
]
Q_START, Q_END = math.ceil(START / 60_000) * 60 + 3600, int(NOW) // 60 * 60 - 600  # whole minutes
PROMQL_RANGE = [("rate(r1m_cpu_seconds_total[5m])", 300),  # per series bucket increases on the 1m tier
                ("sum by (cpu) (increase(r1m_cpu_seconds_total[10m]))", 600),
                ('sum(rate(r1m_cpu_seconds_total{cpu="0"}[2m]))', 120),
                ("sum without (cpu) (rate(r1m_cpu_seconds_total[3m]))", 180)]


def answers(console, viewer) -> dict:
    out = {}
    for q in RANGE_QUERIES:
        q = {"start": START_S, "end": END_S, **q}
        resp = console.request("GET", "/api/v1/metrics/range?" + urlencode(q), token=viewer)
        assert resp.status == 200, (q, resp.body)
        body = resp.json()
        assert body["resolution"] == ("1h" if q["step"] == 3600 else "1m")
        assert body["series"] and all(len(s["points"]) > 100 or q["step"] == 3600 for s in body["series"]), q
        out[("range", tuple(q.items()))] = body
    for expr, step in PROMQL_RANGE:
        params = urlencode({"query": expr, "start": Q_START, "end": Q_END, "step": step})
        resp = console.request("GET", f"/prometheus/api/v1/query_range?{params}", token=viewer)
        assert resp.status == 200, (expr, resp.body)
        assert resp.json()["data"]["result"], expr
        out[("query_range", expr)] = resp.json()
    return out


def close(a, b, path="") -> None:
    """``a == b`` but for numbers (and PromQL's numeric strings), which may differ by 1e-9
    relative: an aggregate adds the same values in another order."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or (isinstance(a, str) and isinstance(b, str) and a != b):
        assert float(b) == pytest.approx(float(a), rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def packed(console, viewer):
    """Answers with every tier rolled up and raw samples packed as deployed, then again
    once the 1m tier is packed too; the 1m tier's content before."""
    rollups = job(console)
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    while rollups.pack_step():
        pass
    assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks") == 0
    rows = minute_rows(console)
    before = answers(console, viewer)
    while rollups.pack_1m_step():
        pass
    return before, answers(console, viewer), rows


def test_packing_moves_the_1m_rows_the_1h_tier_read_into_daily_blocks(console, packed):
    _, _, rows_before = packed
    one_h = count(console, "SELECT done_until FROM rollup_watermarks WHERE tier = '1h'")
    assert one_h >= (int(NOW * 1000) - 2 * 3_600_000) // 3_600_000 * 3_600_000
    # packed: what the 1h tier has read and the 1 h hot window (the default) has left
    due = min(one_h, (int(NOW * 1000) - 3_600_000) // 3_600_000 * 3_600_000)
    ours = f"series_id IN (SELECT s.id FROM series s JOIN hosts h ON h.id = s.host_id WHERE {MODULE_HOSTS})"
    assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE ts < :due AND " + ours, due=due) == 0
    assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE ts >= :due AND " + ours, due=due) > 0  # hot, or unread
    assert minute_rows(console) == rows_before  # every bucket, bit for bit, blocks and rows together
    stored = console.services.db.run(lambda s: s.execute(text(
        f"SELECT series_id, start_ts, end_ts, count, data FROM rollup_1m_blocks WHERE {ours} "
        "ORDER BY series_id, start_ts")).all())
    assert len({sid for sid, *_ in stored}) == 8 and len(stored) >= 16  # at least two days of each series
    for sid, start, end, n, data in stored:
        rows = rollup_blocks.decode(bytes(data))
        assert start % BLOCK_1M_MS == 0 and start <= int(rows.ts[0]) and int(rows.ts[-1]) == end < start + BLOCK_1M_MS
        assert n == len(rows) and end < due
    packed_rows = sum(n for *_, n, _ in stored)
    size = sum(len(bytes(data)) for *_, data in stored)
    assert packed_rows > 8 * 1500
    assert size < 8 * packed_rows  # bytes per 1m row, ~35 as a row
    if console.kind == "postgres":  # held by the dated partitions the console made, not the default one
        assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks_default") == 0


def test_range_api_and_promql_answer_as_from_rows(packed):
    before, after, _ = packed
    assert after.keys() == before.keys()
    for key in before:
        close(before[key], after[key], str(key))


def test_a_late_sample_recomputes_its_minute_over_the_block_then_is_packed(console, viewer):
    _, gauge = host_series(11)
    push(console, "r1m-late", [{"name": "r1m_free_bytes", "type": "gauge", "labels": {"cpu": "1"}, "points": gauge}])
    rollups = job(console)
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    while rollups.pack_1m_step():
        pass
    late_ts = int(NOW * 1000) - 5 * 3_600_000 + 7_000  # a packed hour
    minute = late_ts // MINUTE_MS * MINUTE_MS
    sid = console.services.db.run(lambda s: series_ids(s, "h.name = 'r1m-late'"))[0]
    assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE series_id = :sid AND ts = :ts", sid=sid, ts=minute) == 0
    push(console, "r1m-late", [{"name": "r1m_free_bytes", "type": "gauge", "labels": {"cpu": "1"},
                                "points": [[late_ts, 1e15]]}])
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    # Recomputed as a row, which the readers take over the block's value of that minute.
    assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE series_id = :sid AND ts = :ts", sid=sid, ts=minute) == 1
    in_minute = [v for ts, v in sorted(gauge + [[late_ts, 1e15]]) if minute <= ts < minute + MINUTE_MS]

    def maxima() -> tuple[list, list]:
        q = dict(metric="r1m_free_bytes", host="r1m-late", fn="max", start=minute / 1000 - 600, end=minute / 1000 + 600,
                 **{"label.cpu": "1"})
        one_m = console.request("GET", "/api/v1/metrics/range?" + urlencode({**q, "step": 60}), token=viewer).json()
        hour = dict(q, start=minute // 3_600_000 * 3600, end=minute // 3_600_000 * 3600 + 3599, step=3600)
        one_h = console.request("GET", "/api/v1/metrics/range?" + urlencode(hour), token=viewer).json()
        return one_m["series"][0]["points"], one_h["series"][0]["points"]

    points, hourly = maxima()
    assert [minute, 1e15] in points and len(points) == 21
    assert [p for p in points if p[0] != minute] == [[t, max(v for ts, v in gauge if t <= ts < t + MINUTE_MS)]
                                                     for t, _ in points if t != minute]
    assert hourly == [[minute // 3_600_000 * 3_600_000, 1e15]]  # the 1h tier re-read blocks and the row
    stored = {r[0]: r for r in minute_rows(console, "s.id = :i", i=sid)[sid]}
    assert stored[minute] == (minute, min(in_minute), 1e15, pytest.approx(sum(in_minute), rel=1e-12),
                              len(in_minute), None)
    while rollups.pack_1m_step():
        pass
    assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE series_id = :sid AND ts = :ts", sid=sid, ts=minute) == 0
    day = minute // BLOCK_1M_MS * BLOCK_1M_MS
    data = console.services.db.run(lambda s: s.execute(text(
        "SELECT data FROM rollup_1m_blocks WHERE series_id = :sid AND start_ts = :day"), {"sid": sid, "day": day}).scalar_one())
    merged = rollup_blocks.decode(bytes(data))
    assert float(merged.max[list(merged.ts).index(minute)]) == 1e15
    assert maxima() == (points, hourly)



def test_series_come_one_at_a_time_in_id_order_with_rows_only_series_among_the_packed(console):
    """rollup_blocks.load_each gives each series once, ids ascending, whether its buckets are
    in blocks, in rows, or both: a series with rows only (its data recent) made before one
    with packed days comes first, with its rows as stored."""
    recent_start = (int(NOW * 1000) - 2_400_000) // MINUTE_MS * MINUTE_MS  # 20 whole minutes, 40 to 20 minutes ago
    recent = [[recent_start + i * 20_000, float(i)] for i in range(60)]
    push(console, "r1m-order", [{"name": "r1m_order", "type": "gauge", "labels": {"k": "recent"}, "points": recent}])
    _, gauge = host_series(12)
    push(console, "r1m-order", [{"name": "r1m_order", "type": "gauge", "labels": {"k": "old"}, "points": gauge}])
    rollups = job(console)
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    first, second = console.services.db.run(lambda s: series_ids(s, "h.name = 'r1m-order'"))

    def as_rows(session, sid: int) -> list[tuple]:
        return [tuple(r) for r in session.execute(text(
            "SELECT ts, min, max, sum, count, increase FROM rollup_1m WHERE series_id = :sid ORDER BY ts"), {"sid": sid})]

    before = console.services.db.run(lambda s: {sid: as_rows(s, sid) for sid in (first, second)})
    while rollups.pack_1m_step():
        pass
    assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks WHERE series_id = :sid", sid=first) == 0
    assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks WHERE series_id = :sid", sid=second) >= 2
    assert len(before[first]) == 20 and len(before[second]) > 1500
    given = console.services.db.run(lambda s: [(sid, rows.tuples()) for sid, rows in rollup_blocks.load_each(
        s, [first, second], 0, 2 ** 62)])
    assert [sid for sid, _ in given] == [first, second]
    assert dict(given) == before

KILLER = """
import os, signal, sys
from console.config import ConsoleConfig
from console.storage import rollup_blocks
from console.storage.database import Database
from console.tiers.service import RollupService
real, calls = rollup_blocks.encode, []
def dying(rows):
    calls.append(1)
    if len(calls) == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # after the DELETE of this chunk, before its commit
    return real(rows)
rollup_blocks.encode = dying
db = Database(sys.argv[1])
job = RollupService(db, ConsoleConfig(), clock=lambda: float(sys.argv[2]))
while job.pack_1m_step():
    pass
print("finished without being killed", flush=True)
"""


def test_a_packing_run_killed_with_sigkill_loses_and_doubles_nothing(console, viewer):
    host = "r1m-kill"
    counter, gauge = host_series(99)
    push(console, host, [
        {"name": "r1m_kill_total", "type": "counter", "labels": {"disk": str(k)}, "points": counter} for k in range(3)]
        + [{"name": "r1m_kill_bytes", "type": "gauge", "labels": {"disk": str(k)}, "points": gauge} for k in range(3)])
    rollups = job(console)
    for tier in TIERS:
        while rollups.rollup_step(tier.name):
            pass
    where = "h.name = :h"
    before = minute_rows(console, where, h=host)
    assert len(before) == 6
    queries = [dict(metric="r1m_kill_bytes", fn="avg", step=60, agg="max"), dict(metric="r1m_kill_total", fn="rate", step=300)]

    def read() -> list:
        return [console.request("GET", "/api/v1/metrics/range?" + urlencode(
            {"host": host, "start": START_S, "end": END_S, **q}), token=viewer).json() for q in queries]
    answered = read()
    proc = subprocess.run([sys.executable, "-c", KILLER, console.services.config.console.database_url, str(NOW), "4"],
                          cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert minute_rows(console, where, h=host) == before  # the killed transaction left the rows
    while rollups.pack_1m_step():
        pass
    assert minute_rows(console, where, h=host) == before
    assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks b JOIN series s ON s.id = b.series_id "
                          "WHERE s.name LIKE 'r1m_kill%'") >= 12
    close(answered, read())


def test_deleting_a_host_deletes_its_1m_blocks(console):
    admin = console.api_token("admin")
    counter, _ = host_series(7)
    push(console, "r1m-gone", [{"name": "r1m_gone_total", "type": "counter", "labels": {}, "points": counter}])
    job(console).run_all()
    blocks = count(console, "SELECT SUM(b.count) FROM rollup_1m_blocks b JOIN series s ON s.id = b.series_id "
                            "WHERE s.name = 'r1m_gone_total'")
    rows = count(console, "SELECT COUNT(*) FROM rollup_1m r JOIN series s ON s.id = r.series_id "
                          "WHERE s.name = 'r1m_gone_total'")
    hours = count(console, "SELECT COUNT(*) FROM rollup_1h r JOIN series s ON s.id = r.series_id "
                           "WHERE s.name = 'r1m_gone_total'")
    assert blocks > 1500
    resp = console.request("DELETE", "/api/v1/hosts/r1m-gone", token=admin)
    assert resp.status == 200, resp.body
    assert resp.json()["rollups"] == blocks + rows + hours
    assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks WHERE series_id NOT IN (SELECT id FROM series)") == 0


RET = "h.name = 'r1m-ret'"


def test_retention_cuts_1m_blocks_to_the_minute_and_then_deletes_the_series(console, tmp_path_factory):
    # A console of its own: retention deletes across every series.
    with console_on(console.kind, tmp_path_factory, query_cache_points=0) as other:
        viewer = other.api_token("viewer")
        counter, gauge = host_series(5, every=30_000)
        ended = [p for p in gauge if p[0] < START + 4 * 3_600_000]  # a series silent for 26 hours
        push(other, "r1m-ret", [{"name": "r1m_ret_total", "type": "counter", "labels": {}, "points": counter},
                                {"name": "r1m_ret_ended", "type": "gauge", "labels": {}, "points": ended}])
        job(other).run_all()
        before = minute_rows(other, RET)
        assert count(other, "SELECT COUNT(*) FROM rollup_1m_blocks") >= 3
        due = min(count(other, "SELECT done_until FROM rollup_watermarks WHERE tier = '1h'"),
                  (int(NOW * 1000) - 3_600_000) // 3_600_000 * 3_600_000)  # read by 1h, past the 1 h hot window
        assert count(other, "SELECT COUNT(*) FROM rollup_1m WHERE ts < :due", due=due) == 0
        ended_sid, total_sid = (other.services.db.run(lambda s: series_ids(s, "s.name = :n", n=n))[0]
                                for n in ("r1m_ret_ended", "r1m_ret_total"))
        assert before.keys() == {ended_sid, total_sid}
        now_ms = int(NOW * 1000)
        cut_days = 28.5 / 24  # the cutoff falls 28.5 h back: inside the ended series' data, a packed day
        cutoff = now_ms - int(cut_days * 86_400_000)
        def partitions_before(cutoff: int) -> list:  # PostgreSQL: partitions of 1m blocks wholly before it
            return [p for p in other.services.db.run(lambda s: partitions(s, "rollup_1m_blocks"))
                    if p.hi + BLOCK_1M_MS <= cutoff] if other.kind == "postgres" else []
        if other.kind == "postgres":
            # Partitions are made for days with data only; empty ones back to the 1m retention,
            # as a console made them before, are dropped whole with the others.
            other.services.db.run(lambda s: ensure_partitions(s, PARTITIONED["rollup_1m_blocks"], 86_400_000,
                                                              cutoff - 5 * 86_400_000, START))
        assert partitions_before(cutoff) or other.kind == "sqlite"
        job(other, retention_raw_days=20 / 24, retention_1m_days=cut_days, retention_1h_days=cut_days).run_all()
        assert partitions_before(cutoff) == []  # dropped whole
        after = minute_rows(other, RET)
        assert after == {sid: [r for r in rows if r[0] >= cutoff] for sid, rows in before.items()}
        assert all(after.values()) and min(r[0] for rows in after.values() for r in rows) < cutoff + MINUTE_MS
        resp = other.request("GET", "/api/v1/metrics/range?" + urlencode(dict(
            metric="r1m_ret_ended", fn="avg", step=60, start=START / 1000, end=NOW)), token=viewer).json()
        assert resp["series"][0]["points"][0][0] == -(-cutoff // MINUTE_MS) * MINUTE_MS
        # The ended series keeps only 1m blocks and 1h rows: it stays while they hold data.
        assert count(other, "SELECT COUNT(*) FROM series WHERE name = 'r1m_ret_ended'") == 1
        shorter = 25.0 / 24  # past the ended series' last sample: its data goes, then its row
        job(other, retention_raw_days=20 / 24, retention_1m_days=shorter, retention_1h_days=shorter).run_all()
        assert count(other, "SELECT COUNT(*) FROM series WHERE name = 'r1m_ret_ended'") == 0
        assert count(other, "SELECT COUNT(*) FROM series WHERE name = 'r1m_ret_total'") == 1
        cutoff = now_ms - int(shorter * 86_400_000)
        assert minute_rows(other, RET) == {total_sid: [r for r in before[total_sid] if r[0] >= cutoff]}
