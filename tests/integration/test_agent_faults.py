"""The agent under faults, with real processes on loopback and real files: a full disk
(a real tmpfs under the spool), a crash between spooling a batch and saving the log
positions, a token revoked and replaced, a dying sender thread, a deleted spool
directory, a log file truncated while the agent is stopped. Log lines are numbered
lines of a real file, metrics carry sequence numbers (tests/integration/seq_agent.py),
so loss and duplication are SQL counts on the real console's database."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.procs import REPO, AgentProcess, ConsoleProcess, child_env, tmpfs, wait_for
from tests.integration.test_delivery import assert_exactly_once, drain


@pytest.fixture
def console(tmp_path):
    (tmp_path / "console").mkdir()
    proc = ConsoleProcess(tmp_path / "console")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.terminate()
            agent.proc.wait(60)


class LineWriter:
    """Appends numbered lines ``line NNNNNN ...`` to ``path`` on a thread, ``rate`` per second."""

    def __init__(self, path: Path, rate: float = 200, pad: int = 40) -> None:
        self.path, self.rate, self.pad = path, rate, pad
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def line(self, n: int) -> str:
        return f"line {n:06d} " + "x" * self.pad

    def write(self, count: int) -> None:
        with open(self.path, "a") as fh:
            for _ in range(count):
                fh.write(self.line(self.written) + "\n")
                self.written += 1

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.write(max(1, int(self.rate * 0.05)))

    def start(self) -> "LineWriter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


def assert_lines_exactly_once(console: ConsoleProcess, host: str, writer: LineWriter) -> None:
    counts = console.line_counts(host, str(writer.path))
    doubled = {line: n for line, n in counts.items() if n != 1}
    assert not doubled, f"{len(doubled)} lines stored more than once: {sorted(doubled.items())[:5]}"
    missing = [n for n in range(writer.written) if writer.line(n) not in counts]
    assert not missing, f"{len(missing)} of {writer.written} lines lost: {missing[:10]}"
    assert len(counts) == writer.written


def wait_lines(console: ConsoleProcess, host: str, writer: LineWriter, timeout: float = 120) -> None:
    wait_for(lambda: len(console.line_counts(host, str(writer.path))) >= writer.written, timeout,
             f"{writer.written} lines of {writer.path} to arrive")


def test_full_disk_under_the_spool_loses_no_line_and_drops_samples_oldest_first_counted_once(
        console, agents, tmp_path):
    """The spool on a real 384 KiB tmpfs, the console away until the disk is full: log
    lines wait in their file, samples of the newest batches wait in memory (the oldest
    are dropped, each counted once); once the console is back everything drains."""
    host = "enospc-0"
    token = console.agent_token(host)
    log = tmp_path / "app.log"
    log.write_text("")
    writer = LineWriter(log, rate=400, pad=120)
    with tmpfs(tmp_path / host / "spool", "384k"):
        agent = AgentProcess(tmp_path / host, console.url, token, host, interval=0.05, spool_max_bytes=4 << 20,
                             spool_full_hold_batches=8, logs={"paths": [str(log)], "from_start": True})
        agents.append(agent)
        try:
            console.stop()
            writer.start()
            agent.start()
            wait_for(lambda: "cannot write to the spool" in agent.output(), 120, "the tmpfs to fill up")
            time.sleep(3)  # ~60 cycles, well past the 8 held batches: the oldest are being dropped
            console.start()
            time.sleep(3)
            writer.stop()
            wait_lines(console, host, writer)
            agent.pause()
            drain(console, [agent])
            # Held batches reach the spool without on_durable: the newest batch, sent last, closes the backlog.
            wait_for(lambda: agent.reserved() in console.seq_samples(host), 60, "the newest batch")
            output = agent.stop()
        finally:  # stopped before its spool is unmounted, even when the test failed
            writer.stop()
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.terminate()
                agent.proc.wait(60)
    assert_lines_exactly_once(console, host, writer)
    final = dict(part.split("=") for part in output.strip().splitlines()[-1].split()[1:])
    stored = console.seq_samples(host)
    assert len(stored) == len(set(stored)), "a batch's samples were stored twice"
    missing = sorted(set(range(1, agent.reserved() + 1)) - set(stored))
    # Samples of batches the spool could not take and the hold could not keep: counted exactly once.
    assert missing, "the disk never filled up enough to drop samples"
    assert int(final["held_dropped_batches"]) == len(missing)
    assert int(final["dropped_batches"]) == 0  # nothing spooled was dropped
    assert "the spool takes writes again" in output


def test_crash_between_spooling_and_saving_positions_neither_loses_nor_duplicates(console, agents, tmp_path):
    host = "crash-pos-0"
    log = tmp_path / "svc.log"
    log.write_text("")
    writer = LineWriter(log, rate=300)
    agent = AgentProcess(tmp_path / host, console.url, console.agent_token(host), host, interval=0.1,
                         logs={"paths": [str(log)], "from_start": True})
    agents.append(agent)
    writer.start()
    for _ in range(3):
        agent.start()
        time.sleep(1)
        (agent.state_dir / "crash_after_spool").touch()
        wait_for(lambda: agent.proc.poll() is not None, 30, "the injected crash")
        assert agent.proc.returncode == -9
    agent.start()
    time.sleep(2)
    writer.stop()
    wait_lines(console, host, writer)
    drain(console, [agent])
    agent.stop()
    assert_lines_exactly_once(console, host, writer)
    assert_exactly_once(console, agent)


def test_token_revoked_then_replaced_loses_nothing_and_dead_letters_nothing(console, agents, tmp_path):
    host = "auth-0"
    log = tmp_path / "auth.log"
    log.write_text("")
    writer = LineWriter(log, rate=100)
    token_file = tmp_path / host / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(console.agent_token(host) + "\n")
    agent = AgentProcess(tmp_path / host, console.url, "", host, interval=0.1, token_file=str(token_file),
                         auth_retry_min_backoff=0.2, auth_retry_max_backoff=1.0,
                         logs={"paths": [str(log)], "from_start": True})
    agents.append(agent)
    writer.start()
    agent.start()
    wait_for(lambda: console.seq_counts(host), 60, "first batches")
    assert console.revoke_agent_tokens(host) == 1
    wait_for(lambda: "console refused the agent token" in agent.output(), 60, "the agent to see the 401")
    refused = len(agent.durable())
    wait_for(lambda: len(agent.durable()) >= refused + 20, 30, "batches to pile up in the spool meanwhile")
    # The agent process prints through Python's last-resort handler: WARNING and above only.
    assert re.search(r"^console refused the agent token \(40[13] ", agent.output(), re.MULTILINE)
    assert not (agent.state_dir / "dead-letter.jsonl").exists()
    assert agent.proc.poll() is None
    token_file.write_text(console.agent_token(host) + "\n")  # a new token, as `enrol` would write it
    wait_for(lambda: "the agent token changed; sending again" in agent.output(), 30, "the new token to be read")
    writer.stop()
    wait_lines(console, host, writer)
    drain(console, [agent])
    agent.stop()
    assert_lines_exactly_once(console, host, writer)
    assert_exactly_once(console, agent)
    # The refusal shows in the self-metrics the agent reported afterwards.
    assert console.last_value(host, "fleetdeck_agent_send_errors_total", code="401") >= 1
    rejected = console.sql("SELECT s.value FROM samples s JOIN series r ON r.id = s.series_id JOIN hosts h "
                           "ON h.id = r.host_id WHERE h.name = ? AND r.name = 'fleetdeck_agent_auth_rejected'", host)
    assert (1.0,) in rejected and console.last_value(host, "fleetdeck_agent_auth_rejected") == 0.0


def test_a_dying_sender_thread_ends_the_agent_with_status_1(console, agents, tmp_path):
    host = "die-0"
    agent = AgentProcess(tmp_path / host, console.url, console.agent_token(host), host)
    agents.append(agent)
    agent.start()
    wait_for(lambda: console.seq_counts(host), 60, "first batches")
    (agent.state_dir / "sender_fault").touch()
    agent.proc.wait(30)  # before the fix the process stayed up with no sender
    assert agent.proc.returncode == 1
    assert "the sender thread died" in agent.output()
    (agent.state_dir / "sender_fault").unlink()
    agent.start()  # as systemd or `fleetdeck run` would: nothing spooled is lost
    drain(console, [agent])
    agent.stop()
    assert_exactly_once(console, agent)


def test_spool_directory_deleted_and_ack_unwritable_the_agent_keeps_delivering(console, agents, tmp_path):
    host = "spooldir-0"
    agent = AgentProcess(tmp_path / host, console.url, console.agent_token(host), host)
    agents.append(agent)
    agent.start()
    wait_for(lambda: console.seq_counts(host), 60, "first batches")
    spool = agent.state_dir / "spool"
    os.rename(spool, tmp_path / "spool-gone")  # atomically gone from under the agent
    shutil.rmtree(tmp_path / "spool-gone")
    reserved = agent.reserved()
    wait_for(lambda: max(console.seq_counts(host)) > reserved + 10, 60, "deliveries after the deletion")
    assert spool.is_dir() and "was deleted; created again" in agent.output()
    (spool / "ack.tmp").mkdir()  # the ack mark cannot be replaced any more
    reserved = agent.reserved()
    wait_for(lambda: max(console.seq_counts(host)) > reserved + 10, 60, "deliveries with no ack file")
    assert "cannot write the ack mark" in agent.output()
    (spool / "ack.tmp").rmdir()
    reserved = agent.reserved()
    wait_for(lambda: max(console.seq_counts(host)) > reserved + 5, 60, "deliveries after the fix")
    assert agent.proc.poll() is None
    drain(console, [agent])
    agent.stop()
    assert int((spool / "ack").read_text().split()[0]) > 0
    # Batches that were in the deleted spool may be lost (counted); nothing is doubled.
    counts = console.seq_counts(host)
    assert all(n == 1 for n in counts.values())
    assert console.last_value(host, "fleetdeck_agent_spool_recreated_total") == 1
    assert console.last_value(host, "fleetdeck_agent_spool_ack_write_errors_total") >= 1


def test_lines_written_just_before_a_stop_survive_a_truncation_while_stopped(console, agents, tmp_path):
    host = "trunc-0"
    log = tmp_path / "t.log"
    log.write_text("")
    writer = LineWriter(log)
    agent = AgentProcess(tmp_path / host, console.url, console.agent_token(host), host, interval=5,
                         logs={"paths": [str(log)], "from_start": True})
    agents.append(agent)
    agent.start()
    writer.write(50)
    wait_lines(console, host, writer, 60)
    writer.write(30)  # within the collect interval before the stop: not read by a cycle yet
    agent.stop()
    kept = writer.written
    os.truncate(log, 0)  # e.g. copytruncate with the copy not watched, while stopped
    writer.write(20)
    agent.start()
    wait_lines(console, host, writer, 60)
    agent.stop()
    assert_lines_exactly_once(console, host, writer)
    assert kept == 80


def test_dead_letter_list_and_replay(console, agents, tmp_path):
    """A batch refused for its content (422) goes to the dead-letter file, never the
    backlog; ``fleetdeck-agent dead-letter replay`` sends it to the console later."""
    from tests.integration.test_delivery import ScriptedConsole

    host = "dl-0"
    scripted = ScriptedConsole([(422, {}), (401, {}), (403, {})])
    try:
        agent = AgentProcess(tmp_path / host, scripted.url, console.agent_token(host), host, interval=0.2,
                             auth_retry_min_backoff=0.1, auth_retry_max_backoff=0.2)
        agents.append(agent)
        agent.start()
        wait_for(lambda: len(scripted.requests) >= 6, 60, "batches after the refusals")
        agent.stop()
    finally:
        scripted.close()
    bodies = [b for _, b in scripted.requests]
    # 422: dead-lettered; 401 and 403: the same next batch kept and sent again.
    assert bodies[1]["batch_id"] == bodies[2]["batch_id"] == bodies[3]["batch_id"] != bodies[0]["batch_id"]
    env = child_env()
    listed = subprocess.run([sys.executable, "-m", "agents", "dead-letter", "list", "--json", "--config",
                             str(agent.config)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["status"], e["batch_id"]) for e in entries] == [(422, bodies[0]["batch_id"])]
    replay = subprocess.run([sys.executable, "-m", "agents", "dead-letter", "replay", "--config", str(agent.config),
                             "--console", console.url], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert replay.returncode == 0, replay.stderr
    assert re.search(r"replayed 1 of 1", replay.stdout)
    assert console.seq_counts(host) == {bodies[0]["_seq"]: 1}
    again = subprocess.run([sys.executable, "-m", "agents", "dead-letter", "list", "--json", "--config",
                            str(agent.config)], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.stdout == ""
