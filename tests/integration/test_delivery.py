"""Delivery end to end with real processes on loopback: the console (``fleetdeck serve``)
and agents (the real Agent, spool, sender and HTTP client) are killed, stopped and
refused at random moments; every batch carries a sequence number, so loss and
duplication are SQL counts over what the agents reported durably spooled."""
from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from tests.integration.procs import AgentProcess, ConsoleProcess, free_port, wait_for


def assert_exactly_once(console: ConsoleProcess, agent: AgentProcess, lost: set[int] = frozenset()) -> None:
    """Every durably spooled seq of ``agent`` is stored exactly once (except ``lost``),
    and nothing the agent never built is stored."""
    durable = set(agent.durable())
    counts = console.seq_counts(agent.host)
    duplicated = {seq: n for seq, n in counts.items() if n != 1}
    assert not duplicated, f"{agent.host}: stored more than once: {sorted(duplicated.items())[:10]}"
    missing = durable - set(counts) - set(lost)
    assert not missing, f"{agent.host}: {len(missing)} durable batches lost: {sorted(missing)[:10]}"
    assert not set(counts) & set(lost), f"{agent.host}: torn records were delivered"
    assert max(counts) <= agent.reserved()
    samples = console.seq_samples(agent.host)
    assert samples == sorted(counts), f"{agent.host}: samples and log lines disagree"


def drain(console: ConsoleProcess, agents: list[AgentProcess], lost: set[int] = frozenset(),
          timeout: float = 120) -> None:
    for agent in agents:
        agent.pause()
    time.sleep(0.5)  # a cycle in progress finishes
    for agent in agents:
        wanted = set(agent.durable()) - set(lost)
        wait_for(lambda a=agent, w=wanted: w <= set(console.seq_counts(a.host)), timeout,
                 f"{agent.host} to deliver its backlog")


@pytest.fixture
def console(tmp_path):
    proc = ConsoleProcess(tmp_path / "console")
    (tmp_path / "console").mkdir()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def agents(tmp_path):
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


def test_console_killed_20_times_while_three_agents_push(console, agents, tmp_path):
    rng = random.Random(20)
    for i in range(3):
        host = f"push-{i}"
        agents.append(AgentProcess(tmp_path / host, console.url, console.agent_token(host), host).start())
    wait_for(lambda: all(console.seq_counts(a.host) for a in agents), 60, "first batches")
    for _ in range(20):
        time.sleep(rng.uniform(0.2, 1.2))
        console.kill9()
        time.sleep(rng.uniform(0.0, 0.6))
        console.start()
    drain(console, agents)
    for agent in agents:
        assert len(agent.durable()) >= 20
        assert_exactly_once(console, agent)
    # The kills interrupted requests: agents saw failures and retried them.
    errors = [console.last_value(a.host, "fleetdeck_agent_send_errors_total", code="connection_failed") or 0
              for a in agents]
    assert sum(errors) > 0


def test_console_stopped_for_a_while_agent_memory_bounded_and_backlog_drains(console, agents, tmp_path):
    agent = AgentProcess(tmp_path / "away-0", console.url, console.agent_token("away-0"), "away-0",
                         interval=0.02, drain_rate=200).start()
    agents.append(agent)
    wait_for(lambda: console.seq_counts("away-0"), 60, "first batches")
    console.stop()
    process = psutil.Process(agent.proc.pid)
    time.sleep(3)
    early_rss, early_queued = process.memory_info().rss, len(agent.durable())
    time.sleep(12)
    late_rss = process.memory_info().rss
    backlog = len(agent.durable()) - early_queued
    assert backlog > 100, "the agent stopped collecting while the console was away"
    # The backlog lives on disk: memory grows by the spool index at most (about 100 bytes a batch).
    assert late_rss - early_rss < 4 * 1024 * 1024, (early_rss, late_rss, backlog)
    console.start()
    drain(console, agents)
    assert_exactly_once(console, agent)


def test_agent_killed_during_spool_writes_restarts_drains_and_counts_torn_records(console, agents, tmp_path):
    dead_port = free_port()  # the agent spools against a console that is not there yet
    agent = AgentProcess(tmp_path / "crash-0", f"http://127.0.0.1:{dead_port}", console.agent_token("crash-0"),
                         "crash-0", interval=0.01)
    agents.append(agent)
    rng = random.Random(9)
    torn: set[int] = set()
    counted = 0
    for i in range(12):
        agent.start()
        counted += agent.startup_stats()["torn"]
        time.sleep(rng.uniform(0.1, 0.6))
        agent.kill9()
        if i % 2 == 0:  # as if the machine lost power in the middle of a write
            seq = agent.tear_last_record(cut=rng.randint(1, 30))
            if seq is not None:
                torn.add(seq)
    assert torn
    agent.config.write_text(agent.config.read_text().replace(str(dead_port), str(console.port)))
    agent.start()
    counted += agent.startup_stats()["torn"]
    # Every cut record was found and counted; a kill can tear one too, never fewer.
    assert counted >= len(torn)
    drain(console, [agent], lost=torn)
    assert_exactly_once(console, agent, lost=torn)
    assert len(agent.durable()) > 50


class ScriptedConsole:
    """A stdlib HTTP server answering ingest requests from a script of (status, headers)."""

    def __init__(self, script: list[tuple[int, dict]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[float, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                import gzip
                body = json.loads(gzip.decompress(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.requests.append((time.monotonic(), body))
                status, headers = outer.script.pop(0) if outer.script else (200, {})
                payload = (b'{"accepted_samples": 1, "accepted_logs": 1, "duplicate": false}' if status == 200
                           else json.dumps({"error": {"code": f"scripted_{status}", "message": "scripted",
                                                      "details": {}}}).encode())
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:  # keep test output quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def errors(body: dict) -> dict[str, float]:
    return {m["labels"]["code"]: m["points"][0][1] for m in body["metrics"]
            if m["name"] == "fleetdeck_agent_send_errors_total"}


def test_injected_503_429_are_retried_and_400_is_dead_lettered(agents, tmp_path):
    scripted = ScriptedConsole([(503, {"Retry-After": "1"}), (429, {"Retry-After": "2"}), (503, {}),
                                (400, {})])
    try:
        agent = AgentProcess(tmp_path / "inj-0", scripted.url, "token", "inj-0", interval=0.2,
                             retry_min_backoff=0.05, retry_max_backoff=0.2)
        agents.append(agent)
        agent.start()
        # Batches collected after the 400 report all the errors.
        wait_for(lambda: len(scripted.requests) >= 8 and errors(scripted.requests[-1][1]).get("400"), 60,
                 "a batch reporting the 400")
        agent.stop()
    finally:
        scripted.close()
    times = [t for t, _ in scripted.requests]
    bodies = [b for _, b in scripted.requests]
    first = bodies[0]["batch_id"]
    # 503, 429 and 503 again: the same batch resent; then 400: given up, never sent again.
    assert [b["batch_id"] for b in bodies[:4]] == [first] * 4
    assert all(b["batch_id"] != first for b in bodies[4:])
    assert times[1] - times[0] >= 1.0 and times[2] - times[1] >= 2.0  # Retry-After honoured
    assert len({b["batch_id"] for b in bodies[4:]}) == len(bodies) - 4
    dead = [json.loads(line) for line in (tmp_path / "inj-0" / "dead-letter.jsonl").read_text().splitlines()]
    assert [(d["status"], d["batch"]["batch_id"]) for d in dead] == [(400, first)]

    assert errors(bodies[-1]) == {"503": 2.0, "429": 1.0, "400": 1.0}
    dead_letters = [m for m in bodies[-1]["metrics"] if m["name"] == "fleetdeck_agent_dead_letter_batches_total"]
    assert dead_letters[0]["points"][0][1] == 1.0


def test_spool_cap_drops_the_oldest_batches_with_exact_counts(console, agents, tmp_path):
    dead_port = free_port()
    agent = AgentProcess(tmp_path / "cap-0", f"http://127.0.0.1:{dead_port}", console.agent_token("cap-0"),
                         "cap-0", interval=0.01, spool_max_bytes=65536, retry_max_backoff=0.2)
    agents.append(agent)
    agent.start()
    # Batches are about 2 KiB gzipped: 64 KiB hold ~30; keep writing well past that.
    wait_for(lambda: len(agent.durable()) > 400, 120, "400 batches spooled")
    agent.pause()
    time.sleep(0.5)
    output = agent.stop()
    final = dict(part.split("=") for part in output.strip().splitlines()[-1].split()[1:])
    durable = agent.durable()
    dropped_batches = int(final["dropped_batches"])
    assert dropped_batches > len(durable) // 3  # the cap held only the newest
    agent.config.write_text(agent.config.read_text().replace(str(dead_port), str(console.port)))
    agent.start()  # still paused: it only drains what the first run spooled
    drain(console, [agent], lost=set(sorted(durable)[:dropped_batches]))
    stored = set(console.seq_counts("cap-0"))
    lost = sorted(set(durable) - stored)
    # Exactly the oldest batches were dropped, and the counts are exact.
    assert lost == sorted(durable)[:dropped_batches]
    assert int(final["dropped_lines"]) == len(lost)
    assert int(final["dropped_samples"]) == sum(durable[seq] for seq in lost)
    assert_exactly_once(console, agent, lost=set(lost))


def test_a_continuing_failure_is_warned_again_rate_limited(tmp_path, caplog):
    """Retries after the first failure are not only DEBUG: a WARNING again at most every
    ``warning_interval``, with the number of failed attempts since the last one."""
    import logging

    from agents.client import IngestClient
    from agents.delivery import DeadLetterFile, RetryPolicy, Sender
    from agents.spool import Spool

    scripted = ScriptedConsole([(503, {})] * 400)
    try:
        spool = Spool(str(tmp_path / "spool"), fsync=False)
        spool.append(IngestClient.encode({"host": "w", "batch_id": "b", "metrics": [], "logs": []}), 0, 0)
        sender = Sender(spool, IngestClient(scripted.url, "t"), RetryPolicy(0.005, 0.01),
                        DeadLetterFile(str(tmp_path / "dead.jsonl")), drain_rate=1000, warning_interval=0.5)
        stop = threading.Event()
        caplog.set_level(logging.DEBUG, logger="agents.delivery")
        thread = threading.Thread(target=sender.run, args=(stop,))
        thread.start()
        time.sleep(1.8)
        stop.set()
        thread.join(10)
    finally:
        scripted.close()
    attempts = len(scripted.requests)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "push of batch" in
                r.getMessage()]
    assert attempts > 20
    assert 3 <= len(warnings) <= 5, warnings
    assert "failed attempt(s) since the last warning" in warnings[-1]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "push of batch" in r.getMessage()]
    assert len(debug) + len(warnings) == attempts
