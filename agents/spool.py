"""The agent's on-disk spool: every batch is written here before it is sent.

Layout (``<state_dir>/spool/``):

- ``<first seq, 20 digits>.seg`` — append-only segment files of framed records;
- ``ack`` — the highest sequence number the console acknowledged (or that was
  dropped or dead-lettered), as ASCII digits, replaced atomically (write a
  temporary file, ``os.replace``).

A record on disk (little-endian)::

    u32 body length | u32 CRC32 of body | body
    body = u64 seq | u64 created (Unix ms) | u32 samples | u32 log lines | payload

``payload`` is the ingest body exactly as it is sent (gzip-compressed JSON), so
a replay sends the same bytes and the same ``batch_id``. The CRC32 is zlib's
(ISO-HDLC), the framing is the one of Prometheus' WAL records reduced to one
record type.

Durability (the fsync policy): with ``fsync=True`` (the default) ``append``
returns only after ``fsync`` of the segment (and of the directory when a
segment was created), so an appended batch survives a power loss. With
``fsync=False`` the write is left in the OS page cache: it survives the
agent's own crash or ``kill -9``, not a power loss. The ``ack`` file is never
fsynced: losing it only replays acknowledged batches, which the console
answers as duplicates (exactly-once storage by ``batch_id``).

Recovery: on open every segment is read and each record's length and CRC are
checked. The first bad record of a segment (a torn write after a crash, or
garbage) ends that segment: the file is truncated there, and the record is
counted in ``torn_records`` / ``torn_bytes`` (its samples cannot be known).
A bad tail never raises, so it cannot cause a crash loop. Records whose seq
is at or below the ``ack`` mark are skipped; the rest replay in seq order.

Bounds: the files together never exceed ``max_bytes``. When an append would
pass it, whole oldest segments are deleted (segments are ``max_bytes / 16``,
between 4 KiB and 16 MiB, so one drop frees about 1/16 of the cap); records
older than ``max_age`` seconds are dropped before they are sent. Every drop is
counted exactly, in batches, samples and log lines (``SpoolStats``). A single
batch larger than ``max_bytes`` is dropped and counted without being written.

Thread safety: every public method takes the spool's lock; one thread
appends (the collector loop) while another peeks and acknowledges (the sender).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

FRAME = struct.Struct("<II")  # body length, CRC32(body)
META = struct.Struct("<QQII")  # seq, created Unix ms, samples, log lines
MAX_RECORD_BYTES = 256 * 1024 * 1024  # a length above this is garbage, not a record
SEGMENT_SUFFIX = ".seg"
MIN_SEGMENT_BYTES = 4 * 1024
MAX_SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SpoolRecord:
    """One spooled batch: ``seq`` (1, 2, ...), ``created`` (Unix seconds),
    ``samples`` and ``lines`` (counts in the batch), ``payload`` (the bytes to send)."""

    seq: int
    created: float
    samples: int
    lines: int
    payload: bytes


@dataclass
class SpoolStats:
    """Counters and gauges of a spool. ``bytes``: size of the segment files;
    ``queued``: batches not yet acknowledged; ``dropped_*``: removed unsent
    because of the size or age bound (by reason in ``dropped_batches_by_reason``);
    ``torn_records``/``torn_bytes``: bad records cut off at recovery."""

    bytes: int = 0
    queued: int = 0
    dropped_batches: int = 0
    dropped_samples: int = 0
    dropped_lines: int = 0
    torn_records: int = 0
    torn_bytes: int = 0


@dataclass
class _Entry:
    seq: int
    created_ms: int
    samples: int
    lines: int
    segment: int  # the segment's first seq (its file name)
    offset: int  # of the frame in the segment
    length: int  # of the whole frame


class Spool:
    """A bounded FIFO of batches on disk (see the module docstring for format and guarantees).

    ``directory`` is created if missing. ``max_bytes``: cap of the segment files
    together; ``max_age``: seconds a batch may wait; ``segment_bytes``: rotation
    size (default ``max_bytes / 16`` clamped to [4 KiB, 16 MiB]). ``clock``
    returns Unix seconds. Raises ``OSError`` only when the directory cannot be
    created or read.
    """

    def __init__(self, directory: str, max_bytes: int = 256 * 1024 * 1024, max_age: float = 3 * 86400.0,
                 fsync: bool = True, segment_bytes: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_bytes < 2 * MIN_SEGMENT_BYTES:
            raise ValueError(f"spool max_bytes must be at least {2 * MIN_SEGMENT_BYTES}, got {max_bytes}")
        self.directory = directory
        self.max_bytes = int(max_bytes)
        self.max_age = float(max_age)
        self.fsync = fsync
        self.segment_bytes = int(segment_bytes or min(MAX_SEGMENT_BYTES, max(MIN_SEGMENT_BYTES, max_bytes // 16)))
        self.clock = clock
        self.stats = SpoolStats()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._entries: deque[_Entry] = deque()
        self._segments: dict[int, int] = {}  # first seq -> file size, oldest first
        self._active: int | None = None  # segment appended to
        self._file: BinaryIO | None = None
        self._acked = 0
        self._acked_written = 0
        self._next_seq = 1
        os.makedirs(directory, exist_ok=True)
        self._recover()

    # -- paths ------------------------------------------------------------------

    def _segment_path(self, first_seq: int) -> str:
        return os.path.join(self.directory, f"{first_seq:020d}{SEGMENT_SUFFIX}")

    @property
    def _ack_path(self) -> str:
        return os.path.join(self.directory, "ack")

    # -- recovery ---------------------------------------------------------------

    def _read_ack(self) -> int:
        try:
            with open(self._ack_path, "rb") as fh:
                text = fh.read(32).strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            # An ack file cut short by a power loss: replaying acknowledged batches is safe.
            log.warning("spool: unreadable ack mark %r; replaying every spooled batch", text[:32])
            return 0
        return int(text)

    def _recover(self) -> None:
        self._acked = self._acked_written = self._read_ack()
        names = sorted(n for n in os.listdir(self.directory)
                       if n.endswith(SEGMENT_SUFFIX) and n[:-len(SEGMENT_SUFFIX)].isdigit())
        last_seq = self._acked
        for name in names:
            first = int(name[:-len(SEGMENT_SUFFIX)])
            size = self._scan_segment(first, last_seq)
            self._segments[first] = size
            if self._entries:
                last_seq = max(last_seq, self._entries[-1].seq)
        self._next_seq = last_seq + 1
        self._delete_dead_segments()
        self.stats.bytes = sum(self._segments.values())
        self.stats.queued = len(self._entries)
        if self._entries or self.stats.torn_records:
            log.info("spool: %d batch(es) to replay (%d bytes), %d torn record(s) cut off",
                     len(self._entries), self.stats.bytes, self.stats.torn_records)

    def _scan_segment(self, first: int, last_seq: int) -> int:
        """Index the good records of one segment; truncate at the first bad one. Returns its size."""
        path = self._segment_path(first)
        good = 0
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            while good < size:
                reason = None
                header = fh.read(FRAME.size)
                if len(header) < FRAME.size:
                    reason = "truncated header"
                else:
                    length, crc = FRAME.unpack(header)
                    if not META.size <= length <= MAX_RECORD_BYTES:
                        reason = f"implausible length {length}"
                    else:
                        body = fh.read(length)
                        if len(body) < length:
                            reason = "truncated body"
                        elif zlib.crc32(body) != crc:
                            reason = "checksum mismatch"
                if reason is not None:
                    self.stats.torn_records += 1
                    self.stats.torn_bytes += size - good
                    log.warning("spool: %s at byte %d of %s (%d bytes); cut off", reason, good, path, size - good)
                    fh.truncate(good)
                    if self.fsync:
                        os.fsync(fh.fileno())
                    return good
                seq, created_ms, samples, lines = META.unpack_from(body)
                if seq > last_seq:
                    self._entries.append(_Entry(seq, created_ms, samples, lines, first, good,
                                                FRAME.size + length))
                    last_seq = seq
                good += FRAME.size + length
        return good

    # -- append -----------------------------------------------------------------

    def append(self, payload: bytes, samples: int, lines: int) -> int | None:
        """Write one batch; return its seq once it is durable (see the fsync policy),
        or None when the batch alone is larger than ``max_bytes`` (dropped and counted).
        Older batches may be dropped (and counted) to stay under ``max_bytes``.
        Raises ``OSError`` when the write fails (disk full): nothing is then spooled."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            seq = self._next_seq
            body = META.pack(seq, int(now * 1000), samples, lines) + payload
            frame = FRAME.pack(len(body), zlib.crc32(body)) + body
            if len(frame) > self.max_bytes:
                log.warning("spool: batch of %d bytes exceeds the spool cap of %d bytes; dropped",
                            len(frame), self.max_bytes)
                self._count_drop(samples, lines)
                return None
            if self._active is not None and self._segments[self._active] > 0 \
                    and self._segments[self._active] + len(frame) > self.segment_bytes:
                self._close_active()
            while sum(self._segments.values()) + len(frame) > self.max_bytes:
                self._drop_oldest_segment()
            if self._active is None:
                self._open_segment(seq)
            assert self._file is not None and self._active is not None
            offset = self._segments[self._active]
            try:
                self._file.write(frame)
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
            except OSError:
                # Cut a partial write off so the next record starts on a frame boundary.
                self._file.truncate(offset)
                self._file.seek(offset)
                raise
            self._next_seq = seq + 1
            self._segments[self._active] = offset + len(frame)
            self._entries.append(_Entry(seq, int(now * 1000), samples, lines, self._active, offset, len(frame)))
            self._update_gauges()
            self._ready.notify_all()
            return seq

    def _open_segment(self, first_seq: int) -> None:
        path = self._segment_path(first_seq)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open across appends
        self._active = first_seq
        self._segments[first_seq] = 0
        if self.fsync:
            # The new directory entry must survive a power loss too.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _close_active(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._active = None

    def _drop_oldest_segment(self) -> None:
        oldest = next(iter(self._segments))
        if oldest == self._active:
            self._close_active()
        dropped = 0
        while self._entries and self._entries[0].segment == oldest:
            entry = self._entries.popleft()
            self._count_drop(entry.samples, entry.lines)
            self._acked = max(self._acked, entry.seq)
            dropped += 1
        if dropped:
            log.warning("spool: over its %d-byte cap; dropped the %d oldest batch(es)", self.max_bytes, dropped)
        self._remove_segment(oldest)
        self._write_ack()

    def _count_drop(self, samples: int, lines: int) -> None:
        self.stats.dropped_batches += 1
        self.stats.dropped_samples += samples
        self.stats.dropped_lines += lines

    # -- read and acknowledge -----------------------------------------------------

    def peek(self, timeout: float | None = None) -> SpoolRecord | None:
        """The oldest unacknowledged batch, waiting up to ``timeout`` seconds for one
        (None: wait forever; 0: do not wait). Batches past ``max_age`` are dropped
        and counted first. Returns None when there is none."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                self._expire(self.clock())
                if self._entries:
                    entry = self._entries[0]
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)
            with open(self._segment_path(entry.segment), "rb") as fh:
                fh.seek(entry.offset + FRAME.size + META.size)
                payload = fh.read(entry.length - FRAME.size - META.size)
            return SpoolRecord(entry.seq, entry.created_ms / 1000.0, entry.samples, entry.lines, payload)

    def ack(self, seq: int) -> None:
        """Remove every batch up to ``seq`` (delivered, or moved to the dead-letter file)."""
        with self._lock:
            while self._entries and self._entries[0].seq <= seq:
                self._entries.popleft()
            self._acked = max(self._acked, seq)
            self._delete_dead_segments()
            self._write_ack()
            self._update_gauges()

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`peek` (used at shutdown)."""
        with self._lock:
            self._ready.notify_all()

    def snapshot(self) -> SpoolStats:
        """A copy of the counters and gauges."""
        with self._lock:
            return SpoolStats(**vars(self.stats))

    def close(self) -> None:
        with self._lock:
            self._close_active()

    # -- internals ----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        cutoff_ms = int((now - self.max_age) * 1000)
        expired = 0
        while self._entries and self._entries[0].created_ms < cutoff_ms:
            entry = self._entries.popleft()
            self._count_drop(entry.samples, entry.lines)
            self._acked = max(self._acked, entry.seq)
            expired += 1
        if expired:
            log.warning("spool: dropped %d batch(es) older than %gs", expired, self.max_age)
            self._delete_dead_segments()
            self._write_ack()
            self._update_gauges()

    def _delete_dead_segments(self) -> None:
        live = self._entries[0].segment if self._entries else None
        for first in list(self._segments):
            if first == self._active or (live is not None and first >= live):
                break
            self._remove_segment(first)

    def _remove_segment(self, first: int) -> None:
        del self._segments[first]
        try:
            os.unlink(self._segment_path(first))
        except FileNotFoundError:
            log.warning("spool: segment %s was already gone", self._segment_path(first))

    def _write_ack(self) -> None:
        if self._acked == self._acked_written:
            return
        tmp = self._ack_path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(b"%d\n" % self._acked)
        os.replace(tmp, self._ack_path)
        self._acked_written = self._acked

    def _update_gauges(self) -> None:
        self.stats.bytes = sum(self._segments.values())
        self.stats.queued = len(self._entries)
