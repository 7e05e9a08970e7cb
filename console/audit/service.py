"""Append-only audit log with a SHA-256 hash chain.

Each entry's ``hash`` is ``sha256(prev_hash + canonical JSON of the entry's fields)``;
the first entry chains from 64 zeros. Editing, deleting or reordering any entry breaks
every later hash, which ``verify`` reports. ``record`` runs inside the caller's
transaction, so when the audit entry cannot be written the audited action is rolled
back with it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.storage.models import AuditEntry

GENESIS = "0" * 64


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    payload = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    reason: str | None = None


class AuditService:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

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

    def verify(self, session: Session) -> VerifyResult:
        """Walk the whole chain from the first entry; report the first entry that breaks it."""
        prev = GENESIS
        count = 0
        for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars():
            count += 1
            fields = {"ts": e.ts, "actor": e.actor, "action": e.action, "target": e.target,
                      "details": orjson.loads(e.details), "source": e.source}
            if e.prev_hash != prev:
                return VerifyResult(False, count, e.id, "prev_hash does not match the previous entry")
            if entry_hash(prev, fields) != e.hash:
                return VerifyResult(False, count, e.id, "entry content does not match its hash")
            prev = e.hash
        return VerifyResult(True, count)
