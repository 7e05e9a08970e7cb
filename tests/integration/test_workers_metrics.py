"""``fleetdeck serve --workers 2`` as a real process tree, on SQLite and on PostgreSQL: every
scrape of ``/metrics``, whichever worker answers it, reports the whole console (counters
and histograms summed over the workers, the leader flag of the one leading, each worker's
live-relay view under its pid, the live sockets of both), no counter ever goes back
between scrapes, a worker killed with SIGKILL and started again keeps its counts in the
sums, and a retired host's clock skew leaves every worker's answer."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import time
import uuid

import pytest
import tornado.httpclient
import tornado.websocket
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import batch, wait_for
from tests.integration.procs import ConsoleProcess

SAMPLES_PER_BATCH = 3


def fresh(console: ConsoleProcess) -> tuple[http.client.HTTPConnection, int]:
    """A new connection (so the kernel picks a worker for it anew); -> (it, that worker's pid)."""
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=30)
    conn.connect()
    port = conn.sock.getsockname()[1]
    return conn, wait_for(lambda: console.worker_serving(port), 10, "the worker holding the connection")


def push(console: ConsoleProcess, host: str, token: str) -> int:
    """One batch of SAMPLES_PER_BATCH samples over a fresh connection; -> the worker that stored it."""
    now = int(time.time() * 1000)
    metrics = [{"name": "worker_metrics_probe", "labels": {"n": str(i)}, "points": [[now, float(i)]]}
               for i in range(SAMPLES_PER_BATCH)]
    conn, pid = fresh(console)
    try:
        conn.request("POST", "/api/v1/ingest", json.dumps(batch(host, metrics)).encode(),
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert (resp.status, body["accepted_samples"]) == (200, SAMPLES_PER_BATCH), body
    finally:
        conn.close()
    return pid


def scrape(console: ConsoleProcess) -> tuple[int, dict[tuple[str, tuple], float], dict[str, str]]:
    """``/metrics`` over a fresh connection; -> (the worker that answered, {(sample name,
    sorted labels): value}, {family: type})."""
    conn, pid = fresh(console)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status == 200, text[:500]
    finally:
        conn.close()
    values, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in values, f"{key} twice in one answer"
            values[key] = sample.value
    return pid, values, types


def went_back(previous: dict, values: dict, types: dict[str, str]) -> dict:
    """The counter and histogram samples lower in ``values`` than in ``previous``."""
    def monotonic(name: str) -> bool:
        return any(types.get(family) in ("counter", "histogram") and name.startswith(family) for family in types)
    return {k: (previous[k], v) for k, v in values.items() if k in previous and v < previous[k] and monotonic(k[0])}


@pytest.fixture(params=["sqlite", "postgres"])
def workers(request, tmp_path):
    env = {}
    if request.param == "postgres":
        env["FLEETDECK_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    console = ConsoleProcess(tmp_path, args=("--workers", "2"), **env).start()
    try:
        wait_for(lambda: len(console.worker_pids()) == 2, 30, "two workers")
        yield console
    finally:
        console.stop()


def test_every_scrape_on_any_worker_reports_the_whole_console(workers):
    console = workers
    host = "wm-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    stored: dict[int, int] = {}  # worker pid -> batches it stored
    while len(stored) < 2 or min(stored.values()) < 3:
        assert sum(stored.values()) < 80, f"80 fresh connections and not 3 batches on each worker: {stored}"
        pid = push(console, host, token)
        stored[pid] = stored.get(pid, 0) + 1
    pushed = sum(stored.values())
    stored_key = ("fleetdeck_ingest_batches_total", (("result", "stored"),))
    samples_key = ("fleetdeck_ingest_samples_total", ())
    answered: set[int] = set()
    previous: dict = {}
    types: dict[str, str] = {}
    for _ in range(40):
        pid, values, types = scrape(console)
        answered.add(pid)
        assert (values[stored_key], values[samples_key]) == (pushed, pushed * SAMPLES_PER_BATCH), (pid, stored)
        assert values[("fleetdeck_leader", ())] == 1.0
        # each worker's own relay view, under its pid; both workers listed by either
        assert {dict(labels)["pid"] for name, labels in values if name == "fleetdeck_live_remote_topics"} \
            == {str(p) for p in console.worker_pids()}
        ingest_requests = sum(v for (name, labels), v in values.items()
                              if name == "fleetdeck_http_request_duration_seconds_count"
                              and ("method", "POST") in labels and ("code", "200") in labels
                              and ("route", "/api/v1/ingest") in labels)
        assert ingest_requests == pushed, values
        assert not went_back(previous, values, types)
        previous = values
        if len(answered) == 2 and _ >= 10:
            break
    assert answered == set(stored), f"scrapes answered by {answered}, batches stored by {set(stored)}"

    # A worker killed with SIGKILL is started again: what it counted stays in the sums.
    victim = next(iter(stored))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(console.worker_pids()) == 2 and victim not in console.worker_pids(), 30,
             "the killed worker to be replaced")
    for _ in range(6):
        push(console, host, token)
    pushed += 6
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"scrapes answered by {seen} only"
        pid, values, types = scrape(console)
        seen.add(pid)
        assert (values[stored_key], values[samples_key]) == (pushed, pushed * SAMPLES_PER_BATCH), pid
        assert not went_back(previous, values, types)
        assert str(victim) not in {dict(labels).get("pid") for _, labels in values}, "a dead worker's live gauge"
        previous = values
    # one leader among the live workers once the lock moved (the dead worker's flag is gone)
    wait_for(lambda: scrape(console)[1][("fleetdeck_leader", ())] == 1.0, 15, "a live worker to lead")


def test_a_retired_hosts_clock_skew_leaves_every_workers_answer(workers):
    console = workers
    host = "skew-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    workers_used: set[int] = set()
    for _ in range(40):
        workers_used.add(push(console, host, token))
        if len(workers_used) == 2:
            break
    assert len(workers_used) == 2, workers_used
    skew = ("fleetdeck_host_clock_skew_seconds", (("host", host),))
    assert skew in scrape(console)[1]
    admin = console.api_token(f"admin-{host}", "admin")
    conn, _ = fresh(console)
    conn.request("DELETE", f"/api/v1/hosts/{host}", headers={"Authorization": f"Bearer {admin}"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    answered = set()
    for _ in range(40):
        pid, values, _types = scrape(console)
        answered.add(pid)
        assert skew not in values, (pid, values[skew])
        if len(answered) == 2:
            break
    assert len(answered) == 2, answered


def test_live_subscriptions_are_summed_over_the_workers(workers):
    console = workers
    viewer = console.api_token("viewer-" + uuid.uuid4().hex[:8], "viewer")
    key = ("fleetdeck_live_subscriptions", ())

    async def subscribed(topics: list[str]):
        ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            console.url.replace("http", "ws") + "/api/v1/live", headers={"Authorization": f"Bearer {viewer}"}))
        ws.write_message(json.dumps({"subscribe": topics}))
        assert json.loads(await asyncio.wait_for(ws.read_message(), 10)) == {"subscribed": topics}
        return ws, ws.protocol.stream.socket.getsockname()[1]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sockets, holders = [], set()
        while len(holders) < 2:  # sockets on both workers
            assert len(sockets) < 40, f"40 sockets and all on {holders}"
            ws, port = await subscribed([f"host:sub-{len(sockets)}", f"logs:sub-{len(sockets)}"])
            sockets.append(ws)
            holders.add(await loop.run_in_executor(None, wait_for, lambda: console.worker_serving(port), 10,
                                                   "the worker holding the socket"))
        answered = set()
        for _ in range(40):
            pid, values, _types = await loop.run_in_executor(None, scrape, console)
            answered.add(pid)
            assert values[key] == 2 * len(sockets), (pid, values[key], len(sockets))
            if len(answered) == 2:
                break
        assert len(answered) == 2, answered
        for ws in sockets:
            ws.close()
        await loop.run_in_executor(None, wait_for, lambda: scrape(console)[1][key] == 0, 10,
                                   "the closed sockets to leave the sum")

    asyncio.run(scenario())
