"""nginx driven through an upstream file Fleetdeck owns and a graceful reload.

The file holds one block, rewritten whole on each change (a temporary file in the same
directory renamed over it, so nginx never reads half a file)::

    upstream UPSTREAM {
        server 127.0.0.1:8081;  # slot 0 web-12-1-ab12
    }

with a placeholder ``server 127.0.0.1:1 down;`` when no container serves (nginx refuses
an empty upstream). After each change the master process (``pid_file``) gets SIGHUP, or
``reload_command`` runs (e.g. ``nginx -s reload``), and Fleetdeck waits until the worker
processes that ran before have exited: nginx's graceful reload starts workers with the
new file and lets the old ones finish their requests
(https://nginx.org/en/docs/control.html#reconfiguration), so once they are gone no
request can reach a server taken out of the file. The master must run on the console's
machine (its processes are read from /proc).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

from console.deploy.balancers.base import BalancerError, Log, Server
from console.deploy.balancers.config import LoadBalancer
from console.i18n import tx

POLL_S = 0.02
_LINE_RE = re.compile(r"\s*server (\S+):(\d+);\s*# slot (\d+) (\S+)\s*")
PLACEHOLDER = "    server 127.0.0.1:1 down;  # no container serves\n"


class NginxBalancer:
    """See the module docstring; ``clock`` is injectable for tests."""

    def __init__(self, config: LoadBalancer, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock

    # -- the file --------------------------------------------------------------------------
    def servers(self) -> dict[int, Server]:
        """The servers in the upstream file now, by slot (none when there is no file)."""
        try:
            text = Path(self.config.upstream_file).read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BalancerError(f"cannot read {self.config.upstream_file}: {exc}") from None
        out = {}
        for line in text.splitlines():
            if m := _LINE_RE.fullmatch(line):
                host = m.group(1).strip("[]")
                out[int(m.group(3))] = Server(int(m.group(3)), host, int(m.group(2)), m.group(4))
        return out

    def _write(self, servers: dict[int, Server]) -> None:
        path = Path(self.config.upstream_file)
        lines = [f"    server {s.address};  # slot {s.slot} {s.container}\n" for _, s in sorted(servers.items())]
        text = (f"# Written by Fleetdeck at each deploy of this app: edits are lost.\n"
                f"upstream {self.config.upstream} {{\n{''.join(lines) or PLACEHOLDER}}}\n")
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644  # nginx reads it as root or as its worker user
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BalancerError(f"cannot write {path}: {exc}") from None

    # -- reload ----------------------------------------------------------------------------
    def _master(self) -> psutil.Process:
        try:
            pid = int(Path(self.config.pid_file).read_text().split()[0])
            return psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error) as exc:
            raise BalancerError(f"no nginx master process from {self.config.pid_file}: {exc}") from None

    def _reload(self, log: Log, why: str, drain: bool) -> None:
        """Reload; return once new workers run and, with ``drain``, the old ones have
        exited (up to ``drain_timeout`` seconds: then with a warning)."""
        wait = self.config.drain_timeout if drain else self.config.reload_timeout
        master = self._master()
        try:
            before = {p.pid for p in master.children()}
        except psutil.Error as exc:
            raise BalancerError(f"cannot list the nginx workers of pid {master.pid}: {exc}") from None
        started = self._clock()
        if self.config.reload_command:
            try:
                done = subprocess.run(list(self.config.reload_command), capture_output=True, text=True,
                                      timeout=self.config.reload_timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise BalancerError(f"nginx reload command failed: {exc}") from None
            if done.returncode != 0:
                raise BalancerError(f"nginx reload command exited with {done.returncode}: "
                                    f"{(done.stderr or done.stdout).strip()[:300]}")
        else:
            try:
                os.kill(master.pid, signal.SIGHUP)
            except OSError as exc:
                raise BalancerError(f"cannot signal the nginx master (pid {master.pid}): {exc}") from None
        new: set[int] = set()
        old = before
        while self._clock() - started < max(wait, self.config.reload_timeout):
            try:
                now = {p.pid for p in master.children()}
            except psutil.Error as exc:
                raise BalancerError(f"the nginx master (pid {master.pid}) went away: {exc}") from None
            new, old = now - before, now & before
            if new and not (drain and old):
                log(tx("nginx: {change}; reloaded in {took} s", change=why, took=f"{self._clock() - started:.2f}"),
                    upstream=self.config.upstream)
                return
            if not new and self._clock() - started >= self.config.reload_timeout:
                raise BalancerError(f"nginx did not reload within {self.config.reload_timeout:g} s (is the "
                                    f"configuration valid? see nginx -t and its error log)")
            time.sleep(POLL_S)
        log(tx("nginx: {change}; {count} old worker(s) still finishing requests after {wait} s", change=why,
               count=len(old), wait=f"{wait:g}"),
            level="warning", upstream=self.config.upstream)

    # -- the balancer protocol -------------------------------------------------------------
    def sync(self, servers: list[Server], slots: int, log: Log) -> None:
        wanted = {s.slot: s for s in servers}
        if wanted == self.servers() and Path(self.config.upstream_file).exists():
            return
        self._write(wanted)
        self._reload(log, tx("{upstream} set to {count} running container(s)", upstream=self.config.upstream,
                             count=len(wanted)), True)

    def enable(self, servers: list[Server], log: Log) -> None:
        current = self.servers()
        current.update({s.slot: s for s in servers})
        self._write(current)
        # Drained too: an old worker still runs the previous upstream, and the next step may
        # stop a container that only that upstream still names.
        self._reload(log, tx("added {servers} to {upstream}", upstream=self.config.upstream,
                             servers=", ".join(f"{s.container} ({s.address})" for s in servers)), True)

    def disable(self, servers: list[Server], log: Log) -> None:
        current = self.servers()
        gone = [s for s in servers if s.slot in current and current[s.slot].address == s.address]
        if not gone:
            return
        for s in gone:
            del current[s.slot]
        self._write(current)
        self._reload(log, tx("removed {servers} from {upstream}", upstream=self.config.upstream,
                             servers=", ".join(f"{s.container} ({s.address})" for s in gone)), True)
