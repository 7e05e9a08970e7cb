"""Reading one log file from a position: lines, long-line cuts, fingerprints, saved positions.

A position names a file by device and inode (what survives a rename) plus a
fingerprint, the SHA-256 of its first :data:`FINGERPRINT_BYTES` bytes (what tells a
truncated-and-rewritten or recycled-inode file from the one we read), the SHA-256
of the up to :data:`TAIL_FINGERPRINT_BYTES` bytes just before the saved offset
(what tells a recycled inode whose new file starts like the old one, e.g. the same
header line, from the file we read), and the byte offset up to which lines were
consumed. This is the scheme of Filebeat's and Fluent
Bit's tail inputs (inode + offset, with a content fingerprint to catch inode reuse).

Standard library only: the agent's import closure stays small.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterator

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 256
TAIL_FINGERPRINT_BYTES = 1024
STATE_VERSION = 1


@dataclass
class Position:
    """Where reading of one file stands. ``offset`` and ``fp_len`` are bytes;
    ``fingerprint`` is the hex SHA-256 of the file's first ``fp_len`` bytes;
    ``discard`` is true inside an over-long line whose rest is skipped up to its newline;
    ``source`` is the name records carry (the path the file had when first seen);
    ``tail_fp`` is the hex SHA-256 of the ``tail_len`` bytes before ``offset`` ("" in
    positions saved by older agents: not checked)."""

    dev: int
    inode: int
    fingerprint: str
    fp_len: int
    offset: int
    path: str
    source: str
    discard: bool = False
    tail_fp: str = ""
    tail_len: int = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.inode)


def fingerprint(fd: int, size: int) -> tuple[str, int]:
    """(hex SHA-256, length) of the first ``min(size, FINGERPRINT_BYTES)`` bytes of ``fd``."""
    length = min(size, FINGERPRINT_BYTES)
    import hashlib  # loads libcrypto (~4 MiB): only in agents that tail logs

    return hashlib.sha256(os.pread(fd, length, 0) if length else b"").hexdigest(), length


def fingerprint_matches(fd: int, fp: str, fp_len: int) -> bool:
    """Whether the first ``fp_len`` bytes of ``fd`` still hash to ``fp``."""
    head = os.pread(fd, fp_len, 0) if fp_len else b""
    import hashlib

    return len(head) == fp_len and hashlib.sha256(head).hexdigest() == fp


def tail_fingerprint(fd: int, offset: int) -> tuple[str, int]:
    """(hex SHA-256, length) of the up to :data:`TAIL_FINGERPRINT_BYTES` bytes before ``offset``."""
    length = min(offset, TAIL_FINGERPRINT_BYTES)
    import hashlib

    return hashlib.sha256(os.pread(fd, length, offset - length) if length else b"").hexdigest(), length


def tail_matches(fd: int, pos: "Position") -> bool:
    """Whether the bytes before ``pos.offset`` are still those the position was taken on
    (True for a position without a tail fingerprint)."""
    if not pos.tail_fp:
        return True
    if pos.tail_len > pos.offset:
        return False
    import hashlib

    data = os.pread(fd, pos.tail_len, pos.offset - pos.tail_len) if pos.tail_len else b""
    return len(data) == pos.tail_len and hashlib.sha256(data).hexdigest() == pos.tail_fp


@dataclass
class RawLine:
    data: bytes  # without the newline (and without a trailing \r); at most the cap
    start: int  # byte offset of the line's first byte
    end: int  # byte offset just after the consumed bytes
    cut: bool  # the line was longer than the cap and was cut


def utf8_cut(data: bytes, cap: int) -> bytes:
    """``data[:cap]``, shortened by up to 3 bytes so that the cut does not split a UTF-8
    character. Only the bytes before the cut are looked at (the next may not be read yet):
    the last lead byte among them says how long its character is (RFC 3629: 0xC0-0xDF
    starts 2 bytes, 0xE0-0xEF 3, 0xF0-0xF7 4; 0x80-0xBF continue one)."""
    for i in range(min(cap, len(data)) - 1, max(cap - 5, -1), -1):
        byte = data[i]
        if byte < 0x80:
            break  # ASCII: the character ends here
        if byte >= 0xC0:
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[:i] if i + size > cap else data[:cap]
    return data[:cap]


def read_lines(fd: int, offset: int, discard: bool, cap: int, max_bytes: int,
               final: bool = False) -> Iterator[tuple[RawLine | None, int, bool]]:
    """Yield ``(line or None, new_offset, new_discard)`` for complete lines from ``offset``.

    A line longer than ``cap`` bytes is yielded cut to at most ``cap`` bytes, on a UTF-8
    character boundary (:func:`utf8_cut`, ``cut=True``), and the rest
    of it, up to its newline, is skipped (``discard``), possibly across calls. A partial
    last line (no newline yet) is left unread, to be read once its newline arrives;
    with ``final`` (the file was rotated away and will not grow) it is yielded as is.
    Stops after about ``max_bytes`` bytes; ``None`` lines report skipped bytes only.
    """
    chunk = max(256 * 1024, 2 * cap)
    read = 0
    while read < max_bytes:
        data = os.pread(fd, chunk, offset)
        if not data:
            return
        read += len(data)
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            if discard:
                discard = False
                yield None, offset + nl + 1, False
            else:
                raw = data[pos:nl]
                cut = len(raw) > cap
                if cut:
                    raw = utf8_cut(raw, cap)
                elif raw.endswith(b"\r"):
                    raw = raw[:-1]
                yield RawLine(raw, offset + pos, offset + nl + 1, cut), offset + nl + 1, False
            pos = nl + 1
        rest = len(data) - pos
        eof = len(data) < chunk
        if discard and rest:
            offset += len(data)
            yield None, offset, True
            continue
        if rest >= cap and not discard:
            # No newline within the cap: emit the cut line now and skip the rest later.
            yield RawLine(utf8_cut(data[pos:], cap), offset + pos, offset + len(data), True), offset + len(data), True
            offset += len(data)
            discard = True
            continue
        offset += pos
        if eof:
            if final and rest:
                raw = data[pos:]
                yield RawLine(raw, offset, offset + rest, False), offset + rest, False
            return


class StateStore:
    """The positions file: JSON ``{"version": 1, "patterns": [...], "files": [Position...],
    "spool_seq": int|null}``, replaced atomically (write a temporary file, fsync, rename,
    fsync the folder) so a crash leaves either the old or the new positions, never a torn
    file. ``spool_seq`` is the spool record that carried the same positions (the newer of
    the file and the spool wins at start). The same document, encoded by :meth:`encode`,
    is the extension of spool records."""

    def __init__(self, path: str) -> None:
        self.path = path

    @staticmethod
    def encode(positions: list[Position], patterns: list[str], spool_seq: int | None = None) -> bytes:
        doc: dict[str, Any] = {"version": STATE_VERSION, "patterns": patterns,
                               "files": [asdict(p) for p in positions], "spool_seq": spool_seq}
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> tuple[list[Position], list[str], int | None]:
        """``(positions, patterns, spool_seq)``; raises ValueError for another shape."""
        try:
            doc = json.loads(data)
            names = Position.__dataclass_fields__
            files = [Position(**{k: v for k, v in entry.items() if k in names}) for entry in doc["files"]]
            seq = doc.get("spool_seq")
            return files, [str(p) for p in doc.get("patterns", [])], seq if isinstance(seq, int) else None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unexpected shape ({exc})") from None

    def load(self) -> tuple[list[Position], list[str], int | None] | None:
        """Saved positions, the patterns they were taken for and their spool record; None
        when there is no file yet. An unreadable or corrupt file is logged and treated as absent."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("log positions file %s is unreadable (%s); starting without it", self.path, exc)
            return None
        try:
            return self.decode(data)
        except ValueError as exc:
            log.error("log positions file %s is unreadable (%s); starting without it", self.path, exc)
            return None

    def save(self, positions: list[Position], patterns: list[str], spool_seq: int | None = None) -> None:
        """Write the positions; raises OSError (the caller counts and logs it)."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.encode(positions, patterns, spool_seq))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
