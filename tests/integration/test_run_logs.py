"""``fleetdeck run`` has logs on its first start: the console writes its own log to
``<data_dir>/console.log`` and its local agent sends that file (from its start), the
common system logs where they exist and the journal where there is one (a real
journald in a private mount namespace). Real processes:
the ``fleetdeck`` console script, its agent child, and the logs read back over HTTP."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path

import yaml

from tests.harness import CookieSession, wait_for
from tests.integration.procs import child_env, free_port
from tests.integration.test_log_journal import journald  # noqa: F401 (a fixture)

SCRIPT = Path(sys.executable).parent / "fleetdeck"
PASSWORD = "first-run-password-1"


def test_first_start_shows_the_consoles_own_log_lines(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    out = tmp_path / "run.out"
    env = child_env(FLEETDECK_DATA_DIR=str(data), FLEETDECK_LISTEN=f"127.0.0.1:{port}",
                    FLEETDECK_ADMIN_PASSWORD=PASSWORD)
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(SCRIPT), "run"], cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Local agent for host" in out.read_text(), 60, "fleetdeck run to start its agent", proc=proc)
        host = out.read_text().split("Local agent for host '")[1].split("'")[0]
        console_log = (data / "console.log").resolve()
        # The settings the agent got: the console's log from its start, the system logs, the journal if any.
        settings = yaml.safe_load((data / "agent" / "agent.yaml").read_text())
        assert settings["logs"]["paths"] == [str(console_log), "/var/log/syslog", "/var/log/auth.log"]
        assert settings["logs"]["from_start"] == [str(console_log)]
        assert (data / "agent" / "agent.yaml").stat().st_mode & 0o777 == 0o600
        session = CookieSession(f"http://127.0.0.1:{port}")
        assert session.login("admin", PASSWORD).status == 302

        def lines() -> list[dict] | None:
            resp = session.request("GET", "/api/v1/logs?" + urllib.parse.urlencode(
                {"host": host, "source": str(console_log), "limit": 1000}))
            assert resp.status == 200, resp.body
            found = json.loads(resp.body)["logs"]
            return found if any("local agent for host" in r["line"] for r in found) else None

        found = wait_for(lines, 60, "the console's own log lines at the console")
    finally:
        proc.terminate()
        proc.wait(30)
    listening = next(r for r in found if "listening on" in r["line"])
    # Each line keeps the time it was written (Python logging's "2026-11-29 12:00:00,123", local time).
    stamp = listening["line"][:23]
    written = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert listening["ts"] == int(round(written * 1000)), (stamp, listening["ts"])
    assert listening["labels"].get("level") == "info"
    assert time.time() - 120 < listening["ts"] / 1000 <= time.time()


def test_a_logs_section_in_the_config_file_is_what_the_local_agent_reads(tmp_path):
    data = tmp_path / "data"
    app_log = tmp_path / "app.log"
    app_log.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"console": {"data_dir": str(data), "listen": f"127.0.0.1:{free_port()}"},
                                      "agent": {"logs": {"paths": [str(app_log)]}}}))
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(SCRIPT), "run", "--config", str(config)], cwd=tmp_path, env=child_env(),
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Local agent for host" in out.read_text(), 60, "fleetdeck run to start its agent", proc=proc)
        cmdline = Path(f"/proc/{out.read_text().split('(pid ')[1].split(')')[0]}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--config") + 1].decode() == str(config)
        assert not (data / "agent" / "agent.yaml").exists()
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_shipped_config_file_keeps_the_first_start_sources(tmp_path):
    """config.yaml documents every log option with an empty `paths`: run with it, the local
    agent still gets the default sources, with the file's other log options."""
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "config.yaml").read_text())
    data = tmp_path / "data"
    shipped["console"].update(data_dir=str(data), listen=f"127.0.0.1:{free_port()}")
    shipped["agent"]["logs"]["exclude"] = ["*.gz", "*.old"]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(shipped))
    out = tmp_path / "run.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(SCRIPT), "run", "--config", str(config)], cwd=tmp_path,
                                env=child_env(FLEETDECK_ADMIN_PASSWORD=PASSWORD), stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Local agent for host" in out.read_text(), 60, "fleetdeck run to start its agent", proc=proc)
        logs = yaml.safe_load((data / "agent" / "agent.yaml").read_text())["logs"]
        assert logs["paths"][0] == str((data / "console.log").resolve())
        assert logs["exclude"] == ["*.gz", "*.old"]
        pid = int(out.read_text().split("(pid ")[1].split(")")[0])
        time.sleep(4)  # an agent refusing its settings exits within a second
        assert Path(f"/proc/{pid}").exists() and "Local agent exited" not in out.read_text(), out.read_text()
    finally:
        proc.terminate()
        proc.wait(30)


def test_first_start_follows_the_systemd_journal_where_there_is_one(tmp_path, journald):  # noqa: F811
    """``fleetdeck run`` on a machine with a journal: a real systemd-journald in a private
    mount namespace (tests/integration/test_log_journal.py) is that machine's journal
    (/run/log/journal), ``fleetdeck run`` runs in the same namespace, and an entry
    written there after the start reaches the console from the local agent."""
    _, send, journald_pid = journald
    data = tmp_path / "data"
    port = free_port()
    out = tmp_path / "run.out"
    env = child_env(FLEETDECK_DATA_DIR=str(data), FLEETDECK_LISTEN=f"127.0.0.1:{port}",
                    FLEETDECK_ADMIN_PASSWORD=PASSWORD)
    namespace = f"--mount=/proc/{journald_pid}/ns/mnt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(["nsenter", namespace, str(SCRIPT), "run"], cwd=tmp_path, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Local agent for host" in out.read_text(), 60, "fleetdeck run to start its agent", proc=proc)
        host = out.read_text().split("Local agent for host '")[1].split("'")[0]
        assert yaml.safe_load((data / "agent" / "agent.yaml").read_text())["logs"]["journal"] is True
        session = CookieSession(f"http://127.0.0.1:{port}")
        assert session.login("admin", PASSWORD).status == 302
        marker = "first-start-" + uuid.uuid4().hex[:10]

        def arrived() -> list[dict] | None:
            send(f"journal entry {marker}", "warning")  # again until one arrives: journalctl starts from now
            resp = session.request("GET", "/api/v1/logs?" + urllib.parse.urlencode({"host": host, "q": marker}))
            assert resp.status == 200, resp.body
            return json.loads(resp.body)["logs"] or None

        found = wait_for(arrived, 60, "the journal entry at the console", interval=2.0)
    finally:
        proc.terminate()
        proc.wait(30)
    assert found[0]["source"] == "journal:fd-test" and found[0]["line"] == f"journal entry {marker}"
    assert found[0]["labels"].get("level") == "warn"
