"""PromQL range queries of counter rates over long ranges read the 1m rollup tier, and
short ranges still read raw samples, on SQLite and PostgreSQL, over HTTP.

Counters whose rate swings (a sine on top of a base rate, one reset) are pushed through
the ingest API and rolled up by the console's rollup job. Expectations are computed here
from the pushed samples, by the two definitions (docs/promql.md, "Deviations from
Prometheus"): per window ``[t - 5m, t)`` the sum of the counter's growth between
consecutive samples (what the 1m buckets add up to), and Prometheus' extrapolated rate
over the samples in ``[t - 5m, t]``. A 6 h query must give the first for every step below
the tier's watermark and the second for the newest steps; 2 h queries over the same steps
the second everywhere; and the two answers stay within the documented tolerance.
"""
from __future__ import annotations

import math
import time
from urllib.parse import urlencode

import pytest

from console.tiers.service import RollupService

INTERVAL_S = 15
HOSTS = ("r1", "r2")
MODES = (("idle", 0.8), ("user", 0.15), ("system", 0.05))
QUERY = 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
# docs/promql.md: the two answers differ by at most two sample intervals' growth in a 5m
# window, 2 x 15 s / 300 s relative for a steady rate (this data's rate swings, so its
# worst step comes closer to the bound than steady counters do).
TOLERANCE = 2 * INTERVAL_S / 300


class Range:
    """The queried 6 h, ending a minute ago: its newest steps lie past the 1m watermark
    (now - rollup_delay); samples from half an hour before it to 30 s past its end."""

    def __init__(self) -> None:
        self.now = time.time()
        self.end = int(self.now) // 60 * 60 - 60
        self.start = self.end - 6 * 3600
        self.steps = range(self.start, self.end + 1, 60)


def _points(r: Range, hi: int, cpu: int, mi: int, per_s: float) -> list:
    out, value = [], 1000.0 * (hi + 1) + 10 * mi
    ts = (r.start - 1800) * 1000 + 3000 + hi * 1250 + cpu * 500
    i = 0
    while ts <= (r.end + 30) * 1000:
        out.append((ts, round(value, 3)))
        swing = 1 + 0.8 * math.sin(i / 9 + hi + cpu + mi)
        value += per_s * INTERVAL_S * swing
        if (hi, cpu, mi, i) == (1, 0, 1, 700):
            value = 3.0  # a counter reset
        ts += INTERVAL_S * 1000
        i += 1
    return out


def dataset(r: Range) -> dict[tuple[str, str, str], list]:
    return {(host, str(cpu), mode): _points(r, hi, cpu, mi, per_s)
            for hi, host in enumerate(HOSTS) for cpu in (0, 1) for mi, (mode, per_s) in enumerate(MODES)}


def bucket_rate(points: list, t_ms: int, range_s: int = 300) -> float | None:
    """Growth between consecutive samples, summed over those stamped in [t - range, t), per second."""
    total, n = 0.0, 0
    for (_, prev), (ts, v) in zip(points, points[1:]):
        if t_ms - range_s * 1000 <= ts < t_ms:
            total += v - prev if v >= prev else v
            n += 1
    return total / range_s if n >= 2 else None


def prometheus_rate(points: list, t_ms: int, range_s: int = 300) -> float | None:
    """Prometheus 2.x ``extrapolatedRate`` over the samples in [t - range, t] (promql/functions.go)."""
    window = [(ts, v) for ts, v in points if t_ms - range_s * 1000 <= ts <= t_ms]
    if len(window) < 2:
        return None
    growth = window[-1][1] - window[0][1]
    for (_, a), (_, b) in zip(window, window[1:]):
        if b < a:
            growth += a
    first_ts, last_ts, first = window[0][0], window[-1][0], window[0][1]
    sampled = (last_ts - first_ts) / 1000
    to_start, to_end = (first_ts - (t_ms - range_s * 1000)) / 1000, (t_ms - last_ts) / 1000
    if growth > 0 and first >= 0:
        to_start = min(to_start, sampled * (first / growth))
    average = sampled / (len(window) - 1)
    interval = sampled + (to_start if to_start < average * 1.1 else average / 2)
    interval += to_end if to_end < average * 1.1 else average / 2
    return growth * interval / sampled / range_s


def expected(data: dict, rate, steps: range, range_s: int = 300) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for (host, _cpu, mode), points in data.items():
        if mode == "idle":
            continue
        for t in steps:
            v = rate(points, t * 1000, range_s)
            if v is not None:
                out.setdefault(host, {})[t] = out.get(host, {}).get(t, 0.0) + v
    return out


@pytest.fixture(scope="module")
def console(db_console):
    db_console.range = r = Range()
    data = dataset(r)
    for host in HOSTS:
        token = db_console.agent_token(host)
        series = [(labels, points) for labels, points in data.items() if labels[0] == host]
        for i in range(0, len(series[0][1]), 500):
            status, body = db_console.push(host, token, [
                {"name": "node_cpu_seconds_total", "type": "counter", "labels": {"cpu": cpu, "mode": mode},
                 "points": points[i:i + 500]} for (_, cpu, mode), points in series])
            assert status == 200, body
            load = [(ts, 1 + 0.5 * math.sin(ts / 4e6)) for ts, _ in series[0][1][i:i + 500]]
            status, body = db_console.push(host, token, [{"name": "node_load1", "type": "gauge", "labels": {},
                                                          "points": load}])
            assert status == 200, body
    # The job at the range's own "now": pushing takes long enough on a loaded machine for
    # the real clock's watermark to reach the range's end.
    RollupService(db_console.services.db, db_console.services.config.console, clock=lambda: r.now).run_all()
    db_console.data = data
    db_console.viewer = db_console.api_token("viewer", f"promql-rollups-{db_console.kind}")
    return db_console


def query_range(console, query: str, start_s: int, end_s: int, step_s: int = 60) -> dict[str, dict[int, float]]:
    resp = console.request("GET", "/prometheus/api/v1/query_range?" + urlencode(
        {"query": query, "start": start_s, "end": end_s, "step": step_s}), token=console.viewer)
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["status"] == "success", body
    return {s["metric"].get("instance", ""): {int(t): float(v) for t, v in s["values"]}
            for s in body["data"]["result"]}


def short_ranges(console, query: str) -> dict[str, dict[int, float]]:
    """The 6 h query asked as three 2 h queries (below the rollup threshold) and joined."""
    r = console.range
    out: dict[str, dict[int, float]] = {}
    for lo in range(r.start, r.end, 7200):
        hi = r.end if lo + 7200 >= r.end else lo + 7200 - 60
        for key, points in query_range(console, query, lo, hi).items():
            out.setdefault(key, {}).update(points)
    return out


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-12)


def test_long_range_reads_bucket_increases_and_the_newest_steps_raw(console):
    r = console.range
    watermark_s = console.services.db.run(console.services.rollups.watermarks)["1m"] // 1000
    assert r.start < watermark_s < r.end, "the range must end past the rolled-up minutes"
    steps = r.steps
    from_buckets = expected(console.data, bucket_rate, steps)
    from_raw = expected(console.data, prometheus_rate, steps)
    got = query_range(console, QUERY, r.start, r.end)
    assert sorted(got) == list(HOSTS)
    for host in HOSTS:
        assert sorted(got[host]) == list(steps)
        for t, v in got[host].items():
            want = from_buckets[host][t] if t <= watermark_s else from_raw[host][t]
            assert close(v, want, 1e-9), (host, t, v, want, watermark_s)


def test_short_ranges_read_raw_samples(console):
    steps = console.range.steps
    from_raw = expected(console.data, prometheus_rate, steps)
    from_buckets = expected(console.data, bucket_rate, steps)
    got = short_ranges(console, QUERY)
    differ = 0
    for host in HOSTS:
        assert sorted(got[host]) == list(steps)
        for t, v in got[host].items():
            assert close(v, from_raw[host][t], 1e-9), (host, t, v, from_raw[host][t])
            differ += not close(v, from_buckets[host][t], 1e-9)
    assert differ > len(steps)  # the two definitions do differ on this data


def test_rollup_answer_within_tolerance_of_raw_path(console):
    long, short = query_range(console, QUERY, console.range.start, console.range.end), short_ranges(console, QUERY)
    worst = max(abs(v - short[h][t]) / short[h][t] for h in HOSTS for t, v in long[h].items())
    assert 0 < worst <= TOLERANCE, worst
    print(f"largest relative difference, rollup vs raw: {worst:.2%}")


def test_gauges_and_other_shapes_stay_on_raw_samples(console):
    for query in ('sum by (instance) (rate(node_load1[5m]))',  # a gauge: no increase in its rollups
                  'max by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))',  # not a sum
                  'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[150s]))'):  # not whole minutes
        long, short = query_range(console, query, console.range.start, console.range.end), short_ranges(console, query)
        assert long == short, query


def test_whole_hours_read_the_1h_tier(console):
    r = console.range
    start, end = -(-r.start // 3600) * 3600, r.end // 3600 * 3600  # 5 whole hours inside the range
    watermark_s = console.services.db.run(console.services.rollups.watermarks)["1h"] // 1000
    assert start < watermark_s <= end
    steps = range(start, end + 1, 3600)
    from_buckets = expected(console.data, bucket_rate, steps, 3600)
    from_raw = expected(console.data, prometheus_rate, steps, 3600)
    got = query_range(console, 'sum by (instance) (increase(node_cpu_seconds_total{mode!="idle"}[1h]))',
                      start, end, 3600)
    for host in HOSTS:
        assert sorted(got[host]) == list(steps)
        for t, v in got[host].items():
            want = (from_buckets if t <= watermark_s else from_raw)[host][t] * 3600
            assert close(v, want, 1e-9), (host, t, v, want, watermark_s)


def test_rollup_reads_stop_at_the_deadline(console):
    r = console.range
    resp = console.request("GET", "/prometheus/api/v1/query_range?" + urlencode(
        {"query": QUERY, "start": r.start, "end": r.end, "step": 60, "timeout": "0.001"}), token=console.viewer)
    assert resp.status == 503, resp.body
    assert resp.json()["errorType"] == "timeout"


def test_offset_shifts_the_buckets_read(console):
    r = console.range
    watermark_s = console.services.db.run(console.services.rollups.watermarks)["1m"] // 1000
    shifted = range(r.start - 600, r.end - 600 + 1, 60)  # the windows the steps read, 10 minutes earlier
    from_buckets = expected(console.data, bucket_rate, shifted)
    got = query_range(console, 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m] offset 10m))',
                      r.start, r.end)
    for host in HOSTS:
        assert sorted(got[host]) == list(r.steps)  # with the offset every window lies below the watermark
        for t, v in got[host].items():
            assert close(v, from_buckets[host][t - 600], 1e-9), (host, t, v, watermark_s)
