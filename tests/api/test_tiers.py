"""Metrics tiers over HTTP on SQLite and PostgreSQL: rollups against values computed here
from the raw samples, tier choice, retention, a restart mid-rollup, counter resets, the
cardinality guard and bad input."""
from __future__ import annotations

import dataclasses
import time
from urllib.parse import urlencode

import pytest

from console.storage import blocks
from console.storage.models import RollupWatermark
from console.tiers import service as tiers
from console.tiers.service import RollupService

NOW = time.time()
BASE = (int(NOW) // 3600 - 3) * 3_600_000  # a whole hour, three hours ago, Unix ms


@pytest.fixture(scope="module")
def console(db_console):
    return db_console


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


def push_series(console, host, name, kind, labels, points, chunk=500):
    token = console.agent_token(host)
    for i in range(0, len(points), chunk):
        status, body = console.push(host, token, [{"name": name, "type": kind, "labels": labels,
                                                   "points": points[i:i + chunk]}])
        assert status == 200, body
    return token


def query(console, viewer, **params):
    return console.request("GET", "/api/v1/metrics/range?" + urlencode(params), token=viewer)


def expected_rollup(points, width):
    """min, max, sum, count and counter increase per bucket, straight from the definition."""
    out = {}
    prev = None
    for ts, v in points:
        b = ts // width * width
        inc = 0.0 if prev is None or ts - prev[0] > 300_000 else (v - prev[1] if v >= prev[1] else v)
        prev = (ts, v)
        row = out.setdefault(b, [v, v, 0.0, 0, 0.0])
        row[0], row[1] = min(row[0], v), max(row[1], v)
        row[2] += v
        row[3] += 1
        row[4] += inc
    return out


def stored_rollups(console, table, host):
    """``[(series_id, ts, min, max, sum, count, increase), ...]`` of ``host`` in ``table``;
    for ``rollup_1m`` its rows and cold blocks together (rollup_blocks.load)."""
    from sqlalchemy import text

    from console.storage import rollup_blocks

    if table == "rollup_1m":
        def read(s):
            ids = list(s.execute(text("SELECT s.id FROM series s JOIN hosts h ON h.id = s.host_id "
                                      "WHERE h.name = :h ORDER BY s.id"), {"h": host}).scalars())
            found = rollup_blocks.stored_rows(s, ids, 0, 2**62)
            return [(sid, *row) for sid in sorted(found) for row in found[sid]]
        return console.services.db.run(read)
    rows = console.services.db.run(lambda s: s.execute(text(
        f"SELECT r.series_id, r.ts, r.min, r.max, r.sum, r.count, r.increase FROM {table} r "
        "JOIN series s ON s.id = r.series_id JOIN hosts h ON h.id = s.host_id WHERE h.name = :h "
        "ORDER BY r.series_id, r.ts"), {"h": host}).all())
    return [tuple(r) for r in rows]


def stored_host_rollups(console, host):
    """``{(metric, ts): {column: value}}`` of ``rollup_1m_host`` for ``host``."""
    from sqlalchemy import text

    rows = console.services.db.run(lambda s: s.execute(text(
        "SELECT x.* FROM rollup_1m_host x JOIN hosts h ON h.id = x.host_id WHERE h.name = :h ORDER BY x.name, x.ts"),
        {"h": host}).mappings().all())
    return {(r["name"], r["ts"]): {k: v for k, v in r.items() if k not in ("name", "ts", "host_id")} for r in rows}


def expected_host_rollup(per_series):
    """The cross-series row of one minute from the series' ``(min, max, sum, count, increase)``."""
    avgs = [sm / n for _, _, sm, n, _ in per_series]
    mins = [r[0] for r in per_series]
    maxs = [r[1] for r in per_series]
    incs = [r[4] for r in per_series if r[4] is not None]
    row = {"series": len(per_series), "counters": len(incs), "samples": sum(r[3] for r in per_series)}
    for fn, values in (("avg", avgs), ("min", mins), ("max", maxs), ("inc", incs)):
        row.update({f"{fn}_sum": pytest.approx(sum(values)) if values else None,
                    f"{fn}_min": min(values, default=None), f"{fn}_max": max(values, default=None)})
    return row


# A counter every 7 s (not a divisor of 60) over 2.5 hours, reset twice; a gauge beside it.
COUNTER = []
value = 0.0
for i in range(int(2.5 * 3600 / 7)):
    ts = BASE + i * 7_000 + (i % 3) * 100
    value = 5.0 if i in (400, 900) else value + (i % 5) + 0.25
    COUNTER.append((ts, value))
GAUGE = [(ts, float((i * 37) % 101)) for i, (ts, _) in enumerate(COUNTER)]


@pytest.fixture(scope="module")
def rolled(console):
    push_series(console, "tier-1", "app_requests_total", "counter", {"path": "/"}, [list(p) for p in COUNTER])
    push_series(console, "tier-1", "app_temp_celsius", "gauge", {}, [list(p) for p in GAUGE])
    console.services.rollups.run_all()
    return console


def test_1m_rollups_match_values_computed_from_raw(rolled):
    rows = stored_rollups(rolled, "rollup_1m", "tier-1")
    by_kind = {}
    for sid, ts, mn, mx, sm, n, inc in rows:
        by_kind.setdefault(sid, {})[ts] = (mn, mx, sm, n, inc)
    counter_sid, gauge_sid = sorted(by_kind)
    for sid, points, is_counter in ((counter_sid, COUNTER, True), (gauge_sid, GAUGE, False)):
        want = expected_rollup(points, 60_000)
        got = by_kind[sid]
        assert sorted(got) == sorted(want)
        for b, (mn, mx, sm, n, inc) in want.items():
            g = got[b]
            assert g[:4] == (mn, mx, pytest.approx(sm), n), b
            assert g[4] == (pytest.approx(inc) if is_counter else None), b


def test_1h_rollups_match_values_computed_from_raw(rolled):
    rows = stored_rollups(rolled, "rollup_1h", "tier-1")
    watermark_1h = rolled.services.db.run(rolled.services.rollups.watermarks)["1h"]
    want = {b: r for b, r in expected_rollup(COUNTER, 3_600_000).items() if b < watermark_1h}
    got = {ts: (mn, mx, sm, n, inc) for sid, ts, mn, mx, sm, n, inc in rows if inc is not None}
    assert sorted(got) == sorted(want) and len(want) >= 2
    for b, (mn, mx, sm, n, inc) in want.items():
        assert got[b] == (mn, mx, pytest.approx(sm), n, pytest.approx(inc))


def test_counter_reset_counts_the_new_value_as_increase(rolled):
    reset_ts = COUNTER[400][0]
    b = reset_ts // 60_000 * 60_000
    rows = {ts: inc for _, ts, *_, inc in stored_rollups(rolled, "rollup_1m", "tier-1") if inc is not None}
    in_bucket = [(t, v) for t, v in COUNTER if b - 60_000 <= t < b + 60_000]
    manual = sum((v1 - v0 if v1 >= v0 else v1) for (t0, v0), (t1, v1) in zip(in_bucket, in_bucket[1:])
                 if t1 >= b)
    assert rows[b] == pytest.approx(manual)
    assert rows[b] > 0  # never a negative increase across the reset


@pytest.mark.parametrize("step, resolution", [(None, "raw"), (10, "raw"), (45, "raw"), (60, "1m"),
                                              (300, "1m"), (3600, "1h"), (7200, "1h")])
def test_tier_choice_from_step(rolled, viewer, step, resolution):
    params = {"metric": "app_temp_celsius", "host": "tier-1", "start": BASE / 1000, "end": BASE / 1000 + 9000}
    if step:
        params["step"] = step
    body = query(rolled, viewer, **params).json()
    assert body["resolution"] == resolution


def test_tier_choice_falls_back_to_a_coarser_tier_beyond_retention(rolled):
    svc = rolled.services.query
    assert svc.choose_resolution(NOW - 8 * 86400, 10) == "1m"
    assert svc.choose_resolution(NOW - 100 * 86400, 60) == "1h"


def test_rollup_tier_queries_agree_with_raw(rolled, viewer):
    start, end = BASE / 1000, BASE / 1000 + 2 * 3600
    body = query(rolled, viewer, metric="app_temp_celsius", host="tier-1", start=start, end=end,
                 step=300, fn="avg").json()
    assert body["resolution"] == "1m"
    want = {}
    for ts, v in GAUGE:
        if start * 1000 <= ts // 300_000 * 300_000 <= end * 1000:
            want.setdefault(ts // 300_000 * 300_000, []).append(v)
    got = body["series"][0]["points"]
    assert [p[0] for p in got] == sorted(want)
    for ts, v in got:
        assert v == pytest.approx(sum(want[ts]) / len(want[ts]))
    for fn, agg in (("min", min), ("max", max)):
        got = query(rolled, viewer, metric="app_temp_celsius", host="tier-1", start=start, end=end,
                    step=300, fn=fn).json()["series"][0]["points"]
        assert got == [[ts, agg(want[ts])] for ts in sorted(want)]
    inc = query(rolled, viewer, metric="app_requests_total", host="tier-1", start=start + 300, end=end,
                step=300, fn="increase").json()
    for t, v in inc["series"][0]["points"]:
        window = [(ts, x) for ts, x in COUNTER if t - 300_000 - 7_300 <= ts < t]
        exact = sum((b - a if b >= a else b) for (ta, a), (tb, b) in zip(window, window[1:]) if tb >= t - 300_000)
        assert v == pytest.approx(exact), t


ZONES = {"g0": "a", "g1": "a", "g2": "b"}  # three gauge series in two zones
ZONE_GAUGES = {k: [(ts, float((i * (7 + n)) % 53) + n / 4) for i, (ts, _) in enumerate(COUNTER[:900])]
               for n, k in enumerate(ZONES)}


def expected_groups(step_ms, lo_ms, hi_ms, group_of, agg):
    """Per series the bucket average over [b, b+step), then ``agg`` across the series of a
    group on equal buckets, straight from the raw samples."""
    out = {}
    for key, points in ZONE_GAUGES.items():
        buckets = {}
        for ts, v in points:
            b = ts // step_ms * step_ms
            if lo_ms <= b <= hi_ms:
                buckets.setdefault(b, []).append(v)
        for b, vs in buckets.items():
            out.setdefault(group_of(key), {}).setdefault(b, []).append(sum(vs) / len(vs))
    return {g: [[b, agg(vs)] for b, vs in sorted(buckets.items())] for g, buckets in out.items()}


@pytest.fixture(scope="module")
def zoned(rolled):
    for key, points in ZONE_GAUGES.items():
        push_series(rolled, "tier-g", "app_zone_temp", "gauge", {"k": key, "zone": ZONES[key]},
                    [list(p) for p in points])
    rolled.services.rollups.run_all()
    return rolled


@pytest.mark.parametrize("step", [60, 300])
@pytest.mark.parametrize("split", [False, True])
def test_rollup_tier_group_by_agrees_with_raw(zoned, viewer, step, split):
    rolled = zoned
    start, end = BASE / 1000 + 600, BASE / 1000 + 5400
    lo_ms, hi_ms = int(start * 1000) // (step * 1000) * step * 1000, int(end * 1000)
    mark = rolled.services.db.run(lambda s: s.get(RollupWatermark, "1m").done_until)
    if split:  # buckets from the watermark on come from raw samples; one step straddles it
        set_mark(rolled, BASE + 3_600_000 + 180_000)  # whole minutes, as the job keeps it
    try:
        common = {"metric": "app_zone_temp", "host": "tier-g", "start": start, "end": end, "step": step}
        body = query(rolled, viewer, fn="avg", group_by="zone", agg="avg", **common).json()
        assert body["resolution"] == "1m"
        want = expected_groups(step * 1000, lo_ms, hi_ms, ZONES.get, lambda vs: sum(vs) / len(vs))
        assert [s["labels"] for s in body["series"]] == [{"zone": "a"}, {"zone": "b"}]
        for series in body["series"]:
            got = series["points"]
            assert [p[0] for p in got] == [p[0] for p in want[series["labels"]["zone"]]]
            assert [p[1] for p in got] == [pytest.approx(p[1]) for p in want[series["labels"]["zone"]]]
        for agg, fn in (("sum", sum), ("max", max), ("min", min)):
            body = query(rolled, viewer, fn="avg", group_by="", agg=agg, **common).json()
            want = expected_groups(step * 1000, lo_ms, hi_ms, lambda _: "all", fn)["all"]
            assert [s["labels"] for s in body["series"]] == [{}]
            assert body["series"][0]["points"] == [[b, pytest.approx(v)] for b, v in want]
        # Counters: the grouped sum equals the sum of the per-series increases.
        common["metric"] = "app_requests_total"
        common["host"] = "tier-1"
        per_series = query(rolled, viewer, fn="increase", **common).json()["series"]
        total = query(rolled, viewer, fn="increase", group_by="", agg="sum", **common).json()["series"]
        assert len(per_series) == 1 and per_series[0]["points"]
        assert total == [{"labels": {}, "points": [[t, pytest.approx(v)] for t, v in per_series[0]["points"]]}]
    finally:
        set_mark(rolled, mark)


@pytest.mark.parametrize("params", [{"step": 60}, {"step": 300, "fn": "max"}, {"step": 60, "group_by": ""},
                                    {"step": 300, "group_by": "", "agg": "max"}, {}])
def test_point_limit_is_a_clear_422_on_every_path(rolled, viewer, params):
    config = rolled.services.query._config
    config.max_points_per_query, old = 10, config.max_points_per_query
    try:
        body = query(rolled, viewer, metric="app_temp_celsius", host="tier-1", start=BASE / 1000,
                     end=BASE / 1000 + 7200, **params)
    finally:
        config.max_points_per_query = old
    assert body.status == 422, body.json()
    assert body.json()["error"]["code"] == "too_many_points"


def set_mark(console, done_until):
    def write(session):
        session.get(RollupWatermark, "1m").done_until = done_until
    console.services.db.run(write)


def test_retention_deletes_exactly_what_is_due(console):
    now = time.time()
    cfg = console.services.config.console.model_copy(update=dict(retention_raw_days=2.0,
                                                                 retention_1m_days=3.0, retention_1h_days=4.0))
    day = 86_400_000
    now_ms = int(now * 1000)
    raw_cut = now_ms - 2 * day
    points = [[now_ms - 5 * day, 1.0], [raw_cut - 1, 2.0], [raw_cut, 3.0], [now_ms - day, 4.0]]
    push_series(console, "ret-1", "app_ret", "gauge", {}, points)
    hosts_on = console.services.config.console.model_copy(update={"rollup_1m_host": True})
    RollupService(console.services.db, hosts_on).run_all()  # default retention keeps all of it
    minutes = sorted({p[0] // 60_000 * 60_000 for p in points})
    hours = sorted({p[0] // 3_600_000 * 3_600_000 for p in points})
    assert [r[1] for r in stored_rollups(console, "rollup_1m", "ret-1")] == minutes
    RollupService(console.services.db, cfg, clock=lambda: now).run_all()
    from sqlalchemy import text

    raw = console.services.db.run(lambda s: [r[0] for r in s.execute(text(
        "SELECT x.ts FROM samples x JOIN series s ON s.id = x.series_id WHERE s.name = 'app_ret' ORDER BY x.ts"))])
    packed = console.services.db.run(lambda s: [ts for r in s.execute(text(
        "SELECT b.data FROM sample_blocks b JOIN series s ON s.id = b.series_id WHERE s.name = 'app_ret'"))
        for ts, _ in blocks.decode(r[0])])
    assert sorted(raw + packed) == [raw_cut, now_ms - day]  # hot rows or cold blocks, to the sample
    assert sorted(packed) == [raw_cut, now_ms - day]  # all older than the hot window: the cut went through blocks
    assert [r[1] for r in stored_rollups(console, "rollup_1m", "ret-1")] == [m for m in minutes if m >= now_ms - 3 * day]
    assert [r[1] for r in stored_rollups(console, "rollup_1h", "ret-1")] == [h for h in hours if h >= now_ms - 4 * day]
    # The cross-series 1m rows go with the per-series ones.
    assert sorted(ts for _, ts in stored_host_rollups(console, "ret-1")) == [m for m in minutes if m >= now_ms - 3 * day]
    console.services.rollups.run_all()  # turned off again: the cross-series rows are no longer complete
    assert console.services.db.run(lambda s: s.get(RollupWatermark, "1m_host")) is None


def test_restart_in_the_middle_of_a_rollup(console, monkeypatch):
    # Small series chunks so one window takes several transactions; a crash inside one.
    small = dataclasses.replace(tiers.TIER_BY_NAME["1m"], series_chunk=2)
    monkeypatch.setitem(tiers.TIER_BY_NAME, "1m", small)
    start = BASE + 2 * 3_600_000 + 40 * 60_000
    data = {f"s{i}": [[start + j * 10_000, float(i * 1000 + j * (i + 1))] for j in range(60)] for i in range(5)}
    token = console.agent_token("restart-1")
    status, body = console.push("restart-1", token, [
        {"name": "app_restart_total", "type": "counter", "labels": {"k": k}, "points": p} for k, p in data.items()])
    assert status == 200, body
    config = console.services.config.console.model_copy(update={"rollup_1m_host": True})
    first = RollupService(console.services.db, config)
    while first.rollup_step("1m") and not stored_rollups(console, "rollup_1m", "restart-1"):
        pass  # stop once part of the window is written: the process "dies" here
    real_roll = RollupService._roll

    def crash(self, *args):
        real_roll(self, *args)
        raise RuntimeError("power cut")
    monkeypatch.setattr(RollupService, "_roll", crash)
    second = RollupService(console.services.db, config)
    with pytest.raises(RuntimeError):
        while second.rollup_step("1m"):
            pass
    monkeypatch.setattr(RollupService, "_roll", real_roll)
    RollupService(console.services.db, config).run_all()
    rows = stored_rollups(console, "rollup_1m", "restart-1")
    by_series = {}
    for sid, ts, mn, mx, sm, n, inc in rows:
        by_series.setdefault(sid, {})[ts] = (mn, mx, sm, n, inc)
    assert len(by_series) == 5
    for (sid, got), points in zip(sorted(by_series.items()), data.values()):
        want = expected_rollup([tuple(p) for p in points], 60_000)
        assert {b: (g[0], g[1], g[2], g[3], g[4]) for b, g in got.items()} == \
            {b: (w[0], w[1], pytest.approx(w[2]), w[3], pytest.approx(w[4])) for b, w in want.items()}
    # The cross-series rows of the redone window: each series folded in once.
    minutes: dict[int, list] = {}
    for per_series in by_series.values():
        for b, row in per_series.items():
            minutes.setdefault(b, []).append(row)
    assert stored_host_rollups(console, "restart-1") == {
        ("app_restart_total", b): expected_host_rollup(rows) for b, rows in minutes.items()}


def test_late_samples_reopen_their_bucket(console, viewer):
    ts0 = BASE + 3_600_000
    push_series(console, "late-1", "app_late", "gauge", {}, [[ts0, 1.0], [ts0 + 10_000, 3.0]])
    console.services.rollups.run_all()
    push_series(console, "late-1", "app_late", "gauge", {}, [[ts0 + 20_000, 8.0]])
    console.services.rollups.run_all()
    rows = stored_rollups(console, "rollup_1m", "late-1")
    assert [r[1:6] for r in rows] == [(ts0, 1.0, 8.0, 12.0, 3)]


# -- cardinality guard and bad input ----------------------------------------------------------
def test_series_over_the_host_cap_are_rejected_counted_and_shown(console, viewer):
    console.services.ingest._config.max_series_per_host, old = 3, console.services.ingest._config.max_series_per_host
    try:
        token = console.agent_token("card-1")
        ts = int(time.time() * 1000)
        metrics = [{"name": "app_card", "type": "gauge", "labels": {"i": str(i)}, "points": [[ts, 1.0], [ts + 1, 2.0]]}
                   for i in range(5)]
        status, body = console.push("card-1", token, metrics)
        assert status == 200
        assert body["accepted_samples"] == 6
        assert body["rejected"] == {"series_limit": 4} and body["rejected_samples"] == 4
    finally:
        console.services.ingest._config.max_series_per_host = old
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
    assert hosts["card-1"]["rejected"][0]["reason"] == "series_limit"
    assert hosts["card-1"]["rejected"][0]["count"] == 4


def test_samples_outside_the_time_window_are_rejected_one_by_one(console, viewer):
    token = console.agent_token("window-1")
    now = int(time.time() * 1000)
    points = [[now - 7 * 86_400_000, 1.0], [now - 1000, 2.0], [now + 3_600_000, 3.0], [now, 4.0]]
    status, body = console.push("window-1", token, [{"name": "app_w", "type": "gauge", "labels": {}, "points": points}])
    assert status == 200
    assert body["accepted_samples"] == 2
    assert body["rejected"] == {"too_old": 1, "too_new": 1}
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
    assert {r["reason"]: r["count"] for r in hosts["window-1"]["rejected"]} == {"too_old": 1, "too_new": 1}


def test_a_steady_senders_samples_outside_the_window_and_non_finite_are_counted_too(console, viewer):
    # The second batch's series ids are cached: its rows are built before the transaction.
    token = console.agent_token("window-2")
    now = int(time.time() * 1000)
    metric = {"name": "app_w2", "type": "gauge", "labels": {"k": "v"}}
    assert console.push("window-2", token, [{**metric, "points": [[now - 5000, 1.0]]}])[0] == 200
    points = [[now - 7 * 86_400_000, 1.0], [now - 1000, "NaN"], [now + 3_600_000, 3.0], [now, 4.0]]
    status, body = console.push("window-2", token, [{**metric, "points": points}])
    assert status == 200
    assert body["accepted_samples"] == 1
    assert body["rejected"] == {"too_old": 1, "too_new": 1, "non_finite": 1}
    assert body["rejected_examples"]["too_new"] == f'app_w2{{"k":"v"}} @ {now + 3_600_000}'
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
    assert {r["reason"]: r["count"] for r in hosts["window-2"]["rejected"]} == \
        {"too_old": 1, "too_new": 1, "non_finite": 1}


def test_nan_and_inf_strings_are_dropped_and_counted_other_strings_fail_the_body(console):
    token = console.agent_token("nan-1")
    now = int(time.time() * 1000)
    pts = [[now - 3000, "NaN"], [now - 2000, "+Inf"], [now - 1000, "-Inf"], [now, 1.5]]
    status, body = console.push("nan-1", token, [{"name": "app_nan", "type": "gauge", "labels": {}, "points": pts}])
    assert status == 200 and body["accepted_samples"] == 1 and body["rejected"] == {"non_finite": 3}
    status, body = console.push("nan-1", token, [{"name": "app_nan", "type": "gauge", "labels": {},
                                                 "points": [[now, "1.5"]]}])
    assert status == 400 and body["error"]["code"] == "invalid_batch"


@pytest.mark.parametrize("name", ["1abc", "a-b", "é", "", "a b"])
def test_bad_label_names_fail_the_body(console, name):
    token = console.agent_token("names-1")
    status, body = console.push("names-1", token, [{"name": "app_x", "type": "gauge", "labels": {name: "v"},
                                                   "points": [[int(time.time() * 1000), 1.0]]}])
    assert status == 400 and body["error"]["code"] == "invalid_batch"


VALUES = ["it's \"quoted\"", "'; DROP TABLE samples; --", "100% _under_ \\back\\", "🚀 émoji ✓ 中文",
          "x" * 4096, "".join(chr(0x1F600 + i % 80) for i in range(1024)), " lead and trail ", "a\nb\tc"]


def test_label_values_round_trip_byte_for_byte(console, viewer):
    token = console.agent_token("bytes-1")
    now = int(time.time() * 1000)
    metrics = [{"name": "app_bytes", "type": "gauge", "labels": {"v": v, "i": str(i)}, "points": [[now, float(i)]]}
               for i, v in enumerate(VALUES)]
    status, body = console.push("bytes-1", token, metrics)
    assert status == 200 and body["accepted_samples"] == len(VALUES), body
    got = query(console, viewer, metric="app_bytes", host="bytes-1", start=now / 1000 - 60, end=now / 1000 + 1).json()
    assert sorted(s["labels"]["v"].encode() for s in got["series"]) == sorted(v.encode() for v in VALUES)
    for i, v in enumerate(VALUES):
        one = query(console, viewer, metric="app_bytes", host="bytes-1", start=now / 1000 - 60,
                    end=now / 1000 + 1, **{"label.v": v}).json()
        assert [s["points"][0][1] for s in one["series"]] == [float(i)]
