"""Reading one log file from a position: lines, long-line cuts, fingerprints, saved positions.

A position names a file by device and inode (what survives a rename) plus a
fingerprint, the SHA-256 of its first :data:`FINGERPRINT_BYTES` bytes (what tells a
truncated-and-rewritten or recycled-inode file from the one we read), and the byte
offset up to which lines were consumed. This is the scheme of Filebeat's and Fluent
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
STATE_VERSION = 1


@dataclass
class Position:
    """Where reading of one file stands. ``offset`` and ``fp_len`` are bytes;
    ``fingerprint`` is the hex SHA-256 of the file's first ``fp_len`` bytes;
    ``discard`` is true inside an over-long line whose rest is skipped up to its newline;
    ``source`` is the name records carry (the path the file had when first seen)."""

    dev: int
    inode: int
    fingerprint: str
    fp_len: int
    offset: int
    path: str
    source: str
    discard: bool = False

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
    """The positions file: JSON ``{"version": 1, "patterns": [...], "files": [Position...]}``,
    replaced atomically (write a temporary file, fsync, rename, fsync the folder) so a
    crash leaves either the old or the new positions, never a torn file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> tuple[list[Position], list[str]] | None:
        """Saved positions and the patterns they were taken for; None when there is no
        file yet. An unreadable or corrupt file is logged and treated as absent."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("log positions file %s is unreadable (%s); starting without it", self.path, exc)
            return None
        try:
            files = [Position(**{k: entry[k] for k in Position.__dataclass_fields__}) for entry in doc["files"]]
            return files, [str(p) for p in doc.get("patterns", [])]
        except (KeyError, TypeError) as exc:
            log.error("log positions file %s has an unexpected shape (%s); starting without it", self.path, exc)
            return None

    def save(self, positions: list[Position], patterns: list[str]) -> None:
        """Write the positions; raises OSError (the caller counts and logs it)."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        doc: dict[str, Any] = {"version": STATE_VERSION, "patterns": patterns,
                               "files": [asdict(p) for p in positions]}
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
