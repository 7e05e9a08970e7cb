"""Log records carry the time their line says: lines written by real sshd and dockerd
processes a second apart, tailed by the real agent, pushed to a real console and read
back through ``GET /api/v1/logs``. Expected times come from the lines, parsed here with
python-dateutil and ``time.strptime`` (not the agent's parser), and from the wall clock
around the processes."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from dateutil.parser import isoparse

from tests.conftest import need
from tests.harness import wait_for
from tests.integration.test_log_agent import all_logs, make_agent


def _by_line(console, host: str) -> dict[str, int]:
    return {r["line"]: r["ts"] for r in all_logs(console, console.api_token("viewer"), host=host)}


def test_dockerd_lines_carry_their_own_time(console, tmp_path):
    """Two dockerd processes started a second apart each log ``Starting up`` (then fail
    on a listener in a folder that does not exist, before touching anything shared);
    the two records carry the ``time=`` of their line, not one read time. Each runs in a
    private mount namespace: the bind mount dockerd makes of its data root goes with it."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("unshare") is None:
        need("docker", "no dockerd or unshare binary")
    log = tmp_path / "dockerd.log"
    log.write_text("")
    host = "dkt-" + uuid.uuid4().hex[:8]
    agent, _ = make_agent(console, tmp_path, host, {"paths": [str(log)]})
    agent._cycle()
    started = time.time()
    for i in range(2):
        root = tmp_path / f"d{i}"
        with open(log, "ab") as out:
            subprocess.run(["unshare", "--mount", "--propagation", "private", dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                            "--pidfile", str(root / "pid"), "--host", f"unix://{root}/missing/d.sock",
                            "--iptables=false", "--bridge=none"],
                           stdout=out, stderr=out, stdin=subprocess.DEVNULL, timeout=60, check=False)
        time.sleep(1.2)
    ended = time.time()
    agent._cycle()
    records = {line: ts for line, ts in _by_line(console, host).items() if 'msg="Starting up"' in line}
    assert len(records) == 2, records
    for line, ts in records.items():
        written = isoparse(line.split('time="')[1].split('"')[0]).timestamp()
        assert abs(ts / 1000 - written) < 0.001, line
        assert started - 1 <= ts / 1000 <= ended, line
    assert max(records.values()) - min(records.values()) >= 1000  # not the one time of the batch


class _SyslogSocket:
    """A datagram socket where ``syslog(3)`` of a process in a private mount namespace
    sends (bound over that namespace's ``/dev/log``): each datagram, as sent, becomes a
    line of ``path``, as a syslog daemon's file."""

    def __init__(self, workdir, path) -> None:
        self.address = str(workdir / "devlog.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.path = path

    def drain(self) -> int:
        n = 0
        with open(self.path, "ab") as out:
            while True:
                try:
                    data = self.sock.recv(65536)
                except (TimeoutError, socket.timeout):
                    return n
                if data:
                    out.write(data.rstrip(b"\n") + b"\n")
                    n += 1


def test_sshd_syslog_lines_carry_their_own_time(console, tmp_path):
    """sshd (tests/sshd.py, logging through syslog(3) to a private /dev/log) writes RFC 3164
    lines as glibc sends them (``<38>Nov 29 12:00:00 sshd[N]: ...``): its start, and a
    refused login a second later, keep their own seconds."""
    import paramiko

    from tests.sshd import SshServer, sshd_unavailable

    reason = sshd_unavailable() or (None if shutil.which("unshare") else "no unshare binary")
    if reason:
        need("ssh", reason)
    if os.geteuid() != 0:
        need("ssh", "a private /dev/log needs root (mount namespace)")
    log = tmp_path / "syslog"
    log.write_text("")
    host = "sst-" + uuid.uuid4().hex[:8]
    agent, _ = make_agent(console, tmp_path, host, {"paths": [str(log)]})
    agent._cycle()
    syslog = _SyslogSocket(tmp_path, log)
    started = time.time()
    server = SshServer(tmp_path / "sshd", dev_log=Path(syslog.address))
    intruder = "nobody" + uuid.uuid4().hex[:10]
    with server:
        wait_for(lambda: syslog.drain() or "Server listening" in log.read_text(), what="sshd's first syslog line")
        time.sleep(1.2)
        client = paramiko.SSHClient()
        client.load_host_keys(str(server.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(server.host, server.port, username=intruder, pkey=paramiko.ECDSAKey.generate(),
                           allow_agent=False, look_for_keys=False, timeout=10)
        client.close()
        wait_for(lambda: syslog.drain() or intruder in log.read_text(), what="sshd to log the refused login")
    ended = time.time()
    agent._cycle()
    records = {line: ts for line, ts in _by_line(console, host).items() if "sshd[" in line}
    wanted = [next(line for line in records if "Server listening" in line),
              next(line for line in records if f"Invalid user {intruder}" in line)]
    year = datetime.now().year
    for line in wanted:
        stamp = line.split(">", 1)[1][:15]  # "Nov 29 12:00:00", local time
        written = time.mktime(time.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S"))
        assert records[line] == int(written * 1000), line
        assert int(started) - 1 <= records[line] / 1000 <= ended, line
    assert records[wanted[1]] - records[wanted[0]] >= 1000
