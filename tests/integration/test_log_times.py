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


def _sshd_with_private_dev_log(workdir, syslog: _SyslogSocket, port: int) -> subprocess.Popen:
    """sshd (``-D`` without ``-e``: it logs through syslog(3)) in its own mount namespace,
    whose /dev is an overlay of the real one with ``/dev/log`` bound to the test's socket:
    nothing outside the namespace sees the change."""
    key = workdir / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   stdin=subprocess.DEVNULL)
    config = workdir / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nUsePAM no\nLogLevel VERBOSE\n"
                      f"PidFile {workdir / 'sshd.pid'}\nPasswordAuthentication no\n")
    for name in ("upper", "work"):
        (workdir / name).mkdir()
    script = "\n".join([
        "set -e",
        f"mount -t overlay overlay -o lowerdir=/dev,upperdir={workdir / 'upper'},workdir={workdir / 'work'} /dev",
        "touch /dev/log",
        f"mount --bind {syslog.address} /dev/log",
        f"exec /usr/sbin/sshd -D -f {config}",
    ])
    return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sshd_syslog_lines_carry_their_own_time(console, tmp_path):
    """sshd's syslog lines (RFC 3164 as glibc sends them: ``<38>Nov 29 12:00:00 sshd[N]:``)
    of its start and of a connection a second later keep their own seconds."""
    from tests.sshd import free_port, sshd_unavailable

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
    port = free_port()
    started = time.time()
    proc = _sshd_with_private_dev_log(tmp_path, syslog, port)
    try:
        wait_for(lambda: syslog.drain() or "listening" in log.read_text(), what="sshd's first syslog line",
                 proc=proc)
        time.sleep(1.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        wait_for(lambda: syslog.drain() or "Connection" in log.read_text(), what="sshd to log the connection",
                 proc=proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    ended = time.time()
    if "Server listening" not in log.read_text():
        pytest.fail(f"sshd logged nothing through /dev/log: {err.decode(errors='replace')}")
    agent._cycle()
    records = {line: ts for line, ts in _by_line(console, host).items() if "sshd[" in line}
    wanted = [line for line in records if "Server listening" in line or "Connection from" in line]
    assert len(wanted) == 2, records
    year = datetime.now().year
    for line in wanted:
        stamp = line.split(">", 1)[1][:15]  # "Nov 29 12:00:00", local time
        written = time.mktime(time.strptime(f"{year} {stamp}", "%Y %b %d %H:%M:%S"))
        assert records[line] == int(written * 1000), line
        assert int(started) - 1 <= records[line] / 1000 <= ended, line
    assert abs(records[wanted[0]] - records[wanted[1]]) >= 1000
