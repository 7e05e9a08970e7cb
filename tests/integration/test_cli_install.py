"""How ``fleetdeck`` finds its install, as real processes: admin commands never create a
database (they say where they looked and that ``fleetdeck init`` creates one), ``init``
does, ``-v`` names the database, the first-run admin password appears only once the
listen socket is bound, and the local agent of ``fleetdeck run`` keeps its state under
the data directory."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.harness import CookieSession, wait_for
from tests.integration.procs import REPO, child_env, free_port

ADMIN_COMMANDS = [
    ["user", "list"],
    ["user", "create", "bob", "--role", "viewer"],
    ["token", "create", "--agent", "web-1"],
    ["token", "list"],
    ["audit"],
    ["audit", "verify"],
    ["secrets", "list"],
    ["db", "upgrade"],
    ["hosts", "known"],
]


def fleetdeck(*args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=timeout, input="pw-from-stdin-1\n")


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("command", ADMIN_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_admin_commands_in_an_empty_directory_create_nothing(tmp_path, command):
    result = fleetdeck(*command, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "fleetdeck init" in result.stderr
    assert "$FLEETDECK_CONFIG" in result.stderr and "./var" in result.stderr
    assert result.stdout == ""
    assert tree(tmp_path) == []


def test_a_data_dir_without_a_database_is_not_created_either(tmp_path):
    data = tmp_path / "data"
    result = fleetdeck("token", "create", "--agent", "web-1", cwd=tmp_path, FLEETDECK_DATA_DIR=str(data))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"no Fleetdeck database at {data.resolve() / 'fleetdeck.db'}" in result.stderr
    assert "$FLEETDECK_DATA_DIR" in result.stderr and "fleetdeck init" in result.stderr
    assert result.stdout == "" and tree(tmp_path) == []


def test_init_creates_then_admin_commands_use_it_and_say_which(tmp_path):
    data = tmp_path / "data"
    first = fleetdeck("init", cwd=tmp_path, FLEETDECK_DATA_DIR=str(data))
    assert first.returncode == 0, first.stderr
    assert f"created the database: {data.resolve() / 'fleetdeck.db'}" in first.stdout
    password = first.stdout.split("The password of user 'admin':")[1].split()[0]
    assert len(password) >= 12
    again = fleetdeck("init", cwd=tmp_path, FLEETDECK_DATA_DIR=str(data))
    assert again.returncode == 0 and "already initialised" in again.stdout and "password" not in again.stdout
    listed = fleetdeck("user", "list", "-v", cwd=tmp_path, FLEETDECK_DATA_DIR=str(data))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == ["USER", "ROLE", "APPS"] and "admin" in listed.stdout
    assert f"using the database {data.resolve() / 'fleetdeck.db'} (found through $FLEETDECK_DATA_DIR)" in listed.stderr
    quiet = fleetdeck("user", "list", cwd=tmp_path, FLEETDECK_DATA_DIR=str(data))
    assert quiet.returncode == 0 and "using the database" not in quiet.stderr
    # ./var is used only where it exists: init here creates it, then commands run here find it.
    work = tmp_path / "work"
    work.mkdir()
    assert fleetdeck("init", cwd=work).returncode == 0
    token = fleetdeck("token", "create", "--agent", "web-1", "-v", cwd=work)
    assert token.returncode == 0, token.stderr
    assert f"(found through ./var ({(work / 'var').resolve()}))" in token.stderr
    assert len(token.stdout.strip()) > 20


def _read_until(proc: subprocess.Popen, needle: str, lines: list[str], timeout: float = 60) -> None:
    """Collect ``proc``'s output lines into ``lines`` until one contains ``needle``."""
    done = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            if needle in line:
                done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    assert done.wait(timeout) and any(needle in line for line in lines), "".join(lines)


def test_first_run_prints_the_admin_password_only_once_listening(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        failed = fleetdeck("run", "--no-agent", "--listen", f"127.0.0.1:{port}", cwd=tmp_path,
                           FLEETDECK_DATA_DIR=str(data))
    assert failed.returncode == 2, (failed.stdout, failed.stderr)
    assert "cannot listen on" in failed.stderr
    assert "password" not in (failed.stdout + failed.stderr).lower()
    proc = subprocess.Popen([sys.executable, "-u", "-m", "console.cli", "run", "--no-agent",
                             "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                            env=child_env(FLEETDECK_DATA_DIR=str(data)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        _read_until(proc, "Dashboard:", lines)
        out = "".join(lines)
        assert "The password of user 'admin':" in out, out
        password = out.split("The password of user 'admin':")[1].split()[0]
        assert out.index("The password of user 'admin':") < out.index("Dashboard:")
        session = CookieSession(f"http://127.0.0.1:{port}")
        assert session.login("admin", password).status == 302
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_the_local_agent_keeps_its_state_under_the_data_directory(tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    work.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-u", "-m", "console.cli", "run", "--listen", f"127.0.0.1:{port}"],
                            cwd=work, env=child_env(FLEETDECK_DATA_DIR=str(data)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        _read_until(proc, "Local agent for host", lines)
        wait_for(lambda: (data / "agent" / "spool").is_dir(), 60, "the agent's spool under the data directory")
        assert not (work / "var").exists(), tree(work)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert tree(work) == []


def test_agent_help_lists_enrol():
    result = subprocess.run([sys.executable, "-m", "agents", "--help"], cwd=REPO, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fleetdeck-agent enrol --console URL --enrol-token T" in result.stdout
    assert "fleetdeck-agent enrol --help" in result.stdout


def test_readme_says_remote_agents_need_the_console_beyond_loopback():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Installing an agent on another host", 1)[1].split("\n## ", 1)[0]
    assert "FLEETDECK_LISTEN=0.0.0.0:8700" in section and "127.0.0.1" in section
