"""Live frames across the consoles that share one database.

A frame published on one console (``LiveBus.publish``, after the commit that produced it)
is sent with ``pg_notify`` on a channel of the console's schema; every other console
LISTENs on it and hands the frame to its own live-socket subscribers. Each console tags
what it sends with a random origin id and ignores its own notifications.

Payloads (https://www.postgresql.org/docs/current/sql-notify.html): a NOTIFY payload is
at most 8000 bytes. A message is JSON with ASCII escapes (so characters are bytes) and is
sent whole when it fits in ``CHUNK`` bytes, else split into numbered parts that are sent
by ``pg_notify`` calls in **one transaction**: PostgreSQL delivers the notifications of a
transaction together and in order, so the receiver joins the parts of one message without
waiting or guessing. A message longer than ``MAX_MESSAGE`` (1 MiB; a log frame of a huge
batch) is not relayed: the other consoles' subscribers miss that one frame, the sender
logs it and counts it in ``fleetdeck_live_relay_dropped_total``. Relaying is best effort,
like the live sockets themselves: frames sent while the database is unreachable are lost
(the data is stored; a browser's next reload shows it).

Interest: a frame is relayed only for a topic some other console has sockets on, so a
fleet's batches cost no NOTIFY while nobody watches them (and ``LiveBus.has_subscribers``
lets the ingest path skip building a log frame nobody watches anywhere). Each console
announces the topics it has subscribers for (at once when a topic gains its first
subscriber, and all of them every ``ANNOUNCE_S``); a topic another console announced
counts as watched for ``INTEREST_TTL_S``. A socket subscribing on one console therefore
receives the other consoles' frames from when its announcement reached them (one NOTIFY
round trip, milliseconds).

SQLite (several console processes on one database file): the same messages travel as
unix-domain datagrams (``SocketRelay``). Each process binds a socket named by its origin
id in ``<database file's stem>-live/`` beside it (``fleetdeck-live/``, mode 0700, in the private data directory, so only the
console's own user may send) and sends each message to every other socket there; a
socket whose process is gone refuses the datagram and is removed. Datagrams of one
sender arrive whole and in order; a message is split into parts of ``DGRAM_CHUNK``.

Shared state: ``changed(name)`` tells the other consoles that state kept in memory and
stored in the database (silences, maintenance windows, posted alerts) changed; each
re-reads it (console/cluster/shared.py).

Threading: one thread owns the LISTEN connection (a connection of its own, outside the
pool, with TCP keepalives) and another sends; both reconnect after a failure (1 s).
Received frames are handed to the IOLoop with ``call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from console.cluster.leader import _KEEPALIVES

log = logging.getLogger("fleetdeck.cluster.relay")

CHUNK = 7000  # bytes of one NOTIFY payload's data part (the limit is 8000 with the header)
MAX_MESSAGE = 1 << 20
ANNOUNCE_S = 10.0
INTEREST_TTL_S = 3 * ANNOUNCE_S
RETRY_S = 1.0

Deliver = Callable[[str, Any], object]


class FrameRelay:
    """Relay of one console's live frames to the other consoles of its database; the
    transport is a subclass's (``_open``, ``_transmit``, ``_receive``).

    ``start(loop, deliver)`` begins listening; ``deliver(topic, data)`` is then called on
    ``loop`` for every frame another console published. ``send_frame`` and
    ``announce`` queue a message (never block, never raise); ``close()`` stops both
    threads."""

    chunk = CHUNK

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.origin = uuid.uuid4().hex[:12]
        self.clock = clock
        self._outbox: queue.Queue[list[str] | None] = queue.Queue(maxsize=10000)
        self._closed = threading.Event()
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self._remote_interest: dict[str, float] = {}  # topic -> monotonic expiry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Deliver | None = None
        self.on_hello: Callable[[], None] | None = None  # a console started: announce (on the loop)
        # Shared state another console changed (``changed(name)`` there): re-read it (on the loop).
        self.on_changed: Callable[[str], None] | None = None
        self.dropped = Counter("fleetdeck_live_relay_dropped", "Live frames not relayed to the other consoles "
                               "(larger than 1 MiB, the relay queue full, or the transport failing).",
                               registry=registry) \
            if registry is not None else None
        # Set when announcements arrive and at each of this console's own (every ANNOUNCE_S),
        # not computed when scraped: with several workers /metrics reads the shared files,
        # where each worker's view is its own (labelled with its pid, console/telemetry.py).
        self._m_remote = Gauge("fleetdeck_live_remote_topics", "Live topics that sockets on other consoles "
                               "subscribe to; frames of these are relayed.", registry=registry,
                               multiprocess_mode="liveall") if registry is not None else None

    # -- IOLoop side -----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._loop, self._deliver = loop, deliver
        self._open()
        for name, target in (("live-listen", self._listen), ("live-send", self._send)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._listening.wait(5)  # frames published from now on reach the others
        self._queue({"k": "h"})  # hello: the others announce their topics to the newcomer at once

    def _open(self) -> None:
        raise NotImplementedError

    def _transmit(self, payloads: list[str]) -> None:
        """Send one message's parts to every other console (blocking; may raise)."""
        raise NotImplementedError

    def _receive(self, pending: dict[str, list[str]]) -> None:
        """Receive until closed, passing every payload to ``_received`` (blocking; raises
        when the transport breaks, to be opened again)."""
        raise NotImplementedError

    def send_frame(self, topic: str, data: Any) -> None:
        self._queue({"k": "f", "t": topic, "d": data})

    def changed(self, name: str) -> None:
        """Tell every other console that shared state ``name`` (``silences``...) changed
        in the database, so each re-reads it (console/cluster/shared.py)."""
        self._queue({"k": "s", "n": name})

    def announce(self, topics: list[str]) -> None:
        self.remote_topics()  # forgets the expired ones
        if topics:
            self._queue({"k": "i", "t": topics})

    def watched_elsewhere(self, topic: str) -> bool:
        expiry = self._remote_interest.get(topic)
        return expiry is not None and expiry > self.clock()

    def remote_topics(self) -> int:
        """How many topics other consoles announced and still watch (expired ones are forgotten)."""
        now = self.clock()
        for topic, expiry in list(self._remote_interest.items()):
            if expiry <= now:
                self._remote_interest.pop(topic, None)
        count = len(self._remote_interest)
        if self._m_remote is not None:
            self._m_remote.set(count)
        return count

    def _queue(self, message: dict) -> None:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=True, default=str)
        if len(body) > MAX_MESSAGE:
            log.warning("live frame of %d bytes on %s not relayed to the other consoles (limit %d)",
                        len(body), message.get("t"), MAX_MESSAGE)
            self._count_drop()
            return
        self._seq += 1
        parts = [body[i:i + self.chunk] for i in range(0, len(body), self.chunk)] or [""]
        header = f"{self.origin}:{self._seq}:{len(parts)}:"
        try:
            self._outbox.put_nowait([header + part for part in parts])
        except queue.Full:
            self._count_drop()

    def _count_drop(self) -> None:
        if self.dropped is not None:
            self.dropped.inc()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(queue.Full):  # a busy sender sees _closed after its message
            self._outbox.put_nowait(None)
        for thread in self._threads:
            thread.join(5)
        self._release()

    def _release(self) -> None:
        """Free the transport after the threads stopped."""

    # -- threads ---------------------------------------------------------------------------
    def _send(self) -> None:
        while not self._closed.is_set():
            payloads = self._outbox.get()
            if payloads is None:
                return
            try:
                self._transmit(payloads)
            except Exception as exc:  # noqa: BLE001 - best effort: the data itself is stored
                log.warning("cannot relay a live frame to the other consoles: %s", exc)
                self._count_drop()
                self._closed.wait(RETRY_S)

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                self._receive({})
            except Exception as exc:  # noqa: BLE001 - reopen: frames meanwhile are missed
                if self._closed.is_set():
                    return
                log.warning("live relay listener failed (%s); reopening", exc)
                self._closed.wait(RETRY_S)

    def _received(self, payload: str, pending: dict[str, list[str]]) -> None:
        try:
            origin, seq, count, data = payload.split(":", 3)
            int(count)
        except ValueError:
            log.warning("malformed live relay message ignored")
            return
        if origin == self.origin:
            return
        key = f"{origin}:{seq}"
        parts = pending.setdefault(key, [])
        parts.append(data)
        if len(parts) < int(count):
            return
        del pending[key]
        try:
            message = json.loads("".join(parts))
        except ValueError:
            log.warning("malformed live relay message from %s", origin)
            return
        if message.get("k") == "i":
            expiry = self.clock() + INTEREST_TTL_S
            for topic in message["t"]:
                self._remote_interest[topic] = expiry
            self.remote_topics()
        elif message.get("k") == "h" and self._loop is not None and self.on_hello is not None:
            self._loop.call_soon_threadsafe(self.on_hello)
        elif message.get("k") == "s" and self._loop is not None and self.on_changed is not None:
            self._loop.call_soon_threadsafe(self.on_changed, str(message.get("n", "")))
        elif message.get("k") == "f" and self._loop is not None and self._deliver is not None:
            self._loop.call_soon_threadsafe(self._deliver, message["t"], message["d"])


class PostgresRelay(FrameRelay):
    """``FrameRelay`` over PostgreSQL ``LISTEN``/``NOTIFY`` on a channel of the schema."""

    def __init__(self, database_url: str, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(registry, clock)
        self.url = database_url
        self._engine = create_engine(database_url, poolclass=NullPool, connect_args=_KEEPALIVES)
        self.channel = ""

    def _open(self) -> None:
        with self._engine.connect() as conn:  # the channel is per schema, like the leader lock
            schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
        self.channel = "fleetdeck_live_" + hashlib.sha256(schema.encode()).hexdigest()[:16]

    def _transmit(self, payloads: list[str]) -> None:
        with self._engine.begin() as conn:  # one transaction: the parts arrive together
            conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                         [{"channel": self.channel, "payload": p} for p in payloads])

    def _receive(self, pending: dict[str, list[str]]) -> None:
        raw = self._engine.raw_connection()
        try:
            conn = raw.driver_connection
            if conn is None:  # only after the pool invalidated it
                raise ConnectionError("the LISTEN connection was invalidated")
            conn.autocommit = True
            conn.execute(f'LISTEN "{self.channel}"')  # channel: fixed prefix + hex digest
            self._listening.set()
            while not self._closed.is_set():
                for note in conn.notifies(timeout=0.25):  # how soon close() is noticed
                    self._received(note.payload, pending)
        finally:
            raw.close()

    def _release(self) -> None:
        self._engine.dispose()


DGRAM_CHUNK = 60000  # bytes per datagram, under Linux's default socket buffer (212992)


class SocketRelay(FrameRelay):
    """``FrameRelay`` over unix-domain datagram sockets in ``fleetdeck-live/`` beside the
    database file."""

    chunk = DGRAM_CHUNK

    def __init__(self, database_path: Path, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(registry, clock)
        # Beside the database (fleetdeck.db: fleetdeck-live/), not named after its files.
        self.dir = database_path.parent / f"{database_path.stem}-live"
        self._dir_fd = -1
        self._sock: socket.socket | None = None
        self._out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._out.setblocking(False)  # a receiver that stopped reading loses frames, never blocks us

    def _address(self, name: str) -> str:
        # Through the directory's descriptor: a unix socket path is limited to 107 bytes,
        # and data directories may be deeper than that.
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def _open(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self._dir_fd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self._address(f"{self.origin}.sock"))
        sock.settimeout(1.0)
        self._sock = sock
        self._listening.set()

    def _transmit(self, payloads: list[str]) -> None:
        for name in os.listdir(self.dir):
            if not name.endswith(".sock") or name == f"{self.origin}.sock":
                continue
            try:
                for payload in payloads:
                    self._out.sendto(payload.encode("ascii"), self._address(name))
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dir / name)
            except BlockingIOError:  # that console is not keeping up: it misses this frame
                self._count_drop()

    def _receive(self, pending: dict[str, list[str]]) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("the relay socket is not open")
        while not self._closed.is_set():
            try:
                data = sock.recv(DGRAM_CHUNK + 100)
            except socket.timeout:
                continue
            self._received(data.decode("ascii", "replace"), pending)
            if len(pending) > 100:  # parts of messages cut short by a full buffer
                pending.clear()

    def close(self) -> None:
        if self._sock is not None and self._dir_fd >= 0:  # wake the receiver (its own origin: ignored)
            with contextlib.suppress(OSError):
                self._out.sendto(f"{self.origin}:0:1:".encode("ascii"), self._address(f"{self.origin}.sock"))
        super().close()

    def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / f"{self.origin}.sock")
        self._out.close()
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
