"""Server-side browser sessions.

The session cookie (signed by Tornado with the cookie secret) carries a random 256-bit
session id; the database keeps only its SHA-256 with the user and an expiry. Logging out
deletes the row, and so do a password change, a role change and disabling the user, so a
copied cookie stops working at that moment rather than when its signature expires.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Callable

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.auth import revocation
from console.auth.roles import Principal
from console.storage.database import execute_dml
from console.storage.models import User, UserSession


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def apps_tuple(raw: str | None) -> tuple[str, ...] | None:
    """A stored JSON app allow-list as a tuple (None: every app)."""
    return None if raw is None else tuple(orjson.loads(raw))


class SessionService:
    """Create, resolve and end sessions inside the caller's transaction.
    ``lifetime_s``: seconds from login until a session expires."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self._lifetime = lifetime_s
        self._clock = clock

    def create(self, session: Session, user_id: int, source: str) -> str:
        """A new session for ``user_id``; returns the id to put in the cookie. Expired
        sessions of every user are pruned on the way."""
        now = self._clock()
        session.execute(delete(UserSession).where(UserSession.expires_at <= now))
        session_id = secrets.token_urlsafe(32)
        session.add(UserSession(id_hash=_digest(session_id), user_id=user_id, created_at=now,
                                expires_at=now + self._lifetime, last_seen_at=now, source=source[:255]))
        session.flush()
        return session_id

    def principal(self, session: Session, session_id: str) -> Principal | None:
        """The principal of a live session of an enabled user, else None."""
        row = session.execute(
            select(UserSession, User).join(User, User.id == UserSession.user_id)
            .where(UserSession.id_hash == _digest(session_id))).first()
        if row is None:
            return None
        sess, user = row
        if sess.expires_at <= self._clock() or user.disabled:
            return None
        return Principal("user", user.username, user.role, apps=apps_tuple(user.apps), owner=user.username)

    def destroy(self, session: Session, session_id: str) -> bool:
        """End one session (logout); True when it existed. Sockets opened with it close."""
        ended = execute_dml(session, delete(UserSession).where(UserSession.id_hash == _digest(session_id))).rowcount > 0
        if ended:
            revocation.bump(session)
        return ended

    def destroy_user(self, session: Session, user_id: int) -> int:
        """End every session of a user; returns how many."""
        return execute_dml(session, delete(UserSession).where(UserSession.user_id == user_id)).rowcount
