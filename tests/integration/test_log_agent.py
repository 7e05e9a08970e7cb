"""Agent log tailing end to end: real files, the real agent and client, a real console
over HTTP, searched through ``GET /api/v1/logs``."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from agents.agent import Agent
from agents.client import IngestClient
from agents.config import load_agent_config
from collectors.logs import LogCollector
from tests.conftest import need
from tests.docker_images import run_labels
from tests.harness import wait_for

REPO = Path(__file__).resolve().parents[2]


def all_logs(console, token, **params) -> list[dict]:
    out, cursor = [], None
    while True:
        query = dict(params, limit=1000, **({"cursor": cursor} if cursor else {}))
        resp = console.request("GET", "/api/v1/logs?" + urllib.parse.urlencode(query), token=token)
        assert resp.status == 200, resp.body
        body = resp.json()
        out += body["logs"]
        cursor = body["next"]
        if cursor is None:
            return out[::-1]  # oldest first


def write(path, start: int, end: int, mode: str = "a") -> None:
    with open(path, mode) as fh:
        for i in range(start, end):
            fh.write(f"seq {i:06d} payload\n")


def seqs(records) -> list[int]:
    return [int(re.match(r"seq (\d+) ", r["line"]).group(1)) for r in records]


def make_agent(console, tmp_path, host: str, logs: dict, url: str | None = None) -> tuple[Agent, LogCollector]:
    config = load_agent_config(None, {"console_url": url or console.url, "token": console.agent_token(host),
                                      "host": host, "state_dir": str(tmp_path / "state"), "logs": logs},
                               environ={})
    tail = LogCollector(config.logs, config.state_dir)
    client = IngestClient(config.console_url, config.token, timeout=5)
    return Agent(config, [tail], client, logs=tail), tail


def test_rotation_while_the_console_is_down(console, tmp_path):
    host = "rot-" + uuid.uuid4().hex[:8]
    log = tmp_path / "app.log"
    log.write_text("")
    agent, tail = make_agent(console, tmp_path, host, {"paths": [str(log)]})
    agent._cycle()
    write(log, 0, 100)
    agent._cycle()
    # the console becomes unreachable (nothing listens on the agent's URL any more)
    with socket_closed_port() as dead_port:
        agent.client.url = f"http://127.0.0.1:{dead_port}/api/v1/ingest"
        write(log, 100, 150)
        agent._cycle()
        os.rename(log, tmp_path / "app.log.1")  # rename rotation meanwhile
        write(log, 150, 180, "w")
        agent._cycle()
        with open(log, "rb") as src, open(tmp_path / "app.log.copy", "wb") as dst:
            dst.write(src.read())
        os.truncate(log, 0)  # and a copytruncate, with the copy unwatched
        write(log, 180, 200)
        agent._cycle()
        assert agent._dropped_batches == 3
    agent.client.url = console.url + "/api/v1/ingest"
    agent._cycle()
    write(log, 200, 210)
    agent._cycle()
    got = seqs(all_logs(console, console.api_token("viewer"), host=host))
    # 150..179 were read before the copytruncate but never acknowledged; after the
    # truncation the file holds 180.. only, so the unsent part of the old content is the
    # one thing a copytruncate can lose while the console is away (docs/logs.md).
    assert got == list(range(0, 150)) + list(range(180, 210))
    assert len(set(got)) == len(got)


class socket_closed_port:
    """A loopback port with no listener: bind, note the port, close."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        return None


def test_numbered_lines_through_rename_and_copytruncate(console, tmp_path):
    host = "num-" + uuid.uuid4().hex[:8]
    log = tmp_path / "svc.log"
    log.write_text("")
    agent, tail = make_agent(console, tmp_path, host, {"paths": [str(tmp_path / "svc.log*")],
                                                       "max_lines_per_batch": 700})
    agent._cycle()
    n = 0
    for round_ in range(3):
        write(log, n, n + 2000)
        n += 2000
        agent._cycle()  # 700 per batch: the backlog goes out in extra log batches
        write(log, n, n + 10)
        n += 10
        if round_ % 2 == 0:
            os.rename(log, tmp_path / f"svc.log.{round_}")
            write(log, n, n + 5, "w")
        else:
            shutil.copyfile(log, tmp_path / f"svc.log.{round_}")
            os.truncate(log, 0)
            write(log, n, n + 5)
        n += 5
        agent._cycle()
    agent._cycle()
    got = seqs(all_logs(console, console.api_token("viewer"), host=host))
    assert got == list(range(n))


def test_real_debian_logs_with_the_agent_process(console, tmp_path):
    """``fleetdeck-agent --once`` tails Debian's own /var/log files from the start."""
    sources = [p for p in ("/var/log/dpkg.log", "/var/log/alternatives.log")
               if os.path.isfile(p) and os.path.getsize(p) > 0]
    if not sources:
        need("debian-logs", "no non-empty /var/log/dpkg.log or /var/log/alternatives.log")
    host = "deb-" + uuid.uuid4().hex[:8]
    copies = []
    for src in sources:  # a stable snapshot: the originals may grow while the test runs
        dst = tmp_path / Path(src).name
        shutil.copyfile(src, dst)
        copies.append(dst)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(json.dumps({"agent": {"collectors": ["host"], "state_dir": str(tmp_path / "st"), "logs": {
        "paths": [str(tmp_path / "*.log")], "from_start": True, "max_lines_per_batch": 100000}}}))
    env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token(host), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "agents", "--config", str(cfg), "--console", console.url,
                           "--host", host, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    # dpkg.log lines start with their local time ("2026-11-29 05:51:02 status ..."), which
    # their records carry (docs/logs.md, "Time of a line"): those older than the console's
    # log retention are refused as log_too_old; alternatives.log's lines have no leading time.
    cutoff = time.time() - console.config.console.log_retention_days * 86400

    def kept(line: str) -> bool:
        try:
            return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").timestamp() >= cutoff
        except ValueError:
            return True

    expected = {str(p): [x for x in p.read_text("utf-8", "replace").splitlines() if kept(x)] for p in copies}
    total = sum(len(p.read_bytes().splitlines()) for p in copies)
    assert answer["accepted_logs"] == sum(map(len, expected.values()))
    assert answer.get("rejected_logs", 0) == total - answer["accepted_logs"]
    viewer = console.api_token("viewer")
    stored = all_logs(console, viewer, host=host)
    for copy in copies:
        lines = expected[str(copy)]
        assert [r["line"] for r in stored if r["source"] == str(copy)] == lines
    # search a word from a real line
    word = re.findall(r"[A-Za-z]{6,}", lines[-1])[0]
    found = all_logs(console, viewer, host=host, q=word)
    assert found and all(word.lower() in r["line"].lower() for r in found)
    state = json.loads((tmp_path / "st" / "log-positions.json").read_text())
    assert {f["path"]: f["offset"] for f in state["files"]} == {str(p): p.stat().st_size for p in copies}


def test_postgresql_server_log_is_tailed_and_searchable(console, tmp_path, postgres_url):
    """The PostgreSQL daemon of the test suite writes an ERROR line; the agent tails its
    server log and the line is found by level and word."""
    from tests.pg import server_log_path

    log_file, how = server_log_path(postgres_url)
    if log_file is None or not os.access(log_file, os.R_OK):
        need("postgres", f"cannot read the server's log ({log_file or 'unknown'}, from {how})")
    pg_log = Path(log_file)
    host = "pg-" + uuid.uuid4().hex[:8]
    agent, tail = make_agent(console, tmp_path, host, {"paths": [str(pg_log)],
                                                       "multiline_start": r"^\d{4}-\d\d-\d\d "})
    agent._cycle()  # from the end: older lines are not sent
    marker = "missing_" + uuid.uuid4().hex[:12]
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ProgrammingError

    engine = create_engine(postgres_url)
    with pytest.raises(ProgrammingError), engine.connect() as conn:
        conn.execute(text(f"SELECT * FROM {marker}"))
    engine.dispose()
    tail.options.multiline_max_wait = 0  # flush the last record now
    agent._cycle()
    found = all_logs(console, console.api_token("viewer"), host=host, q=marker, level="error")
    assert len(found) == 1
    assert f'relation "{marker}" does not exist' in found[0]["line"]
    assert found[0]["source"] == str(pg_log) and found[0]["labels"]["level"] == "error"
    # the STATEMENT line PostgreSQL writes after the error is its own record
    statements = all_logs(console, console.api_token("viewer"), host=host, q=f"STATEMENT {marker}")
    assert [r["line"].split("STATEMENT:")[1].strip() for r in statements] == [f"SELECT * FROM {marker}"]


def lines_since(path: Path, offset: int, word: str) -> list[str]:
    """The complete lines (a half-written last one is left out, as the agent leaves it) a
    daemon wrote to ``path`` after byte ``offset`` that contain ``word``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    complete = data[:data.rfind(b"\n") + 1].decode("utf-8", "replace")
    return [x for x in complete.splitlines() if word in x]


def test_sshd_log_is_tailed_and_searchable(console, tmp_path, sshd):
    """The suite's real sshd logs a refused login; the agent tails that log from its end
    and the line is found by the user name tried."""
    import paramiko

    host = "ssh-" + uuid.uuid4().hex[:8]
    agent, tail = make_agent(console, tmp_path, host, {"paths": [str(sshd.log_path)]})
    agent._cycle()  # from the end: earlier lines are not sent
    before = sshd.log_path.stat().st_size
    intruder = "nobody" + uuid.uuid4().hex[:10]
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))  # the server's pinned key: the login, not the host, is refused
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(sshd.host, sshd.port, username=intruder, pkey=paramiko.ECDSAKey.generate(),
                       allow_agent=False, look_for_keys=False, timeout=10)
    client.close()

    expected = wait_for(lambda: lines_since(sshd.log_path, before, intruder), what="sshd to log the login")
    agent._cycle()
    found = all_logs(console, console.api_token("viewer"), host=host, q=intruder)
    # sshd may log more about the closed connection meanwhile: those come after
    assert [r["line"] for r in found][:len(expected)] == expected
    assert any(f"Invalid user {intruder}" in r["line"] for r in found)
    assert all(r["source"] == str(sshd.log_path) for r in found)


def dockerd_log() -> Path | None:
    """The file the running dockerd writes its log to (its stderr, as .ci/run starts it),
    found through /proc; None when it logs elsewhere (e.g. to journald)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "dockerd":
                continue
            target = Path(os.readlink(proc / "fd" / "2"))
        except OSError:
            continue
        if target.is_file():
            return target
    return None


def test_dockerd_log_is_tailed_with_its_levels(console, tmp_path, docker_client, docker_images):
    """dockerd's own logfmt lines about a container that ran and exited are found by the
    container's id, each with the level its ``level=`` field names."""
    log = dockerd_log()
    if log is None:
        need("docker", "the running dockerd does not write its log to a file here")
    host = "dkr-" + uuid.uuid4().hex[:8]
    agent, tail = make_agent(console, tmp_path, host, {"paths": [str(log)]})
    agent._cycle()
    before = log.stat().st_size
    container = docker_client.containers.run(f"{docker_images}:crash", detach=True, labels=run_labels(),
                                             name="fd-logtest-" + uuid.uuid4().hex[:8])
    try:
        container.wait(timeout=60)
    finally:
        container.remove(force=True)
    expected = wait_for(lambda: lines_since(log, before, container.id), what="dockerd to log the container's end")
    agent._cycle()
    found = all_logs(console, console.api_token("viewer"), host=host, q=container.id)
    # dockerd may still be logging the shim's clean-up meanwhile: those lines come after
    assert [r["line"] for r in found][:len(expected)] == expected
    levels = {"info": "info", "warning": "warn", "error": "error", "debug": "debug"}
    for record in found:
        field = re.search(r'\blevel=(\w+)', record["line"])
        assert field, f"a dockerd line without level=: {record['line']}"
        assert record["labels"].get("level") == levels[field.group(1)], record["line"]
