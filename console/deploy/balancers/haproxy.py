"""HAProxy driven through its runtime API (the admin ``stats socket``), as documented in
the HAProxy management guide, section 9.3 "Unix Socket commands"
(https://docs.haproxy.org/2.6/management.html#9.3).

Each command is sent on a connection of its own (non-interactive mode: HAProxy answers
and closes). The app's container in slot k-1 is server ``BACKEND/PREFIXk`` (declared with
``server-template PREFIX 1-N ADDR disabled``, N at least replicas + maxSurge):

- enable: ``set server B/S addr IP port PORT`` then ``set server B/S state ready``;
- disable: ``set server B/S state drain`` (no new connections), then ``show stat`` until
  the server's current sessions (``scur``) and queue (``qcur``) are 0 or
  ``drain_timeout`` passed, then ``set server B/S state maint``.
"""
from __future__ import annotations

import csv
import io
import socket
import time
from typing import Callable

from console.deploy.balancers.base import BalancerError, Log, Server
from console.deploy.balancers.config import LoadBalancer
from console.i18n import tx

DRAIN_POLL_S = 0.05
# How the runtime API words a refusal (the answer to a successful "set server" is empty
# or a sentence such as "IP changed from ...").
_REFUSALS = ("No such", "Require", "Permission denied", "Unknown command", "Invalid", "Error", "Can't",
             "Unsupported", "Backend is using a static")


class HaproxyRuntime:
    """A client of one runtime API socket: ``address`` is a unix socket path or HOST:PORT."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address, self.timeout = address, timeout

    def command(self, line: str) -> str:
        """The answer to one command; raises BalancerError when HAProxy cannot be reached."""
        if "\n" in line or ";" in line:
            raise ValueError(f"one command per call: {line!r}")
        try:
            if self.address.startswith("/"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: str | tuple[str, int] = self.address
            else:
                host, _, port = self.address.rpartition(":")
                sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
                target = (host.strip("[]"), int(port))
            with sock:
                sock.settimeout(self.timeout)
                sock.connect(target)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise BalancerError(f"HAProxy runtime API at {self.address} unreachable: {exc}") from None
        return b"".join(chunks).decode("utf-8", "replace")


class HaproxyBalancer:
    """See the module docstring. ``runtime`` and ``clock`` are injectable for tests."""

    def __init__(self, config: LoadBalancer, runtime: HaproxyRuntime | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.runtime = runtime or HaproxyRuntime(config.socket, config.api_timeout)
        self._clock = clock

    def _server(self, slot: int) -> str:
        return f"{self.config.backend}/{self.config.server_prefix}{slot + 1}"

    def _set(self, slot: int, what: str) -> str:
        answer = self.runtime.command(f"set server {self._server(slot)} {what}").strip()
        if answer.startswith(_REFUSALS):
            raise BalancerError(f"HAProxy refused 'set server {self._server(slot)} {what}': {answer[:300]}")
        return answer

    def sync(self, servers: list[Server], slots: int, log: Log) -> None:
        by_slot = {s.slot: s for s in servers}
        for slot in range(slots):
            if slot in by_slot:
                self._ready(by_slot[slot])
            else:
                self._set(slot, "state maint")
        log(tx("haproxy: {backend} serves {count} container(s), {idle} server slot(s) in maintenance",
               backend=self.config.backend, count=len(servers), idle=slots - len(servers)))

    def _ready(self, server: Server) -> None:
        self._set(server.slot, f"addr {server.host} port {server.port}")
        self._set(server.slot, "state ready")

    def enable(self, servers: list[Server], log: Log) -> None:
        for server in servers:
            self._ready(server)
            log(tx("haproxy: {server} -> {address} ({container}) ready", server=self._server(server.slot),
                   address=server.address, container=server.container),
                server=self._server(server.slot))

    def disable(self, servers: list[Server], log: Log) -> None:
        if not servers:
            return
        for server in servers:
            self._set(server.slot, "state drain")
        started = self._clock()
        busy = self._sessions(servers)
        while busy and self._clock() - started < self.config.drain_timeout:
            time.sleep(DRAIN_POLL_S)
            busy = self._sessions(servers)
        for server in servers:
            self._set(server.slot, "state maint")
            left = busy.get(server.slot, 0)
            took = f"{self._clock() - started:.2f}"
            log(tx("haproxy: {server} ({container}) drained in {took} s, {left} session(s) still open after "
                   "drain_timeout, now in maintenance", server=self._server(server.slot),
                   container=server.container, took=took, left=left) if left else
                tx("haproxy: {server} ({container}) drained in {took} s, now in maintenance",
                   server=self._server(server.slot), container=server.container, took=took),
                level="warning" if left else "info", server=self._server(server.slot))

    def _sessions(self, servers: list[Server]) -> dict[int, int]:
        """Slot -> current sessions + queued requests, for those of ``servers`` with any."""
        text = self.runtime.command(f"show stat {self.config.backend} 4 -1")
        if not text.startswith("# "):
            raise BalancerError(f"HAProxy 'show stat {self.config.backend}': {text.strip()[:300]}")
        rows = {r["svname"]: r for r in csv.DictReader(io.StringIO(text[2:]))}
        out = {}
        for server in servers:
            row = rows.get(f"{self.config.server_prefix}{server.slot + 1}")
            if row is None:
                raise BalancerError(f"HAProxy has no server {self._server(server.slot)}")
            count = int(row.get("scur") or 0) + int(row.get("qcur") or 0)
            if count:
                out[server.slot] = count
        return out
