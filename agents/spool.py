"""The agent's on-disk spool: every batch is written here before it is sent.

Layout (``<state_dir>/spool/``):

- ``<first seq, 20 digits>.seg2`` — append-only segment files of framed records
  (``.seg`` segments of the previous format, without an extension, are still read);
- ``ack`` — the highest sequence number the console acknowledged (or that was
  dropped or dead-lettered), as ASCII digits, then optionally a second line
  ``<seq> <extension>`` with the newest record extension at or below that mark,
  then ``crc <CRC32 hex>``; replaced atomically (write a temporary file,
  ``os.replace``), or overwritten in place on a full disk (see ``_write_ack``).

A record on disk (little-endian)::

    u32 body length | u32 CRC32 of body | body
    body (.seg2) = u64 seq | u64 created (Unix ms) | u32 samples | u32 log lines | u32 ext length | ext | payload
    body (.seg)  = u64 seq | u64 created (Unix ms) | u32 samples | u32 log lines | payload

``ext`` is opaque to the spool (the agent stores the log file positions reached by
the batch there, so they become durable in the same write as the lines);
:meth:`Spool.last_extension` returns the newest one, found at recovery among every
record still on disk (acknowledged ones included) and in the ``ack`` file.

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

Failed writes (disk full, ENOSPC): the segment is written through an unbuffered
descriptor; a write that fails is cut off again (``ftruncate`` to the record's
start), so no byte of it stays behind, and its sequence number is never used again.
``append`` then raises ``OSError``: the caller decides what waits and what is
dropped. When the cut itself fails, the segment is closed and the next record
starts a new one (recovery cuts the bad tail). A failed write of the ``ack``
file is logged and retried with the next acknowledgement; segments are deleted
only once the mark covering them is written (size-cap drops excepted). A spool
directory deleted while the agent runs is recreated; the batches it held are
counted as dropped.

Thread safety: every public method takes the spool's lock; one thread
appends (the collector loop) while another peeks and acknowledges (the sender).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FRAME = struct.Struct("<II")  # body length, CRC32(body)
META = struct.Struct("<QQII")  # seq, created Unix ms, samples, log lines (.seg records)
META2 = struct.Struct("<QQIII")  # the same, then the extension's length (.seg2 records)
MAX_RECORD_BYTES = 256 * 1024 * 1024  # a length above this is garbage, not a record
SEGMENT_SUFFIX = ".seg2"
OLD_SEGMENT_SUFFIX = ".seg"
MIN_SEGMENT_BYTES = 4 * 1024
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
ACK_FILE_BYTES = 4096  # the ack file is padded to a multiple of this: rewritable in place on a full disk
ACK_WARNING_INTERVAL = 60.0  # seconds between warnings about an ack file that cannot be written


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
    because of the size or age bound, or because the spool directory was deleted;
    ``torn_records``/``torn_bytes``: bad records cut off at recovery;
    ``write_errors``: appends that failed (nothing of them stays on disk);
    ``ack_write_errors``: failed writes of the ``ack`` file; ``recreated``: times the
    spool directory was found missing and created again."""

    bytes: int = 0
    queued: int = 0
    dropped_batches: int = 0
    dropped_samples: int = 0
    dropped_lines: int = 0
    torn_records: int = 0
    torn_bytes: int = 0
    write_errors: int = 0
    ack_write_errors: int = 0
    recreated: int = 0


@dataclass
class _Entry:
    seq: int
    created_ms: int
    samples: int
    lines: int
    segment: int  # the segment's first seq (its file name)
    offset: int  # of the payload in the segment
    length: int  # of the payload


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
        self._paths: dict[int, str] = {}  # first seq -> file path (.seg2, or .seg of the old format)
        self._active: int | None = None  # segment appended to
        self._fd: int | None = None  # its unbuffered descriptor: a failed write leaves nothing buffered
        self._acked = 0
        self._acked_written = 0
        self._next_seq = 1
        # The newest extension (seq, bytes) and the newest one at or below the ack mark.
        self._last_ext: tuple[int, bytes] | None = None
        self._acked_ext: tuple[int, bytes] | None = None
        self._acked_ext_written: tuple[int, bytes] | None = None
        self._ack_warned = -ACK_WARNING_INTERVAL
        os.makedirs(directory, exist_ok=True)
        self._recover()

    # -- paths ------------------------------------------------------------------

    def _segment_path(self, first_seq: int) -> str:
        return self._paths.get(first_seq) or os.path.join(self.directory, f"{first_seq:020d}{SEGMENT_SUFFIX}")

    @property
    def _ack_path(self) -> str:
        return os.path.join(self.directory, "ack")

    # -- recovery ---------------------------------------------------------------

    def _read_ack(self) -> int:
        try:
            with open(self._ack_path, "rb") as fh:
                text = fh.read(16 * 1024 * 1024).rstrip(b"\n")
        except FileNotFoundError:
            return 0
        lines = text.split(b"\n")
        if lines[-1].startswith(b"crc "):
            content = text[:len(text) - len(lines[-1])]
            if lines[-1][4:] != b"%08x" % zlib.crc32(content):
                log.warning("spool: the ack mark fails its checksum; replaying every spooled batch")
                return 0
            lines.pop()
        first = lines[0].strip()
        if not first.isdigit():
            # An ack file cut short by a power loss: replaying acknowledged batches is safe.
            log.warning("spool: unreadable ack mark %r; replaying every spooled batch", first[:32])
            return 0
        if len(lines) > 1:
            seq_text, _, ext = lines[1].partition(b" ")
            if seq_text.isdigit() and ext:
                self._acked_ext = self._acked_ext_written = (int(seq_text), ext)
                self._last_ext = self._acked_ext
        return int(first)

    def _recover(self) -> None:
        self._acked = self._acked_written = self._read_ack()
        found = []
        for name in os.listdir(self.directory):
            for suffix, version in ((SEGMENT_SUFFIX, 2), (OLD_SEGMENT_SUFFIX, 1)):
                if name.endswith(suffix) and name[:-len(suffix)].isdigit():
                    found.append((int(name[:-len(suffix)]), version, name))
                    break
        last_seq = self._acked
        for first, version, name in sorted(found):
            self._paths[first] = os.path.join(self.directory, name)
            size = self._scan_segment(first, version, last_seq)
            self._segments[first] = size
            if self._entries:
                last_seq = max(last_seq, self._entries[-1].seq)
        if self._last_ext is not None:
            last_seq = max(last_seq, self._last_ext[0])
        self._next_seq = last_seq + 1
        if not os.path.exists(self._ack_path):
            self._acked_written = -1  # written now, so that a full disk finds one to overwrite in place
            self._write_ack()
        self._delete_dead_segments()
        self.stats.bytes = sum(self._segments.values())
        self.stats.queued = len(self._entries)
        if self._entries or self.stats.torn_records:
            log.info("spool: %d batch(es) to replay (%d bytes), %d torn record(s) cut off",
                     len(self._entries), self.stats.bytes, self.stats.torn_records)

    def _scan_segment(self, first: int, version: int, last_seq: int) -> int:
        """Index the good records of one segment; truncate at the first bad one. Returns its size."""
        path = self._segment_path(first)
        meta = META2 if version == 2 else META
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
                    if not meta.size <= length <= MAX_RECORD_BYTES:
                        reason = f"implausible length {length}"
                    else:
                        body = fh.read(length)
                        if len(body) < length:
                            reason = "truncated body"
                        elif zlib.crc32(body) != crc:
                            reason = "checksum mismatch"
                        elif version == 2 and meta.size + META2.unpack_from(body)[4] > length:
                            reason = "implausible extension length"
                if reason is not None:
                    self.stats.torn_records += 1
                    self.stats.torn_bytes += size - good
                    log.warning("spool: %s at byte %d of %s (%d bytes); cut off", reason, good, path, size - good)
                    fh.truncate(good)
                    if self.fsync:
                        os.fsync(fh.fileno())
                    return good
                seq, created_ms, samples, lines = META.unpack_from(body)
                start = meta.size
                if version == 2:
                    ext_len = META2.unpack_from(body)[4]
                    if ext_len and (self._last_ext is None or seq > self._last_ext[0]):
                        self._last_ext = (seq, body[start:start + ext_len])
                        if seq <= self._acked:
                            self._acked_ext = self._last_ext
                    start += ext_len
                if seq > last_seq:
                    self._entries.append(_Entry(seq, created_ms, samples, lines, first,
                                                good + FRAME.size + start, length - start))
                    last_seq = seq
                good += FRAME.size + length
        return good

    def last_extension(self) -> tuple[int, bytes] | None:
        """``(seq, ext)`` of the newest record written with an extension (acknowledged or
        not), or None. After a restart it comes from the records on disk and the ack file."""
        with self._lock:
            return self._last_ext

    def advance_seq(self, seq: int) -> None:
        """Number the next batch above ``seq`` (a spool recreated empty must not reuse
        numbers another file, such as the saved log positions, refers to)."""
        with self._lock:
            self._next_seq = max(self._next_seq, seq + 1)

    # -- append -----------------------------------------------------------------

    def append(self, payload: bytes, samples: int, lines: int, ext: bytes = b"") -> int | None:
        """Write one batch (and its opaque extension ``ext``, see :meth:`last_extension`);
        return its seq once it is durable (see the fsync policy), or None when the batch
        alone is larger than ``max_bytes`` (dropped and counted).
        Older batches may be dropped (and counted) to stay under ``max_bytes``.
        Raises ``OSError`` when the write fails (disk full): nothing of it stays on
        disk and its seq is not used again."""
        with self._lock:
            now = self.clock()
            self._check_directory()
            self._expire(now)
            seq = self._next_seq
            body = META2.pack(seq, int(now * 1000), samples, lines, len(ext)) + ext + payload
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
            for attempt in range(2):
                self._next_seq = seq + 1  # consumed even if the write fails: never reused
                try:
                    if self._active is None:
                        self._open_segment(seq)
                    assert self._fd is not None and self._active is not None
                    active = self._active
                    offset = self._segments[active]
                    self._write_frame(offset, frame)
                    break
                except OSError as exc:
                    self.stats.write_errors += 1
                    if attempt or exc.errno != errno.ENOSPC or not self._reclaim_active():
                        raise
                seq = self._next_seq
                body = META2.pack(seq, int(now * 1000), samples, lines, len(ext)) + ext + payload
                frame = FRAME.pack(len(body), zlib.crc32(body)) + body
            self._segments[active] = offset + len(frame)
            start = FRAME.size + META2.size + len(ext)
            self._entries.append(_Entry(seq, int(now * 1000), samples, lines, active,
                                        offset + start, len(frame) - start))
            if ext:
                self._last_ext = (seq, ext)
            self._update_gauges()
            self._ready.notify_all()
            return seq

    def _write_frame(self, offset: int, frame: bytes) -> None:
        assert self._fd is not None and self._active is not None
        active = self._active
        try:
            view = memoryview(frame)
            written = 0
            while written < len(frame):
                written += os.pwrite(self._fd, view[written:], offset + written)
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            # Cut a partial write off so the next record starts on a frame boundary.
            try:
                os.ftruncate(self._fd, offset)
            except OSError as exc:
                log.error("spool: cannot cut a failed write off %s (%s); starting a new segment",
                          self._segment_path(active), exc)
                self._close_active()
            raise

    def _reclaim_active(self) -> bool:
        """Disk full: delete the segment appended to when every batch in it is acknowledged
        and the ack mark (with the newest extension) is on disk. True when space was freed."""
        if self._active is None or self._segments.get(self._active, 0) == 0:
            return False
        if any(entry.segment == self._active for entry in self._entries) or not self._write_ack():
            return False
        first = self._active
        self._close_active()
        self._remove_segment(first)
        self._update_gauges()
        return True

    def _open_segment(self, first_seq: int) -> None:
        path = os.path.join(self.directory, f"{first_seq:020d}{SEGMENT_SUFFIX}")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        self._active = first_seq
        self._paths[first_seq] = path
        self._segments[first_seq] = 0
        if self.fsync:
            # The new directory entry must survive a power loss too.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _close_active(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                log.warning("spool: closing segment: %s", exc)
        self._fd = None
        self._active = None

    def _check_directory(self) -> None:
        """Recreate a spool directory deleted under the running agent (its batches are gone)."""
        if os.path.isdir(self.directory):
            return
        lost = len(self._entries)
        for entry in self._entries:
            self._count_drop(entry.samples, entry.lines)
            self._acked = max(self._acked, entry.seq)
        self._entries.clear()
        self._close_active()
        self._segments.clear()
        self._paths.clear()
        self._acked_written = -1
        self._acked_ext_written = None
        os.makedirs(self.directory, exist_ok=True)
        self.stats.recreated += 1
        log.error("spool: directory %s was deleted; created again (%d queued batch(es) lost)",
                  self.directory, lost)
        self._write_ack()
        self._update_gauges()

    def _drop_oldest_segment(self) -> None:
        oldest = next(iter(self._segments))
        if oldest == self._active:
            self._close_active()
        dropped = 0
        while self._entries and self._entries[0].segment == oldest:
            entry = self._entries.popleft()
            self._count_drop(entry.samples, entry.lines)
            self._mark_acked(entry.seq)
            dropped += 1
        if dropped:
            log.warning("spool: over its %d-byte cap; dropped the %d oldest batch(es)", self.max_bytes, dropped)
        self._write_ack()
        self._remove_segment(oldest)  # even when the mark could not be written: the cap holds

    def _count_drop(self, samples: int, lines: int) -> None:
        self.stats.dropped_batches += 1
        self.stats.dropped_samples += samples
        self.stats.dropped_lines += lines

    def _mark_acked(self, seq: int) -> None:
        self._acked = max(self._acked, seq)
        if self._last_ext is not None and self._last_ext[0] <= self._acked:
            self._acked_ext = self._last_ext

    # -- read and acknowledge -----------------------------------------------------

    def peek(self, timeout: float | None = None) -> SpoolRecord | None:
        """The oldest unacknowledged batch, waiting up to ``timeout`` seconds for one
        (None: wait forever; 0: do not wait). Batches past ``max_age`` are dropped
        and counted first. Returns None when there is none."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                self._check_directory()
                self._expire(self.clock())
                if self._entries:
                    entry = self._entries[0]
                    try:
                        with open(self._segment_path(entry.segment), "rb") as fh:
                            fh.seek(entry.offset)
                            payload = fh.read(entry.length)
                        break
                    except FileNotFoundError:
                        self._segment_lost(entry.segment)
                        continue
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)
            return SpoolRecord(entry.seq, entry.created_ms / 1000.0, entry.samples, entry.lines, payload)

    def _segment_lost(self, first: int) -> None:
        """A segment file deleted by someone else: its batches are gone, counted as dropped."""
        lost = 0
        while self._entries and self._entries[0].segment == first:
            entry = self._entries.popleft()
            self._count_drop(entry.samples, entry.lines)
            self._mark_acked(entry.seq)
            lost += 1
        log.error("spool: segment %s disappeared; %d batch(es) lost", self._segment_path(first), lost)
        if first == self._active:
            self._close_active()
        self._segments.pop(first, None)
        self._paths.pop(first, None)
        self._write_ack()
        self._update_gauges()

    def ack(self, seq: int) -> None:
        """Remove every batch up to ``seq`` (delivered, or moved to the dead-letter file)."""
        with self._lock:
            while self._entries and self._entries[0].seq <= seq:
                self._entries.popleft()
            self._mark_acked(seq)
            if self._write_ack():
                self._delete_dead_segments()
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
            self._mark_acked(entry.seq)
            expired += 1
        if expired:
            log.warning("spool: dropped %d batch(es) older than %gs", expired, self.max_age)
            if self._write_ack():
                self._delete_dead_segments()
            self._update_gauges()

    def _delete_dead_segments(self) -> None:
        live = self._entries[0].segment if self._entries else None
        for first in list(self._segments):
            if first == self._active or (live is not None and first >= live):
                break
            self._remove_segment(first)

    def _remove_segment(self, first: int) -> None:
        del self._segments[first]
        path = self._paths.pop(first, None) or self._segment_path(first)
        try:
            os.unlink(path)
        except FileNotFoundError:
            log.warning("spool: segment %s was already gone", path)

    def _write_ack(self) -> bool:
        """Write the ack mark (and the newest acknowledged extension); False when it failed
        (logged at most every minute, counted; the next acknowledgement tries again).

        The file is ``<acked>\n[<seq> <ext>\n]crc <CRC32 of the lines before>\n`` padded
        with newlines to a multiple of :data:`ACK_FILE_BYTES`, written to a temporary
        file and renamed. On a full disk the temporary file cannot be written: the mark
        is then overwritten in place when it fits the padding (no new block needed); a
        power loss during that write fails the checksum, and the spool replays every
        batch (the console stores each ``batch_id`` once)."""
        if self._acked == self._acked_written and self._acked_ext == self._acked_ext_written:
            return True
        content = b"%d\n" % self._acked
        if self._acked_ext is not None:
            content += b"%d %s\n" % self._acked_ext
        content += b"crc %08x\n" % zlib.crc32(content)
        padded = content + b"\n" * (-len(content) % ACK_FILE_BYTES)
        tmp = self._ack_path + ".tmp"
        try:
            try:
                with open(tmp, "wb") as fh:
                    fh.write(padded)
                os.replace(tmp, self._ack_path)
            except OSError as exc:
                with contextlib.suppress(OSError):  # nothing written, or a directory in its way
                    os.unlink(tmp)
                if exc.errno != errno.ENOSPC or not self._overwrite_ack(content):
                    raise
        except OSError as exc:
            self.stats.ack_write_errors += 1
            if time.monotonic() - self._ack_warned >= ACK_WARNING_INTERVAL:
                self._ack_warned = time.monotonic()
                log.warning("spool: cannot write the ack mark %s (%s); acknowledged segments are kept "
                            "until it can be (%d failure(s) so far)", self._ack_path, exc,
                            self.stats.ack_write_errors)
            return False
        self._acked_written = self._acked
        self._acked_ext_written = self._acked_ext
        return True

    def _overwrite_ack(self, content: bytes) -> bool:
        """Overwrite the ack file in place when ``content`` fits its size; False otherwise."""
        try:
            fd = os.open(self._ack_path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            size = os.fstat(fd).st_size
            if len(content) > size:
                return False
            os.pwrite(fd, content + b"\n" * (size - len(content)), 0)
            return True
        finally:
            os.close(fd)

    def _update_gauges(self) -> None:
        self.stats.bytes = sum(self._segments.values())
        self.stats.queued = len(self._entries)
