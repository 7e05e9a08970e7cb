"""``/readyz`` while the PostgreSQL server cannot be reached, on a real console and the
real server: the console talks to PostgreSQL through a loopback TCP relay the test owns,
so closing the relay (and every connection through it) is the server going away for
this console only; reopening it on the same port is the server coming back."""
from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse

import pytest

from tests.conftest import need
from tests.harness import ConsoleHarness, wait_for


class Relay:
    """Forwards connections from ``127.0.0.1:port`` to ``target``; ``close()`` drops the
    listener and every open connection (as a server that went away), ``open()`` listens
    again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def open(self) -> "Relay":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked on it; close() alone does not
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()


@pytest.fixture
def relayed_postgres(postgres_url):
    """``postgres_url`` (a private schema) reached through a :class:`Relay`."""
    parts = urllib.parse.urlsplit(postgres_url)
    if parts.hostname is None:
        need("postgres", "the test database URL names no TCP host (a Unix socket cannot be relayed)")
    relay = Relay((parts.hostname, parts.port or 5432)).open()
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{relay.port}"))
    yield relay, url
    relay.close()


def test_readyz_answers_503_while_postgresql_is_away_and_200_once_it_is_back(tmp_path, relayed_postgres):
    relay, url = relayed_postgres
    harness = ConsoleHarness(tmp_path, database_url=url).start()
    try:
        ready = harness.request("GET", "/readyz")
        assert ready.status == 200 and ready.json() == {"status": "ready", "database": "postgresql"}
        relay.close()
        down = harness.request("GET", "/readyz")
        assert down.status == 503, down.body
        error = down.json()["error"]
        assert error["code"] == "storage_unavailable" and "database unreachable" in error["message"]
        assert harness.request("GET", "/healthz").status == 200  # the process itself is fine
        metrics = harness.request("GET", "/metrics").body.decode().splitlines()
        counted = [line for line in metrics if line.startswith('fleetdeck_storage_errors_total{operation="readyz"}')]
        assert len(counted) == 1 and float(counted[0].split()[-1]) >= 1.0, counted
        relay.open()
        wait_for(lambda: harness.request("GET", "/readyz").status == 200, 30, "/readyz to recover")
    finally:
        relay.close()
        harness.close()
