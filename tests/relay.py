"""A loopback TCP relay the tests own: to take a real server away from one client (close
the relay) or to put TLS in front of a plain-HTTP console (as a reverse proxy does)."""
from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading


class Relay:
    """Forwards connections from ``127.0.0.1:port`` to ``target``; ``close()`` drops the
    listener and every open connection (as a server that went away), ``open()`` listens
    again on the same port. With ``tls`` (a server-side ``ssl.SSLContext``) it terminates
    TLS in front of a plain-HTTP target, as a reverse proxy does. ``reset_next = N`` answers
    the next N connections with a TCP reset (RST, ``SO_LINGER`` 0), as a flaky network or
    an overloaded host does; ``resets`` counts those sent."""

    def __init__(self, target: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls
        self.port = 0
        self.reset_next = 0
        self.resets = 0
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
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with self._lock:
            reset, self.reset_next = self.reset_next > 0, max(0, self.reset_next - 1)
            self.resets += reset
        if reset:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        try:
            if self.tls is not None:  # handshake here: a client that refuses the certificate is dropped
                client.settimeout(10)
                client = self.tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:  # ssl.SSLError included
            client.close()
            return
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
