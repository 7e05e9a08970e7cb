"""PromQL counter rates over the 1m tier packed into daily blocks, on SQLite and PostgreSQL,
over HTTP: the answer is the same, to the last bit, before the 1m rows are packed (read in
SQL), once they are (every group's blocks decoded into flat arrays and added up at once,
the hot rows after them in SQL), and once a late sample has recomputed a packed minute as
a row (the row takes over its block's bucket); and it is the bucket sums computed here
from the pushed samples.

Every sample value is a multiple of 1/4 well below 2**40, so each increase, each sum of
increases in any order and each window's difference is exact: the expectation is the
exact float, not one within a tolerance. The series differ in shape: a counter reset, a
series that stopped pushing a day ago (its blocks end before its host's other series'), a
series that started two hours ago (hot rows only) and hosts in different groups.
"""
from __future__ import annotations

import random
import time
from bisect import bisect_left
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.tiers.service import TIERS, RollupService
from tests.conftest import console_on

NOW = time.time()
NAME = "blk_cpu_seconds_total"
EVERY_MS = 20_000
START_MS = (int(NOW) - 32 * 3600) * 1000 + 1500  # a UTC day boundary lies between it and now
# Queried: 28 h at a 1 m step ending an hour ago, below the 1m watermark (now - rollup_delay),
# so every step reads the tier; the hour before the end is hot rows past the packed days.
END_S = int(NOW) // 60 * 60 - 3600
START_S = END_S - 28 * 3600
# A packed minute (five hours ago) that a late sample recomputes as a row.
LATE_MS = (int(NOW) - 5 * 3600) // 60 * 60 * 1000 + 25_000


def counter(seed: int, start: int = START_MS, end: int = int(NOW * 1000), reset_at: int = -1) -> list[list]:
    """``[[Unix ms, value], ...]`` every 20 s (with jitter) from ``start`` to ``end``: a
    counter growing by multiples of 1/4, reset to 0.75 at sample ``reset_at``."""
    rnd = random.Random(seed)
    out, value, ts, i = [], 1000.0 * seed, start + rnd.randint(0, 999), 0
    while ts < end:
        value = 0.75 if i == reset_at else value + rnd.randint(0, 80) / 4
        out.append([ts, value])
        ts += EVERY_MS + rnd.randint(-25, 25)
        i += 1
    return out


# (host, mode) -> samples
DATA = {
    ("blk-a", "user"): counter(1, reset_at=2500),
    ("blk-a", "system"): counter(2),
    ("blk-a", "idle"): counter(3),
    ("blk-b", "user"): counter(4, end=int(NOW * 1000) - 24 * 3600 * 1000),  # stopped a day ago
    ("blk-b", "system"): counter(5),
    ("blk-b", "steal"): counter(6, start=int(NOW * 1000) - 2 * 3600 * 1000),  # hot rows only
    ("blk-c", "user"): counter(7),
}
QUERIES = [f'sum by (instance) (rate({NAME}{{mode!="idle"}}[5m]))',
           f"rate({NAME}[5m])",
           f'sum(increase({NAME}{{mode=~"user|steal"}}[10m] offset 3m))',
           f"sum without (mode) (rate({NAME}[2m]))"]


class Growth:
    """One counter's samples as the 1m buckets see them: ``window(lo, hi)`` is the growth
    (resets counted as Prometheus does) from the sample before the first one stamped in
    ``[lo, hi)`` (Unix ms) to the last one there, and how many samples there are: what the
    window's buckets add up to. Prefix sums of each sample's own growth (exact here)."""

    def __init__(self, points: list) -> None:
        self.ts = [ts for ts, _ in points]
        self.prefix = [0.0, 0.0]  # the first sample has no growth of its own
        for (_, prev), (_, v) in zip(points, points[1:]):
            self.prefix.append(self.prefix[-1] + (v - prev if v >= prev else v))

    def window(self, lo: int, hi: int) -> tuple[float, int]:
        a, b = bisect_left(self.ts, lo), bisect_left(self.ts, hi)
        return self.prefix[b] - self.prefix[a], b - a


def expected(data: dict, query: str) -> dict[tuple, dict[int, float]]:
    """The answer of ``query`` computed from the samples: per output label set and step,
    the kept series' growth over the window added up (exactly), divided by the window for
    ``rate``; a value where the series added up have two samples in the window together
    (docs/promql.md: under ``sum`` a series with one sample there adds its growth from the
    sample before, where Prometheus' ``rate`` of that series has no value)."""
    select, by, rng, offset, rate = {
        QUERIES[0]: (lambda m: m != "idle", lambda h, m: (("instance", h),), 300, 0, True),
        QUERIES[1]: (lambda m: True, lambda h, m: (("cpu", "0"), ("host", h), ("instance", h), ("job", "node"),
                                                   ("mode", m)), 300, 0, True),
        QUERIES[2]: (lambda m: m in ("user", "steal"), lambda h, m: (), 600, 180, False),
        QUERIES[3]: (lambda m: True, lambda h, m: (("cpu", "0"), ("host", h), ("instance", h), ("job", "node")),
                     120, 0, True)}[query]
    growth: dict[tuple, dict[int, list]] = {}
    for (host, mode), points in data.items():
        if not select(mode):
            continue
        series = Growth(points)
        for t in range(START_S, END_S + 1, 60):
            hi = (t - offset) * 1000
            total, n = series.window(hi - rng * 1000, hi)
            if n:
                both = growth.setdefault(by(host, mode), {}).setdefault(t, [0.0, 0])
                both[0] += total
                both[1] += n
    return {labels: {t: v / rng if rate else v for t, (v, n) in steps.items() if n >= 2}
            for labels, steps in growth.items()}


def answer(console, viewer, query: str) -> dict[tuple, dict[int, float]]:
    resp = console.request("GET", "/prometheus/api/v1/query_range?" + urlencode(
        {"query": query, "start": START_S, "end": END_S, "step": 60}), token=viewer)
    assert resp.status == 200, resp.body
    return {tuple(sorted(s["metric"].items())): {int(t): float(v) for t, v in s["values"]}
            for s in resp.json()["data"]["result"]}


def answers(console, viewer) -> dict[str, dict]:
    return {q: answer(console, viewer, q) for q in QUERIES}


def roll(console, pack: bool) -> None:
    job = RollupService(console.services.db, console.services.config.console, clock=lambda: NOW)
    for tier in TIERS:
        while job.rollup_step(tier.name):
            pass
    while pack and job.pack_1m_step():
        pass


def count(console, sql: str, **params) -> int:
    return console.services.db.run(lambda s: s.execute(text(sql), params).scalar())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stages(request, tmp_path_factory):
    """The answers from rows, from blocks, and from blocks with a late row over one."""
    # The cache of closed buckets' sums off: every answer is read from the database.
    with console_on(request.param, tmp_path_factory, query_cache_points=0) as console:
        for (host, mode), points in DATA.items():
            token = console.agent_token(host)
            for i in range(0, len(points), 2000):
                status, body = console.push(host, token, [{"name": NAME, "type": "counter",
                                                           "labels": {"cpu": "0", "mode": mode},
                                                           "points": points[i:i + 2000]}])
                assert status == 200, body
        viewer = console.api_token("viewer")
        roll(console, pack=False)
        assert count(console, "SELECT COUNT(*) FROM rollup_1m_blocks") == 0
        from_rows = answers(console, viewer)
        roll(console, pack=True)
        hot = count(console, "SELECT COUNT(*) FROM rollup_1m WHERE ts >= :lo", lo=START_S * 1000)
        blocks = count(console, "SELECT COUNT(*) FROM rollup_1m_blocks")
        assert hot > 0 and blocks >= len(DATA), (hot, blocks)  # hot rows after days of blocks
        assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE ts < :late", late=LATE_MS) == 0
        from_blocks = answers(console, viewer)
        # A late sample into a packed minute of blk-a's system series, between its first and
        # second sample there: a counter reset to 0.5 there raises the minute's increase.
        points = DATA[("blk-a", "system")]
        assert [p for p in points if LATE_MS // 60_000 * 60_000 <= p[0] < LATE_MS][:1], "a sample before it"
        late = [LATE_MS, 0.5]
        status, body = console.push("blk-a", console.agent_token("blk-a"), [
            {"name": NAME, "type": "counter", "labels": {"cpu": "0", "mode": "system"}, "points": [late]}])
        assert status == 200, body
        roll(console, pack=False)
        minute = LATE_MS // 60_000 * 60_000
        assert count(console, "SELECT COUNT(*) FROM rollup_1m WHERE ts = :m", m=minute) > 0  # over its blocks
        yield from_rows, from_blocks, answers(console, viewer)


def test_blocks_answer_as_the_rows_did_and_as_the_samples_say(stages):
    from_rows, from_blocks, _ = stages
    for query in QUERIES:
        want = expected(DATA, query)
        assert from_rows[query] == want, query
        assert from_blocks[query] == want, query
        assert sum(len(v) for v in want.values()) > 1000, query


def test_a_row_recomputed_over_a_packed_minute_takes_over_its_bucket(stages):
    _, from_blocks, with_late = stages
    data = dict(DATA)
    data[("blk-a", "system")] = sorted(DATA[("blk-a", "system")] + [[LATE_MS, 0.5]])
    for query in QUERIES:
        want = expected(data, query)
        assert with_late[query] == want, query
    assert with_late[QUERIES[0]] != from_blocks[QUERIES[0]]  # the late sample did change the answer

