"""The Prometheus remote write 1.0 receiver (``POST /api/v1/write``) over real HTTP:
stored labels and samples, the spec's status codes, and nothing stored for a bad body.
A real Prometheus writing to it is tests/integration/test_remote_write_prometheus.py."""
from __future__ import annotations

import asyncio
import math
import struct
import threading
import time

import cramjam
import pytest
from sqlalchemy import text

from console.ingest import prompb
from tests.harness import ConsoleHarness

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}


def now_ms() -> int:
    return int(time.time() * 1000)


def write_request(series: list[tuple[dict, list[tuple[int, float]]]]) -> bytes:
    """[(labels with __name__, [(ts_ms, value)])] -> snappy-compressed WriteRequest bytes."""
    req = prompb.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def post(console, body: bytes, token: str | None, path: str = "/api/v1/write", headers: dict | None = None):
    return console.request("POST", path, body, token=token, headers={**HEADERS, **(headers or {})})


def stored(console, host: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """{(name, labels JSON): [(ts, value)]} of ``host``, read from the database."""
    rows = console.services.db.run(lambda s: s.execute(text(
        "SELECT s.name, s.labels, p.ts, p.value FROM samples p JOIN series s ON s.id = p.series_id "
        "JOIN hosts h ON h.id = s.host_id WHERE h.name = :h ORDER BY p.ts"), {"h": host}).all())
    out: dict = {}
    for name, labels, ts, value in rows:
        out.setdefault((name, labels), []).append((ts, value))
    return out


def rejections(console, host: str) -> dict[str, int]:
    return dict(console.services.db.run(lambda s: s.execute(text(
        "SELECT r.reason, r.count FROM ingest_rejections r JOIN hosts h ON h.id = r.host_id "
        "WHERE h.name = :h"), {"h": host}).all()))


def assert_error(resp, status: int, code: str) -> None:
    assert resp.status == status, resp.body
    assert resp.json()["error"]["code"] == code, resp.body


@pytest.fixture(scope="module")
def console(db_console):
    """Every test here runs on SQLite and on PostgreSQL (skipped without it)."""
    return db_console


@pytest.fixture(scope="module")
def prom(console):
    return "prom-1", console.agent_token("prom-1")


@pytest.mark.parametrize("path", ["/api/v1/write", "/prometheus/api/v1/write"])
def test_samples_keep_the_labels_prometheus_sent(console, prom, path):
    host, token = prom
    t = now_ms()
    job = "w" + path.replace("/", "_")
    body = write_request([
        ({"__name__": "node_load1", "instance": "10.0.0.5:9100", "job": job}, [(t - 15_000, 0.25), (t, 0.5)]),
        ({"__name__": "http_requests_total", "job": job, "code": "200", "empty": ""}, [(t, 7.0)]),
    ])
    resp = post(console, body, token, path)
    assert resp.status == 204, resp.body
    assert resp.body == b""
    got = {k: v for k, v in stored(console, host).items() if f'"job":"{job}"' in k[1]}
    assert got == {
        ("node_load1", f'{{"instance":"10.0.0.5:9100","job":"{job}"}}'): [(t - 15_000, 0.25), (t, 0.5)],
        ("http_requests_total", f'{{"code":"200","job":"{job}"}}'): [(t, 7.0)],
    }
    types = dict(console.services.db.run(lambda s: s.execute(text(
        "SELECT name, type FROM series WHERE labels LIKE :j"), {"j": f'%"{job}"%'}).all()))
    assert types == {"node_load1": "gauge", "http_requests_total": "counter"}
    # The metrics range API answers what was written.
    viewer = console.api_token("viewer")
    answer = console.request("GET", f"/api/v1/metrics/range?metric=node_load1&host={host}"
                                    f"&start={(t - 60_000) / 1000}&end={t / 1000 + 1}&step=1", token=viewer).json()
    points = [p for s in answer["series"] if s["labels"].get("job") == job for p in s["points"]]
    assert [v for _, v in points] == [0.25, 0.5]


def test_stale_markers_are_not_stored_and_nan_is_counted(console, prom):
    host, token = prom
    t = now_ms()
    before = rejections(console, host).get("non_finite", 0)
    body = write_request([
        ({"__name__": "stale_series", "job": "stale"}, [(t - 10_000, 1.0), (t, STALE_NAN)]),
        ({"__name__": "only_stale", "job": "stale"}, [(t, STALE_NAN)]),
        ({"__name__": "summary_quantile", "job": "stale", "quantile": "0.5"}, [(t, math.nan), (t + 1, math.inf)]),
    ])
    resp = post(console, body, token)
    assert resp.status == 204, resp.body
    got = {k: v for k, v in stored(console, host).items() if '"job":"stale"' in k[1]}
    assert got == {("stale_series", '{"job":"stale"}'): [(t - 10_000, 1.0)]}
    assert rejections(console, host)["non_finite"] == before + 2
    metrics = console.request("GET", "/metrics").body.decode()
    assert 'fleetdeck_remote_write_ignored_total{kind="stale_marker"} 2.0' in metrics


@pytest.mark.parametrize("body,status,code,headers", [
    (b"\x0a\x05\x0a\x03\x0a\x01", 400, "invalid_snappy", {}),  # raw protobuf, not snappy
    (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff\x0f\x01")), 400, "invalid_protobuf", {}),
    (bytes(cramjam.snappy.compress_raw(b"\x0a\x02\x0a\x00\x12")), 400, "invalid_protobuf", {}),
    (b"", 400, "invalid_snappy", {}),
    (write_request([({"__name__": "x"}, [(1, 1.0)])]), 415, "unsupported_encoding", {"Content-Encoding": "gzip"}),
    (write_request([({"__name__": "x"}, [(1, 1.0)])]), 415, "unsupported_media_type",
     {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}),
])
def test_malformed_body_is_refused_and_stores_nothing(console, prom, body, status, code, headers):
    host, token = prom
    before = console.count("samples"), console.count("series")
    assert_error(post(console, body, token, headers=headers), status, code)
    assert (console.count("samples"), console.count("series")) == before


@pytest.mark.parametrize("series,code", [
    ([({"job": "nameless"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "bad-name"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "ok", "bad-label": "x"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "name_then_newline\n"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "ok", "label\n": "x"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "ok", "v": "x" * 4097}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "ok", "v": "a\x00b"}, [(0, 1.0)])], "invalid_labels"),
    ([({"__name__": "ok"}, [(-5, 1.0)])], "invalid_timestamp"),
])
def test_invalid_series_fails_the_whole_request(console, prom, series, code):
    host, token = prom
    t = now_ms()
    good = ({"__name__": "good_series_" + code, "job": "bad"}, [(t, 1.0)])
    series = [(labels, [(t if ts == 0 else ts, v) for ts, v in samples]) for labels, samples in series]
    before = console.count("samples"), console.count("series")
    assert_error(post(console, write_request([good, *series]), token), 400, code)
    assert (console.count("samples"), console.count("series")) == before


def test_duplicate_label_and_native_histogram_are_refused(console, prom):
    host, token = prom
    req = prompb.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="dup")
    ts.labels.add(name="a", value="1")
    ts.labels.add(name="a", value="2")
    ts.samples.add(timestamp=now_ms(), value=1.0)
    before = console.count("samples")
    assert_error(post(console, bytes(cramjam.snappy.compress_raw(req.SerializeToString())), token),
                 400, "invalid_labels")
    # Field 4 of TimeSeries (a native histogram): an empty message is enough to be refused.
    raw = write_request([({"__name__": "hist"}, [(now_ms(), 1.0)])])
    plain = bytes(cramjam.snappy.decompress_raw(raw))
    with_histogram = plain[:1] + bytes([plain[1] + 2]) + plain[2:] + b"\x22\x00"
    assert_error(post(console, bytes(cramjam.snappy.compress_raw(with_histogram)), token),
                 400, "unsupported_histogram")
    assert console.count("samples") == before


def test_missing_or_wrong_credentials(console, prom):
    host, token = prom
    body = write_request([({"__name__": "auth_probe"}, [(now_ms(), 1.0)])])
    before = console.count("samples")
    assert post(console, body, None).status == 401
    assert post(console, body, "fda_not-a-token").status == 401
    assert_error(post(console, body, console.api_token("admin")), 403, "forbidden")
    assert console.count("samples") == before


def test_sample_outside_the_time_window_fails_the_request_and_is_counted(console, prom):
    host, token = prom
    t = now_ms()
    before = console.count("samples"), console.count("series"), rejections(console, host).get("too_old", 0)
    body = write_request([
        ({"__name__": "window_ok", "job": "window"}, [(t, 1.0)]),
        ({"__name__": "window_old", "job": "window"}, [(t - 8 * 86400_000, 1.0)]),
    ])
    resp = post(console, body, token)
    assert_error(resp, 400, "samples_rejected")
    assert resp.json()["error"]["details"]["rejected"] == {"too_old": 1}
    assert (console.count("samples"), console.count("series")) == before[:2]
    assert rejections(console, host)["too_old"] == before[2] + 1


def test_series_over_the_cap_fail_the_request(tmp_path):
    console = ConsoleHarness(tmp_path, max_series_per_host=3).start()
    try:
        token = console.agent_token("capped")
        t = now_ms()
        first = write_request([({"__name__": f"s{i}"}, [(t, 1.0)]) for i in range(2)])
        assert post(console, first, token).status == 204
        over = write_request([({"__name__": f"s{i}"}, [(t + 1000, 2.0)]) for i in range(4)])
        resp = post(console, over, token)
        assert_error(resp, 400, "samples_rejected")
        assert resp.json()["error"]["details"]["rejected"] == {"series_limit": 1}
        assert console.count("samples") == 2 and console.count("series") == 2
        assert rejections(console, "capped") == {"series_limit": 1}
    finally:
        console.close()


def test_a_saturated_write_queue_answers_503_which_prometheus_retries(tmp_path):
    console = ConsoleHarness(tmp_path, ingest_max_inflight=1).start()
    try:
        token = console.agent_token("busy")
        release = threading.Event()
        # Occupy the single database writer thread, as a slow disk would.
        blocker = asyncio.run_coroutine_threadsafe(console.services.db.on_writer(release.wait, 20), console.loop)
        first: list = []
        t = now_ms()
        waiting = threading.Thread(target=lambda: first.append(
            post(console, write_request([({"__name__": "a"}, [(t, 1.0)])]), token)))
        waiting.start()
        deadline = time.monotonic() + 10
        while console.services.admission.inflight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        resp = post(console, write_request([({"__name__": "b"}, [(t, 2.0)])]), token)
        release.set()
        waiting.join(10)
        blocker.result(10)
        assert_error(resp, 503, "ingest_saturated")
        assert int(resp.headers["retry-after"]) >= 1
        assert first[0].status == 204
        assert stored(console, "busy") == {("a", "{}"): [(t, 1.0)]}
    finally:
        console.close()
