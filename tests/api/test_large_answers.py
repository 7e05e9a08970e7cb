"""Large answers (range queries, PromQL, log searches) over HTTP: gzip-compressed when the
client takes gzip, byte for byte the JSON an uncompressed request gets, and written beside
the event loop, which keeps answering meanwhile."""
from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import threading
import time
from urllib.parse import urlencode

import pytest

from tests.harness import wait_for

SERIES = 60
POINTS = 3000  # per series, 10 s apart: 180,000 samples, ~3 MB of JSON as raw points
STEP_MS = 10_000
T0 = (int(time.time()) // 60 - 600) * 60 * 1000  # a whole minute, ten hours ago, in ms


@pytest.fixture(scope="module")
def loaded(console):
    host = f"large-{int(time.time() * 1000) % 10**8}"
    token = console.agent_token(host)
    for first in range(0, POINTS, 500):  # 30,000 samples a batch
        metrics = [{"name": "large_gauge", "type": "gauge", "labels": {"disk": f"d{s}"},
                    "points": [[T0 + i * STEP_MS, s + i / 1000] for i in range(first, first + 500)]}
                   for s in range(SERIES)]
        status, body = console.push(host, token, metrics)
        assert status == 200, body
    return {"console": console, "host": host, "viewer": console.api_token("viewer")}


def fetch(loaded, path: str, gzip_ok: bool):
    """-> (status, headers with lower-case names, body as sent: gzip's bytes if gzipped)."""
    headers = {"Accept-Encoding": "gzip, deflate, br"} if gzip_ok else {}  # as browsers send it
    resp = loaded["console"].request("GET", path, token=loaded["viewer"], headers=headers)
    return resp.status, resp.headers, resp.body


def range_path(loaded) -> str:
    return "/api/v1/metrics/range?" + urlencode({"metric": "large_gauge", "host": loaded["host"],
                                                 "start": T0 / 1000, "end": (T0 + POINTS * STEP_MS) / 1000})


def test_range_answer_is_gzipped_and_the_same_json(loaded):
    status, plain_headers, plain = fetch(loaded, range_path(loaded), gzip_ok=False)
    assert status == 200
    assert "content-encoding" not in plain_headers
    status, headers, packed = fetch(loaded, range_path(loaded), gzip_ok=True)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in headers["vary"]
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert len(packed) < len(plain) / 2
    assert gzip.decompress(packed) == plain
    body = json.loads(plain)
    assert body["resolution"] == "raw"
    got = {s["labels"]["disk"]: s["points"] for s in body["series"]}
    assert len(got) == SERIES
    for s in (0, SERIES - 1):
        assert got[f"d{s}"] == [[T0 + i * STEP_MS, s + i / 1000] for i in range(POINTS)]


def test_promql_range_answer_is_gzipped_and_the_same_json(loaded):
    path = "/prometheus/api/v1/query_range?" + urlencode({
        "query": f'large_gauge{{host="{loaded["host"]}"}}', "start": T0 / 1000,
        "end": (T0 + (POINTS - 1) * STEP_MS) / 1000, "step": "10s"})
    _, plain_headers, plain = fetch(loaded, path, gzip_ok=False)
    status, headers, packed = fetch(loaded, path, gzip_ok=True)
    assert status == 200
    assert "content-encoding" not in plain_headers
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/json"
    assert gzip.decompress(packed) == plain
    body = json.loads(plain)
    assert body["status"] == "success"
    assert len(body["data"]["result"]) == SERIES
    assert all(len(r["values"]) == POINTS for r in body["data"]["result"])


def test_small_answers_are_still_gzipped_by_the_server(loaded):
    path = "/api/v1/metrics/range?" + urlencode({"metric": "large_gauge", "host": loaded["host"],
                                                 "label.disk": "d1", "start": T0 / 1000,
                                                 "end": (T0 + 200 * STEP_MS) / 1000})
    _, _, plain = fetch(loaded, path, gzip_ok=False)
    _, headers, packed = fetch(loaded, path, gzip_ok=True)
    assert 1024 < len(plain) < 256 * 1024
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed) == plain


def test_event_loop_keeps_answering_while_large_answers_are_compressed(loaded):
    """Gzip (level 6, as the server compresses other answers) of this ~3 MB answer takes
    0.1-0.2 s; done on the event loop, that was the loop's longest wait. Beside the loop,
    the loop's longest wait between two 10 ms sleeps stays under half of it."""
    console = loaded["console"]
    _, _, plain = fetch(loaded, range_path(loaded), gzip_ok=False)
    started = time.perf_counter()
    gzip.compress(plain, 6)
    compressing = time.perf_counter() - started  # on this machine, at its present load
    assert compressing > 0.03, f"{len(plain):,} bytes compressed in {compressing * 1000:.0f} ms: too small to tell"
    gaps: list[float] = []
    done = threading.Event()

    async def watch() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    watcher = asyncio.run_coroutine_threadsafe(watch(), console.loop)
    try:
        for _ in range(3):
            status, headers, _ = fetch(loaded, range_path(loaded), gzip_ok=True)
            assert status == 200 and headers["content-encoding"] == "gzip"
    finally:
        done.set()
        watcher.result(10)
    assert len(gaps) > 10
    assert max(gaps) < compressing / 2, (f"the event loop waited {max(gaps) * 1000:.0f} ms at once during three "
                                         f"large answers; compressing one takes {compressing * 1000:.0f} ms")


def test_a_large_answer_is_sent_in_chunks_not_as_one_body(loaded):
    """A large answer is written chunk by chunk (HTTP/1.1 chunked transfer coding), not built
    whole first: no Content-Length (nor an ETag hashed over the whole body), and the chunks
    make the same JSON, compressed or not."""
    _, plain_headers, plain = fetch(loaded, range_path(loaded), gzip_ok=False)
    _, headers, packed = fetch(loaded, range_path(loaded), gzip_ok=True)
    assert len(plain) > 2 * 1024 * 1024  # over two chunks of JSON
    for h in (plain_headers, headers):
        assert h.get("transfer-encoding") == "chunked"
        assert "content-length" not in h
        assert "etag" not in h
    assert gzip.decompress(packed) == plain


def test_a_client_that_leaves_mid_answer_ends_the_writing_quietly(loaded, caplog):
    """A client that reads little and leaves: the console writes ahead of what the client
    took by a bounded amount (the chunk being sent, the next being written), stops once it
    sees the client gone, logs no error, and answers the next client in full."""
    console = loaded["console"]
    answers = console.services.answers
    streams = []

    def recording(value, gzip):
        streams.append(type(answers).stream(value, gzip))
        return streams[-1]

    # PromQL's values every 3 s: ~15 MB of JSON, more than the sockets' buffers take
    # (the console's send buffer grows to 4 MiB, net.ipv4.tcp_wmem).
    big_path = "/prometheus/api/v1/query_range?" + urlencode({
        "query": f'large_gauge{{host="{loaded["host"]}"}}', "start": T0 / 1000,
        "end": (T0 + (POINTS - 1) * STEP_MS) / 1000, "step": "3s"})
    answers.stream = recording  # the same streams, watched
    try:
        with caplog.at_level(logging.WARNING):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the client takes little
            sock.connect(("127.0.0.1", console.port))
            sock.sendall(f"GET {big_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Authorization: Bearer {loaded['viewer']}\r\n\r\n".encode())
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first[:100]
            wait_for(lambda: len(streams) == 1, what="the answer's stream")
            time.sleep(0.5)  # the console writes what the socket's buffers take, then waits
            sock.close()
            time.sleep(1.0)  # a chunk is written in milliseconds: the whole rest would be by now
        assert not streams[0].done, "the whole answer was written for a client that left after 4 KiB"
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    finally:
        del answers.stream
    status, _, plain = fetch(loaded, range_path(loaded), gzip_ok=False)
    assert status == 200 and len(json.loads(plain)["series"]) == SERIES
