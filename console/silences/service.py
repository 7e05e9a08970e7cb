"""Silences as Alertmanager keeps them (prometheus/alertmanager ``silence/silence.go``):
a UUID, label matchers, ``startsAt``/``endsAt``, who made it and why. A silence is
``pending`` before ``startsAt``, ``active`` until ``endsAt``, then ``expired``; an active
silence mutes every alert whose labels all its matchers match, with the reason
``silence:<id>`` (console/notify/muting.py).

Silences live in the ``silences`` table and, for the muter (called for every alert on
every evaluation and dispatch round), in memory: the table is read once at start and
every change is written to the table first, then to memory, and the other consoles of
the database are told to re-read the table (console/cluster/shared.py, name
``silences``), so a silence made on any console mutes on every one within a second.
Expired silences are kept
``retention_s`` (Alertmanager's default 120 h) after they ended, then deleted.
"""
from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from threading import Lock

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.cluster.shared import SharedState
from console.errors import InvalidInput, NotFound
from console.i18n import tx
from console.matchers import Matcher, matches_all
from console.storage.models import SilenceRow

log = logging.getLogger(__name__)

PENDING, ACTIVE, EXPIRED = "pending", "active", "expired"
# Alertmanager's --data.retention default.
RETENTION_S = 120 * 3600
GC_INTERVAL_S = 15 * 60
# Listing order of api/v2 SortSilences: active, then pending, then expired.
_STATE_ORDER = {ACTIVE: 0, PENDING: 1, EXPIRED: 2}


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    updated_at: float
    created_by: str
    comment: str
    annotations: Mapping[str, str] = field(default_factory=dict)

    def state(self, now: float) -> str:
        """``pending`` before ``starts_at``, ``expired`` after ``ends_at``, else ``active``."""
        if now < self.starts_at:
            return PENDING
        if now > self.ends_at:
            return EXPIRED
        return ACTIVE

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.state(now) == ACTIVE and matches_all(self.matchers, labels)


def validate(matchers: tuple[Matcher, ...], starts_at: float, ends_at: float) -> None:
    """Alertmanager's ``validateSilence``: at least one matcher, not all of which match
    the empty string (a silence must not mute every alert), and an end not before the
    start. Raises InvalidInput."""
    if not matchers:
        raise InvalidInput(tx("a silence needs at least one matcher"), {"field": "matchers"})
    if all(m.matches("") for m in matchers):
        raise InvalidInput(tx("at least one matcher must not match the empty string"), {"field": "matchers"})
    if ends_at < starts_at:
        raise InvalidInput(tx("end time must not be before start time"), {"field": "endsAt"})


class SilenceService:
    """Owns the silences. Reads (``get``, ``list``, ``muted_by``) answer from memory and
    are thread-safe; ``set`` and ``expire`` are async, write through the database writer
    and are serialised among themselves. ``muted_by`` makes this service a Muter."""

    def __init__(self, db, clock: Callable[[], float], retention_s: float = RETENTION_S,  # noqa: ANN001
                 audit=None) -> None:  # noqa: ANN001 - Database, AuditService
        self.db = db
        self.audit = audit
        self.clock = clock
        self.retention_s = retention_s
        self._silences: dict[str, Silence] = {}
        # The same silences by id, rebuilt under the lock after each change and read
        # without it by muted_by (called for every alert on every round).
        self._ordered: tuple[Silence, ...] = ()
        self._lock = Lock()
        self._writing: asyncio.Lock | None = None
        self._gc_task: asyncio.Task | None = None
        # Tells the other consoles of the database about a change; set by Services.
        self.shared: SharedState | None = None

    # -- loading and retention ------------------------------------------------------------
    def load(self, session: Session) -> int:
        """Read every stored silence into memory; returns how many."""
        loaded = {}
        for row in session.scalars(select(SilenceRow)):
            loaded[row.id] = _from_row(row)
        with self._lock:
            self._silences = loaded
            self._reorder()
        return len(loaded)

    async def reread(self) -> int:
        """Read the table again (another console changed it); returns how many. Serialised
        with this console's own changes, so a re-read never undoes one in memory."""
        async with self._guard():
            return await self.db.read(self.load)

    def _changed(self) -> None:
        if self.shared is not None:
            self.shared.changed("silences")

    def _reorder(self) -> None:
        """Call holding the lock."""
        self._ordered = tuple(sorted(self._silences.values(), key=lambda s: s.id))

    def start(self) -> None:
        """Delete silences past their retention now and every ``GC_INTERVAL_S``. Call on the IOLoop."""
        self._gc_task = asyncio.ensure_future(self._gc_forever())

    def close(self) -> None:
        if self._gc_task is not None:
            self._gc_task.cancel()

    async def _gc_forever(self) -> None:
        while True:
            try:
                await self.gc()
            except Exception:  # noqa: BLE001 - a failed round is retried next interval
                log.exception("deleting silences past their retention failed")
            await asyncio.sleep(GC_INTERVAL_S)

    async def gc(self) -> int:
        """Delete silences that ended more than ``retention_s`` ago; returns how many."""
        cutoff = self.clock() - self.retention_s
        async with self._guard():
            await self.db.write(lambda s: s.execute(delete(SilenceRow).where(SilenceRow.ends_at < cutoff)))
            with self._lock:
                gone = [sid for sid, sil in self._silences.items() if sil.ends_at < cutoff]
                for sid in gone:
                    del self._silences[sid]
                self._reorder()
        return len(gone)

    def _guard(self) -> asyncio.Lock:
        if self._writing is None:
            self._writing = asyncio.Lock()
        return self._writing

    # -- reads ------------------------------------------------------------------------------
    def get(self, silence_id: str) -> Silence:
        """Raises NotFound."""
        with self._lock:
            sil = self._silences.get(silence_id)
        if sil is None:
            raise NotFound(tx("no silence {id}", id=silence_id), {"id": silence_id})
        return sil

    def list(self, now: float | None = None) -> list[Silence]:
        """Every silence kept, in Alertmanager's order: active by end, pending by start,
        expired by end, latest first."""
        now = self.clock() if now is None else now
        with self._lock:
            sils = list(self._silences.values())

        def key(s: Silence) -> tuple:
            state = s.state(now)
            when = s.starts_at if state == PENDING else -s.ends_at if state == EXPIRED else s.ends_at
            return _STATE_ORDER[state], when, s.id
        return sorted(sils, key=key)

    def muted_by(self, labels: Mapping[str, str], now: float) -> builtins.list[str]:
        """``["silence:<id>", ...]`` for the active silences matching ``labels`` (the Muter protocol)."""
        return [f"silence:{s.id}" for s in self._ordered if s.mutes(labels, now)]

    # -- writes ---------------------------------------------------------------------------
    async def set(self, matchers: tuple[Matcher, ...], starts_at: float | None, ends_at: float,
                  created_by: str, comment: str, silence_id: str | None = None,
                  actor: str = "", source: str = "", annotations: Mapping[str, str] | None = None) -> str:
        """Create a silence, or update the one named ``silence_id``; returns the id of the
        silence that now holds these settings (Alertmanager ``Silences.Set``):

        - ``starts_at`` None means now;
        - an update of a pending silence, or of an active one keeping its matchers and
          start and ending in the future, changes it in place (same id);
        - any other update creates a new silence (a new id, starting no earlier than now)
          and expires the old one if it was not yet expired, leaving its history.

        Raises InvalidInput (see :func:`validate`), NotFound for an unknown ``silence_id``."""
        async with self._guard():
            now = self.clock()
            starts_at = now if starts_at is None else starts_at
            validate(matchers, starts_at, ends_at)
            new = Silence("", tuple(matchers), starts_at, ends_at, now, created_by, comment, dict(annotations or {}))
            prev = None
            if silence_id:
                with self._lock:
                    prev = self._silences.get(silence_id)
                if prev is None:
                    raise NotFound(tx("no silence {id}", id=silence_id), {"id": silence_id})
            if prev is not None and _can_update(prev, new, now):
                new = replace(new, id=prev.id)
                changed = [new]
            else:
                new = replace(new, id=str(uuid.uuid4()), starts_at=max(starts_at, now))
                changed = [new]
                if prev is not None and prev.state(now) != EXPIRED:
                    changed.insert(0, _expired(prev, now))
            verb = "silence.update" if prev is not None and prev.id == new.id else "silence.create"
            details = {"matchers": [str(m) for m in new.matchers], "starts_at": new.starts_at,
                       "ends_at": new.ends_at, "comment": new.comment}
            if prev is not None and prev.id != new.id:
                details["replaces"] = prev.id
            await self.db.write(self._store, changed, (actor, verb, new.id, details, source))
            with self._lock:
                for sil in changed:
                    self._silences[sil.id] = sil
                self._reorder()
            self._changed()
            return new.id

    async def expire(self, silence_id: str, actor: str = "", source: str = "") -> Silence:
        """End a silence now (a pending one starts and ends now); an expired one is left
        as it is. Returns the silence. Raises NotFound."""
        async with self._guard():
            sil = self.get(silence_id)
            now = self.clock()
            if sil.state(now) == EXPIRED:
                return sil
            sil = _expired(sil, now)
            await self.db.write(self._store, [sil], (actor, "silence.expire", sil.id, {}, source))
            with self._lock:
                self._silences[sil.id] = sil
                self._reorder()
            self._changed()
            return sil

    def _store(self, session: Session, sils: builtins.list[Silence], entry: tuple) -> None:
        """Write ``sils`` and, when there is an actor, the audit entry ``(actor, action,
        silence id, details, source)`` in one transaction."""
        for sil in sils:
            row = session.get(SilenceRow, sil.id) or SilenceRow(id=sil.id)
            row.matchers = orjson.dumps([m.to_json() for m in sil.matchers]).decode()
            row.starts_at, row.ends_at, row.updated_at = sil.starts_at, sil.ends_at, sil.updated_at
            row.created_by, row.comment = sil.created_by, sil.comment
            row.annotations = orjson.dumps(dict(sil.annotations)).decode()
            session.add(row)
        session.flush()
        actor, action, silence_id, details, source = entry
        if self.audit is not None and actor:
            self.audit.record(session, actor, action, f"silence:{silence_id}", details, source)


def _expired(sil: Silence, now: float) -> Silence:
    """Alertmanager ``expire``: an active silence ends now; a pending one starts and ends now."""
    if sil.state(now) == PENDING:
        return replace(sil, starts_at=now, ends_at=now, updated_at=now)
    return replace(sil, ends_at=now, updated_at=now)


def _can_update(prev: Silence, new: Silence, now: float) -> bool:
    """Alertmanager ``canUpdate``: same matchers, and the old silence is pending and the
    new one starts in the future, or it is active, keeps its start (to the second) and
    ends in the future."""
    if prev.matchers != new.matchers:
        return False
    state = prev.state(now)
    if state == ACTIVE:
        return int(prev.starts_at) == int(new.starts_at) and new.ends_at >= now
    if state == PENDING:
        return new.starts_at >= now
    return False


def _from_row(row: SilenceRow) -> Silence:
    matchers = tuple(Matcher.from_json(m) for m in orjson.loads(row.matchers))
    return Silence(row.id, matchers, row.starts_at, row.ends_at, row.updated_at, row.created_by, row.comment,
                   orjson.loads(row.annotations))
