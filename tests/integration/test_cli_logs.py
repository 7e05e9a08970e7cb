"""``fleetdeck logs`` as a real process against a real console."""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from console.cli.common import parse_since, visible, CliError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seeded(console):
    host = "cli-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    now = int(time.time() * 1000)
    lines = [
        {"ts": now - 7200_000, "source": "/var/log/old.log", "line": "two hours old", "labels": {}},
        {"ts": now - 1000, "source": "/var/log/app.log", "line": "plain request done", "labels": {}},
        {"ts": now - 500, "source": "/var/log/app.log",
         "line": "evil \x1b[2J\x1b]0;pwned\x07 title\r overwrite \u202eevil", "labels": {"level": "error"}},
    ]
    assert console.push(host, token, [], lines)[0] == 200
    env = dict(os.environ, FLEETDECK_URL=console.url, FLEETDECK_TOKEN=console.api_token("viewer"),
               PYTHONPATH=str(REPO))
    return console, host, token, env


def run_cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", "logs", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_lines_are_printed_with_control_characters_visible(seeded):
    console, host, _, env = seeded
    proc = run_cli(env, "--host", host)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == 3
    assert out[0].endswith(f"{host} /var/log/old.log -     two hours old")
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout and "\u202e" not in proc.stdout
    assert out[2].endswith("ERROR evil \\x1b[2J\\x1b]0;pwned\\x07 title\\r overwrite \\u202eevil")


def test_filters_grep_since_and_json(seeded):
    console, host, _, env = seeded
    proc = run_cli(env, "--host", host, "--grep", "request", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["line"] for r in records] == ["plain request done"]
    proc = run_cli(env, "--host", host, "--since", "1h", "--json")
    assert [json.loads(x)["line"] for x in proc.stdout.splitlines()][0] == "plain request done"
    assert "\\u001b" in proc.stdout and "\x1b" not in proc.stdout
    proc = run_cli(env, "--host", host, "--since", "yesterday")
    assert proc.returncode == 2 and "--since" in proc.stderr


def test_follow_prints_new_lines(seeded):
    # A host of its own: the lines it adds would otherwise join those other tests list.
    console, _, _, env = seeded
    host = "follow-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    proc = subprocess.Popen([sys.executable, "-m", "console.cli", "logs", "--host", host, "--follow",
                             "--poll", "0.2", "--grep", "followme"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        now = int(time.time() * 1000)
        assert console.push(host, token, [], [
            {"ts": now, "source": "/var/log/app.log", "line": f"followme {i}", "labels": {}} for i in range(3)])[0] == 200
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
        got = [lines.get(timeout=20).rstrip("\n") for _ in range(3)]
        assert [g.rsplit("   ", 1)[-1].strip() for g in got] == ["followme 0", "followme 1", "followme 2"]
        assert all(g.split(" ")[1:3] == [host, "/var/log/app.log"] for g in got)
    finally:
        proc.terminate()
        proc.wait(10)


def test_follow_after_limit_prints_only_new_lines_despite_a_clock_ahead(console):
    """``--limit 1 --follow`` shows the newest line, then only lines that arrive later:
    not the older lines --limit left out, and not stuck behind a line stamped minutes
    ahead (within the console's 600 s grace, so stored as stamped)."""
    host = "fol-" + uuid.uuid4().hex[:8]
    token = console.agent_token(host)
    now = int(time.time() * 1000)
    assert console.push(host, token, [], [
        {"ts": now - 5000 + i, "source": "/var/log/app.log", "line": f"older {i}", "labels": {}}
        for i in range(50)])[0] == 200
    env = dict(os.environ, FLEETDECK_URL=console.url, FLEETDECK_TOKEN=console.api_token("viewer"),
               PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "console.cli", "logs", "--host", host, "--follow",
                             "--limit", "1", "--poll", "0.2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip("\n").rsplit("   ", 1)[-1].strip()) for x in proc.stdout],
                     daemon=True).start()
    try:
        assert lines.get(timeout=20) == "older 49"
        ahead = int(time.time() * 1000) + 300_000
        assert console.push(host, token, [], [{"ts": ahead, "source": "/var/log/app.log", "line": "skewed",
                                               "labels": {}}])[0] == 200
        assert lines.get(timeout=20) == "skewed"
        assert console.push(host, token, [], [{"ts": int(time.time() * 1000), "source": "/var/log/app.log",
                                               "line": "on time", "labels": {}}])[0] == 200
        assert lines.get(timeout=20) == "on time"
        time.sleep(1.0)  # a few more polls: nothing else comes
        assert lines.empty(), lines.get()
    finally:
        proc.terminate()
        proc.wait(10)


def test_limit_must_be_positive(seeded):
    _, host, _, env = seeded
    for bad in ("0", "-3", "x"):
        proc = run_cli(env, "--host", host, "--limit", bad)
        assert proc.returncode == 2 and "--limit" in proc.stderr, (bad, proc.stderr)


def test_since_and_visible_helpers():
    assert parse_since("90s") == 90 and parse_since("1.5h") == 5400 and parse_since("2d") == 172800
    with pytest.raises(CliError):
        parse_since("1 hour")
    assert visible("a\tb\nc") == "a\tb\n    c"
    assert visible("\x9b31m") == "\\x9b31m"
