"""The agent reads the systemd journal: a real systemd-journald, started in a private
mount namespace whose /run is its own (so the machine's journal and sockets are left
alone) and whose journal directory is a per-test folder, receives entries from
``systemd-cat``; the real agent follows that folder through ``journalctl --directory``
and pushes to a real console; entries come back through ``GET /api/v1/logs`` with the
journal's time, level and identifier, once each across an agent restart."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.test_log_agent import all_logs, make_agent

JOURNALD = Path("/lib/systemd/systemd-journald")


@pytest.fixture()
def journald(tmp_path):
    missing = [tool for tool in ("unshare", "nsenter", "systemd-cat", "journalctl") if shutil.which(tool) is None]
    if missing or not JOURNALD.exists():
        need("systemd", f"missing {', '.join(missing) or JOURNALD}")
    folder = tmp_path / "journal"
    folder.mkdir()
    script = "\n".join(["set -e", "mount -t tmpfs tmpfs /run", "mkdir -p /run/systemd /run/log/journal",
                        f"mount --bind {folder} /run/log/journal", f"exec {JOURNALD}"])
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"journald exited: {proc.stderr.read().decode(errors='replace')}")
        return any(folder.rglob("system.journal"))

    try:
        wait_for(ready, 15, "journald to create its journal")
        time.sleep(0.3)  # its sockets are bound once the file exists

        def send(message: str, priority: str = "info", tag: str = "fd-test") -> None:
            subprocess.run(["nsenter", f"--mount=/proc/{proc.pid}/ns/mnt", "systemd-cat", "-t", tag,
                            "-p", priority, "echo", message], check=True, timeout=30)

        yield folder, send, proc.pid  # the pid: to run other processes in its mount namespace
    finally:
        proc.terminate()
        proc.wait(10)


def journal_entries(folder: Path, word: str) -> list[dict]:
    out = subprocess.run(["journalctl", f"--directory={folder}", "-o", "json", "--no-pager"],
                         capture_output=True, text=True, timeout=30)
    return [e for e in map(json.loads, out.stdout.splitlines()) if word in str(e.get("MESSAGE"))]


def test_journal_entries_arrive_with_their_time_level_and_identifier(console, tmp_path, journald):
    folder, send, _ = journald
    host = "jrn-" + uuid.uuid4().hex[:8]
    logs = {"journal": True, "journal_directory": str(folder)}
    agent, tail = make_agent(console, tmp_path, host, logs)
    viewer = console.api_token("viewer")
    marker = uuid.uuid4().hex[:10]
    try:
        agent._cycle()  # journalctl starts, from now
        time.sleep(1.0)
        send(f"first {marker}", "warning")
        time.sleep(1.1)
        send(f"second {marker}", "err")

        def arrived(n: int):
            agent._cycle()
            found = all_logs(console, viewer, host=host, q=marker)
            return found if len(found) >= n else None

        found = wait_for(lambda: arrived(2), 30, "the journal entries at the console")
    finally:
        tail.close()
    entries = {e["MESSAGE"]: e for e in journal_entries(folder, marker)}
    assert [r["line"] for r in found] == [f"first {marker}", f"second {marker}"]
    for record, level in zip(found, ("warn", "error")):
        assert record["ts"] == int(entries[record["line"]]["__REALTIME_TIMESTAMP"]) // 1000
        assert record["source"] == "journal:fd-test"
        assert record["labels"]["level"] == level
    assert found[1]["ts"] - found[0]["ts"] >= 1000

    # Stopped, an entry is written; the restarted agent continues after the saved cursor.
    send(f"third {marker}")
    again, tail = make_agent(console, tmp_path, host, logs)

    def all_three():
        again._cycle()
        found = all_logs(console, viewer, host=host, q=marker)
        return found if len(found) >= 3 else None

    try:
        found = wait_for(all_three, 30, "the entry written while stopped")
        time.sleep(0.5)
        again._cycle()  # nothing more: the first two are not read again
        found = all_logs(console, viewer, host=host, q=marker)
    finally:
        tail.close()
    assert [r["line"] for r in found] == [f"first {marker}", f"second {marker}", f"third {marker}"]


def test_journal_settings_are_validated():
    from agents.config import ConfigError, load_agent_config

    with pytest.raises(ConfigError, match=r"logs.journal_directory .* must be an absolute path"):
        load_agent_config(None, {"logs": {"journal": True, "journal_directory": "rel/dir"}}, environ={})
    with pytest.raises(ConfigError, match=r"logs.journal_directory .* is set but logs.journal is false"):
        load_agent_config(None, {"logs": {"journal_directory": "/var/log/journal"}}, environ={})
    with pytest.raises(ConfigError, match=r"logs.journal .* must be true or false"):
        load_agent_config(None, {"logs": {"journal": "yes"}}, environ={})
    with pytest.raises(ConfigError, match=r"logs.from_start .* list of absolute paths"):
        load_agent_config(None, {"logs": {"from_start": ["relative.log"]}}, environ={})
