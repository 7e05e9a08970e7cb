"""``fleetdeck run`` itself, as a user starts it: a process on a free port (``--listen
127.0.0.1:0``) with a data directory of its own; it prints the dashboard URL, answers
/healthz and /readyz there, its local agent's samples arrive, and SIGTERM stops the
console and the agent with exit status 0."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from console.cli.common import local_host_name
from tests.harness import CookieSession, http, wait_for
from tests.integration.procs import child_env


def test_run_prints_its_url_serves_receives_its_agent_and_stops_cleanly_on_sigterm(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-u", "-m", "console.cli", "run", "--listen", "127.0.0.1:0"],
                            cwd=tmp_path, env=child_env(FLEETDECK_DATA_DIR=str(data)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        dashboard = wait_for(lambda: next((m for line in list(lines)
                                           if (m := re.match(r"Dashboard: (http://127\.0\.0\.1:(\d+))/$", line.strip()))),
                                          None), 90, "the dashboard URL")
        url, port = dashboard.group(1), int(dashboard.group(2))
        assert port != 0
        assert http("GET", url + "/healthz").json() == {"status": "ok"}
        ready = http("GET", url + "/readyz")
        assert ready.status == 200 and ready.json()["database"] == "sqlite"
        out = "".join(lines)
        password = out.split("The password of user 'admin':")[1].split()[0]
        pid = int(re.search(r"Local agent for host '.+' started \(pid (\d+)\)", out).group(1))

        session = CookieSession(url)
        assert session.login("admin", password).status == 302
        host = local_host_name()

        def arrived() -> dict | None:
            hosts = session.request("GET", "/api/v1/hosts").json()
            mine = [h for h in hosts if h["host"] == host]
            return mine[0] if mine and mine[0]["summary"]["cpu_ratio"] is not None else None

        seen = wait_for(arrived, 90, f"samples of the local agent of {host!r}")
        assert seen["up"] is True and 0 <= seen["summary"]["cpu_ratio"] <= 1

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    reader.join(10)
    assert "Stopping…" in "".join(lines)
    deadline = time.monotonic() + 15  # the agent child was stopped with it
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"local agent {pid} still runs"
    assert http_refused(url)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def http_refused(url: str) -> bool:
    try:
        http("GET", url + "/healthz", timeout=5)
    except OSError:
        return True
    return False

