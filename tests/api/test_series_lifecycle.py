"""Series lifecycle over HTTP on SQLite and PostgreSQL: first/last sample time per series,
window-aware series selection, the per-host cap counting active series, and retention
deleting series with no samples left (docs/metrics.md, "Series lifecycle")."""
from __future__ import annotations

import contextlib
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from console.tiers.service import RollupService
from tests.conftest import console_on
from tests.harness import wait_for

HOUR = 3_600_000


@pytest.fixture(scope="module")
def console(db_console):
    return db_console


@pytest.fixture(scope="module")
def viewer(console):
    return console.api_token("viewer")


@contextlib.contextmanager
def setting(config, **values):
    old = {k: getattr(config, k) for k in values}
    for k, v in values.items():
        setattr(config, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(config, k, v)


def push(console, host, metrics):
    status, body = console.push(host, console.agent_token(host), metrics)
    assert status == 200, body
    return body


def bounds(console, name):
    return console.services.db.run(lambda s: sorted(tuple(r) for r in s.execute(text(
        "SELECT labels, first_ts, last_ts FROM series WHERE name = :n"), {"n": name})))


def test_first_and_last_sample_time_follow_every_batch(console):
    now = int(time.time() * 1000)
    push(console, "lc-bounds", [{"name": "app_lc_bounds", "type": "gauge", "labels": {},
                                 "points": [[now - 2 * HOUR, 1.0], [now - HOUR, 2.0]]}])
    push(console, "lc-bounds", [{"name": "app_lc_bounds", "type": "gauge", "labels": {},
                                 "points": [[now - 3 * HOUR, 0.5], [now, 3.0]]}])  # earlier and later
    [(_, first, last)] = bounds(console, "app_lc_bounds")
    assert first == now - 3 * HOUR
    assert now <= last < now + 300_000  # at most the end of the last sample's five-minute window


def test_a_steady_senders_bounds_move_only_past_what_is_stored(console):
    # From the second batch on, the writer builds a steady sender's rows from its caches
    # and skips the bounds UPDATE for samples inside the stored bounds: the bounds must
    # still move for a sample before the first or past the end of the last one's window.
    start = int(time.time() * 1000) - 600_000
    metric = {"name": "app_lc_steady", "type": "gauge", "labels": {"k": "v"}}
    push(console, "lc-steady", [dict(metric, points=[[start, 1.0]])])
    [(_, first, last)] = bounds(console, "app_lc_steady")
    assert first == start and start <= last < start + 300_000
    push(console, "lc-steady", [dict(metric, points=[[last, 2.0]])])  # inside: unchanged
    assert bounds(console, "app_lc_steady") == [('{"k":"v"}', start, last)]
    push(console, "lc-steady", [dict(metric, points=[[start - 5_000, 0.5]])])  # before the first
    assert bounds(console, "app_lc_steady") == [('{"k":"v"}', start - 5_000, last)]
    push(console, "lc-steady", [dict(metric, points=[[last + 1_000, 3.0]])])  # the next window
    assert bounds(console, "app_lc_steady") == [('{"k":"v"}', start - 5_000, last + 300_000)]


def test_an_agents_series_move_their_last_sample_time_in_different_batches(console):
    # last_ts moves once in five minutes per series, at a point of its own: with windows
    # on the clock's minutes, every series of a host moved in the batch after each minute
    # (an UPDATE row each, on every host in the same ~10 s) and none in the five others, a
    # burst that made ingest batches wait ~0.5 s on PostgreSQL (BENCHMARKS.md).
    count, start = 120, int(time.time() * 1000) // 60_000 * 60_000 - 600_000
    metrics = [{"name": "app_lc_spread", "type": "gauge", "labels": {"i": str(i)}} for i in range(count)]
    push(console, "lc-spread", [dict(m, points=[[start, 0.0]]) for m in metrics])
    before = {labels: last for labels, _, last in bounds(console, "app_lc_spread")}
    moved = []
    for step in range(1, 31):  # one batch every 10 s of sample time, for five minutes
        ts = start + step * 10_000
        push(console, "lc-spread", [dict(m, points=[[ts, float(step)]]) for m in metrics])
        after = {labels: last for labels, _, last in bounds(console, "app_lc_spread")}
        assert all(ts <= last < ts + 300_000 for last in after.values()), (ts, sorted(after.values()))
        moved.append(sum(after[k] != before[k] for k in after))
        before = after
    assert sum(moved) == count, moved  # each series once in the five minutes
    assert max(moved) <= count // 3, moved  # and not all in the same batch


def test_queries_and_name_lists_read_only_series_with_data_in_the_window(console, viewer):
    now = int(time.time() * 1000)
    push(console, "lc-window", [
        {"name": "app_lc_window", "type": "gauge", "labels": {"i": "quiet"}, "points": [[now - 2 * HOUR, 1.0]]},
        {"name": "app_lc_window", "type": "gauge", "labels": {"i": "live"}, "points": [[now - 20_000, 2.0]]},
        {"name": "app_lc_gone", "type": "gauge", "labels": {}, "points": [[now - 2 * HOUR, 1.0]]}])
    window = {"start": (now - 60_000) / 1000, "end": now / 1000}
    with setting(console.services.query._config, max_series_per_query=1):
        r = console.request("GET", "/api/v1/metrics/range?" + urlencode(
            {"metric": "app_lc_window", "host": "lc-window", **window}), token=viewer)
    assert r.status == 200, r.body
    assert [s["labels"]["i"] for s in r.json()["series"]] == ["live"]
    r = console.request("GET", "/api/v1/metrics/names?" + urlencode({"host": "lc-window", **window}), token=viewer)
    assert r.status == 200, r.body
    assert r.json()["names"] == ["app_lc_window"]
    r = console.request("GET", "/api/v1/metrics/names?host=lc-window", token=viewer)
    assert r.json()["names"] == ["app_lc_gone", "app_lc_window"]


def test_the_host_cap_counts_active_series_and_names_the_rejected_metric(console, viewer):
    now = int(time.time() * 1000)
    with setting(console.services.ingest._config, max_series_per_host=2, series_active_hours=24.0):
        push(console, "lc-cap", [{"name": "veth_bytes", "type": "counter", "labels": {"device": f"veth{i}"},
                                  "points": [[now - 30 * HOUR, 1.0]]} for i in range(2)])
        body = push(console, "lc-cap", [{"name": "node_load1", "type": "gauge", "labels": {},
                                         "points": [[now, 0.5]]}])
        assert body["accepted_samples"] == 1 and "rejected" not in body  # the quiet veth series do not count
        body = push(console, "lc-cap", [{"name": "node_disk_io", "type": "gauge", "labels": {"device": d},
                                         "points": [[now, 1.0]]} for d in ("sda", "sdb")])
    assert body["accepted_samples"] == 1
    assert body["rejected"] == {"series_limit": 1}
    assert body["rejected_examples"]["series_limit"].startswith("node_disk_io{")
    hosts = {h["host"]: h for h in console.request("GET", "/api/v1/hosts", token=viewer).json()}
    [rejection] = hosts["lc-cap"]["rejected"]
    assert rejection["reason"] == "series_limit" and rejection["example"].startswith("node_disk_io{")



def test_series_whose_every_sample_is_refused_for_its_time_take_no_place_under_the_cap(console, viewer):
    """A stale spool replaying batches older than sample_max_age: their samples are refused
    as too_old, and no series row is made for them to hold a place under the cap."""
    now = int(time.time() * 1000)
    old = now - 8 * 24 * HOUR  # past sample_max_age (6 days)
    with setting(console.services.ingest._config, max_series_per_host=2):
        body = push(console, "lc-stale", [{"name": "stale_metric", "type": "gauge", "labels": {"i": str(i)},
                                           "points": [[old, 1.0], [old + 10_000, 2.0]]} for i in range(3)])
        assert body["accepted_samples"] == 0 and body["rejected"] == {"too_old": 6}, body
        assert bounds(console, "stale_metric") == []
        body = push(console, "lc-stale", [{"name": "fresh_metric", "type": "gauge", "labels": {"i": str(i)},
                                           "points": [[now, 1.0]]} for i in range(2)])
        assert body["accepted_samples"] == 2 and "rejected" not in body, body
        # One sample in the window among old ones: the series is made, the old samples refused.
        body = push(console, "lc-stale", [{"name": "fresh_metric", "type": "gauge", "labels": {"i": "0"},
                                           "points": [[old, 1.0], [now + 1000, 2.0]]}])
        assert body["accepted_samples"] == 1 and body["rejected"] == {"too_old": 1}, body
        body = push(console, "lc-stale", [{"name": "third_metric", "type": "gauge", "labels": {},
                                           "points": [[old, 1.0], [now, 2.0]]}])
        assert body["accepted_samples"] == 0 and body["rejected"] == {"series_limit": 2}, body

def test_retention_deletes_series_with_no_samples_left(console, viewer):
    now = time.time()
    now_ms = int(now * 1000)
    push(console, "lc-ret", [
        {"name": "app_lc_old", "type": "gauge", "labels": {}, "points": [[now_ms - 5 * 24 * HOUR, 1.0]]},
        {"name": "app_lc_kept", "type": "gauge", "labels": {}, "points": [[now_ms - 10_000, 2.0]]}])
    console.services.rollups.run_all()  # default retention keeps both
    assert len(bounds(console, "app_lc_old")) == 1
    cfg = console.services.config.console.model_copy(update=dict(retention_raw_days=2.0, retention_1m_days=3.0,
                                                                 retention_1h_days=4.0))
    RollupService(console.services.db, cfg, clock=lambda: now).run_all()
    assert bounds(console, "app_lc_old") == []
    assert len(bounds(console, "app_lc_kept")) == 1
    # The writer does not reuse the deleted series' id: a new sample makes a new series.
    push(console, "lc-ret", [{"name": "app_lc_old", "type": "gauge", "labels": {}, "points": [[now_ms, 3.0]]}])
    r = console.request("GET", "/api/v1/metrics/range?" + urlencode(
        {"metric": "app_lc_old", "host": "lc-ret", "start": now - 60, "end": now + 1}), token=viewer)
    assert [s["points"] for s in r.json()["series"]] == [[[now_ms, 3.0]]]


@pytest.fixture(scope="module")
def pg_console(tmp_path_factory):
    with console_on("postgres", tmp_path_factory) as harness:
        yield harness


def test_moving_the_bounds_is_a_heap_only_update_on_postgresql(pg_console):
    # The writer moves every active series' last_ts once in five minutes. On PostgreSQL an
    # UPDATE is heap-only (HOT: no new index entries) only when it changes no indexed
    # column and the page has room, which is what keeps that row cheap (BENCHMARKS.md,
    # "Ingest in the agent's shape"). The counters are the server's own.
    console = pg_console
    count, start = 300, int(time.time() * 1000) // 60_000 * 60_000 - 1_200_000
    metrics = [{"name": "app_lc_hot", "type": "gauge", "labels": {"i": str(i)}} for i in range(count)]
    push(console, "lc-hot", [dict(m, points=[[start, 0.0]]) for m in metrics])

    def updates() -> tuple[int, int]:
        return console.services.db.run(lambda s: tuple(s.execute(text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE schemaname = current_schema() AND relname = 'series'")).one()))

    before = updates()
    for step in range(1, 91):  # fifteen minutes of sample time (three windows), a batch every 10 s
        push(console, "lc-hot", [dict(m, points=[[start + step * 10_000, float(step)]]) for m in metrics])
    # A backend reports its counters when idle, at most once a second (10 s at the latest).
    wait_for(lambda: updates()[0] - before[0] >= 3 * count, 30, "the series updates to be counted")
    done, hot = (after - was for after, was in zip(updates(), before))
    assert hot >= 0.9 * done, (done, hot)  # 0 of them while last_ts was in an index
