"""The revocation generation: one counter row (``auth_state``, id 1) bumped in the same
transaction as every change that takes credentials away (a token revoked, a user
disabled, demoted or given a new password, a logout).

Every console process caches token lookups and keeps live sockets open; each reads this
one indexed row at most every ``CHECK_INTERVAL_S`` and, when it moved, drops its cached
lookups and rechecks its sockets. So a revocation made anywhere on the same database
(another replica, the ``fleetdeck`` CLI writing directly) takes effect within about a
second, at the cost of one primary-key SELECT per interval per process.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from console.storage.models import AuthState

CHECK_INTERVAL_S = 0.25  # how stale a process's view of the generation may be (seconds)
BUMPED = "revocation_bumped"  # Session.info key: this transaction took credentials away


def bump(session: Session) -> None:
    """Advance the generation in the caller's transaction (and mark the session, so this
    process's live sockets are rechecked as soon as it commits)."""
    session.info[BUMPED] = True
    session.execute(update(AuthState).where(AuthState.id == 1).values(generation=AuthState.generation + 1))


def current(session: Session) -> int:
    """The generation now (0 on a database that never revoked anything)."""
    return session.execute(select(AuthState.generation).where(AuthState.id == 1)).scalar_one_or_none() or 0
