"""Append-only audit log with a SHA-256 hash chain.

Each entry's ``hash`` is ``sha256(prev_hash + canonical JSON of the entry's fields)``;
the first entry chains from 64 zeros. Editing, deleting or reordering any entry breaks
every later hash, which ``verify`` reports. ``record`` runs inside the caller's
transaction, so when the audit entry cannot be written the audited action is rolled
back with it. With a ``HeadAnchor`` (console/audit/anchor.py) the newest committed entry
is also anchored outside the database, so ``verify`` reports a truncated tail too.
"""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from console.audit.anchor import AnchorError, HeadAnchor
from console.storage.database import Database, bound
from console.storage.models import AuditEntry

GENESIS = "0" * 64
log = logging.getLogger(__name__)
_PENDING_HEAD = "audit_head"  # Session.info key: (id, hash) of the newest entry of the transaction


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    payload = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    reason: str | None = None
    anchored_id: int | None = None  # the entry the external head anchor names (None: none yet)


class AuditService:
    """``anchor``: where the head is anchored outside the database (None: nowhere). Head
    writes (an fsync each, ~10 ms on a disk) run on this service's own thread, in commit
    order, so an audited action never waits for them; ``verify`` and ``close`` wait for
    the writes already queued. ``aentries`` and ``averify`` run their sync twins on a
    reader of ``db``."""

    def __init__(self, clock: Callable[[], float] = time.time, anchor: HeadAnchor | None = None,
                 db: Database | None = None) -> None:
        self.db = db
        self._clock = clock
        self._anchor = anchor
        self._anchoring = ThreadPoolExecutor(1, thread_name_prefix="audit-anchor") if anchor else None

    def bind(self, sessions: sessionmaker, session: Session) -> None:
        """Anchor the head after every commit of ``sessions`` that appended entries; on the
        first start with an anchor, anchor the current tail (``session``: a transaction to
        read it in)."""
        if self._anchor is None:
            return
        event.listen(sessions, "after_commit", self._after_commit)
        if not self._anchor.key_path.exists() and not self._anchor.head_path.exists():
            last = session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).scalar_one_or_none()
            if last is not None:
                self._anchor.advance(last.id, last.hash)

    def _after_commit(self, session: Session) -> None:
        pending = session.info.pop(_PENDING_HEAD, None)
        if pending is not None and self._anchoring is not None and self._anchor is not None:
            self._anchoring.submit(self._advance, self._anchor, *pending)

    @staticmethod
    def _advance(anchor: HeadAnchor, entry_id: int, entry_hash: str) -> None:
        try:
            anchor.advance(entry_id, entry_hash)
        except (OSError, ValueError) as exc:  # the action is committed; verify will show the lag
            log.error("cannot anchor audit entry %s in %s: %s", entry_id, anchor.head_path, exc)

    def flush(self) -> None:
        """Wait until the head writes queued so far are done."""
        if self._anchoring is not None:
            self._anchoring.submit(lambda: None).result()

    def close(self) -> None:
        """Finish the queued head writes and stop the anchoring thread."""
        if self._anchoring is not None:
            self._anchoring.shutdown(wait=True)

    def record(self, session: Session, actor: str, action: str, target: str = "",
               details: dict | None = None, source: str = "") -> AuditEntry:
        """Append one entry in the caller's transaction. ``actor`` is who (``user:alice``,
        ``api:ci``), ``action`` a dotted verb (``deploy.create``, ``login.failure``),
        ``source`` where from (an IP address or ``cli``). Raises on any database error."""
        # Serialise writers on the chain's tail: the last row is read under a lock where
        # the database has one (PostgreSQL); SQLite has a single writer anyway.
        last = session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)
                               .with_for_update()).scalar_one_or_none()
        prev = last.hash if last else GENESIS
        fields = {"ts": self._clock(), "actor": actor, "action": action, "target": target,
                  "details": details or {}, "source": source}
        entry = AuditEntry(ts=fields["ts"], actor=actor, action=action, target=target,
                           details=orjson.dumps(fields["details"], option=orjson.OPT_SORT_KEYS).decode(),
                           source=source, prev_hash=prev, hash=entry_hash(prev, fields))
        session.add(entry)
        session.flush()
        session.info[_PENDING_HEAD] = (entry.id, entry.hash)
        return entry

    def entries(self, session: Session, limit: int = 100, before_id: int | None = None) -> list[dict]:
        """Newest first: ``[{"id", "ts" (Unix s), "actor", "action", "target", "details",
        "source", "hash"}]``."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before_id is not None:
            stmt = stmt.where(AuditEntry.id < before_id)
        return [{"id": e.id, "ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                 "details": orjson.loads(e.details), "source": e.source, "hash": e.hash}
                for e in session.execute(stmt).scalars()]

    async def aentries(self, limit: int = 100, before_id: int | None = None) -> list[dict]:
        return await bound(self.db, self).read(self.entries, limit, before_id)

    async def averify(self) -> VerifyResult:
        return await bound(self.db, self).read(self.verify)

    def verify(self, session: Session) -> VerifyResult:
        """Walk the whole chain from the first entry; report the first entry that breaks it,
        then check that the anchored head (if any) is in the chain: a missing head means
        the newest entries were deleted."""
        self.flush()
        try:
            head = self._anchor.read() if self._anchor is not None else None
        except AnchorError as exc:
            return VerifyResult(False, 0, None, str(exc))
        anchored_id = head.id if head else None
        prev = GENESIS
        count = 0
        found = False
        for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
            count += 1
            fields = {"ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                      "details": orjson.loads(e.details), "source": e.source}
            if e.prev_hash != prev:
                return VerifyResult(False, count, e.id, "prev_hash does not match the previous entry", anchored_id)
            if entry_hash(prev, fields) != e.hash:
                return VerifyResult(False, count, e.id, "entry content does not match its hash", anchored_id)
            if head is not None and e.id == head.id:
                if e.hash != head.hash:
                    return VerifyResult(False, count, e.id, "entry is not the one the head anchor names "
                                                            "(entries were deleted and others written since)",
                                        anchored_id)
                found = True
            prev = e.hash
        if head is not None and not found:
            return VerifyResult(False, count, head.id, f"entry {head.id}, the anchored head, is missing: the newest "
                                                       f"entries were deleted ({count} remain)", anchored_id)
        return VerifyResult(True, count, anchored_id=anchored_id)
