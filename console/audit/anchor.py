"""The audit chain's head, anchored outside the database.

The hash chain (console/audit/service.py) shows an edited, reordered or removed entry,
but not a removed *tail*: deleting the newest entries leaves a shorter chain that is
still whole. So after every commit that appended entries, the newest entry's ``(id,
hash)`` is written to ``<data_dir>/audit_head`` with an HMAC-SHA256 (RFC 2104) under a
key kept in ``<data_dir>/audit_head.key`` (0600, beside the secret key, never in the
database). ``verify`` then requires that entry to be in the chain: tail truncation,
including deleting every entry, is reported.

The head only moves forward (writers on one host serialise on ``audit_head.lock``), so a
commit racing another never rolls it back, and a head that does not verify is never
overwritten. Someone who can write the data directory as
well as the database (and so read the key) can still rewrite both; that, and entries
appended after the last head write (a crash between commit and write), are not
detected.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import orjson

HEAD_FILE = "audit_head"
KEY_FILE = "audit_head.key"
LOCK_FILE = "audit_head.lock"


class AnchorError(ValueError):
    """The head file is missing (while its key exists), malformed, or its HMAC is wrong."""


@dataclass(frozen=True)
class Head:
    id: int
    hash: str


class HeadAnchor:
    """Reads and advances ``<data_dir>/audit_head``. Safe to call from any thread and from
    several processes sharing the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = Path(data_dir)
        self._key: bytes | None = None

    @property
    def key_path(self) -> Path:
        return self._dir / KEY_FILE

    @property
    def head_path(self) -> Path:
        return self._dir / HEAD_FILE

    def _mac(self, entry_id: int, entry_hash: str) -> str:
        return hmac.new(self._load_key(), f"{entry_id}:{entry_hash}".encode("ascii"), hashlib.sha256).hexdigest()

    def _load_key(self) -> bytes:
        if self._key is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self._key = bytes.fromhex(self.key_path.read_text().strip())
            else:
                key = secrets.token_bytes(32)
                with os.fdopen(fd, "w") as fh:
                    fh.write(key.hex() + "\n")
                self._key = key
        return self._key

    def read(self) -> Head | None:
        """The anchored head; None when nothing was ever anchored here (no key, no head).
        Raises AnchorError when the head is missing beside its key, malformed or forged."""
        if not self.head_path.exists():
            if self.key_path.exists():
                raise AnchorError(f"the anchored head {self.head_path} is missing")
            return None
        try:
            doc = orjson.loads(self.head_path.read_bytes())
            head, mac = Head(int(doc["id"]), str(doc["hash"])), str(doc["mac"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AnchorError(f"the anchored head {self.head_path} is malformed") from None
        try:
            valid = self.key_path.exists() and hmac.compare_digest(mac.encode("utf-8"),
                                                                   self._mac(head.id, head.hash).encode("ascii"))
        except (OSError, ValueError, UnicodeEncodeError):
            raise AnchorError(f"the head anchor key {self.key_path} is unreadable") from None
        if not valid:
            raise AnchorError(f"the anchored head {self.head_path} does not carry a valid HMAC")
        return head

    def advance(self, entry_id: int, entry_hash: str) -> None:
        """Anchor entry ``entry_id`` unless a later one already is (atomic replace, 0600).
        Raises AnchorError, writing nothing, when the current head does not verify: the
        evidence stays until someone looks at it."""
        self._dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self._dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            current = self.read()  # AnchorError for a missing, damaged or forged head: left for verify
            if current is not None and current.id >= entry_id:
                return
            doc = {"id": entry_id, "hash": entry_hash, "mac": self._mac(entry_id, entry_hash)}
            tmp = self._dir / f".{HEAD_FILE}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(doc))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.head_path)
        finally:
            os.close(lock_fd)  # releases the lock
