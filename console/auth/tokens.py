"""Agent and API tokens: created once, shown once, stored as SHA-256 digests.

Tokens are 256-bit random strings, so a fast digest is enough to store them (a slow
password hash protects low-entropy secrets; these have none to protect). Lookups are
cached per token for ``cache_seconds`` so the ingest hot path does not hit the
database on every request; a revoked token stops working within that time.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from console.auth.roles import USER_ROLES, Principal
from console.storage.models import Token

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
AGENT_PREFIX = "fda_"
API_PREFIX = "fdp_"


class TokenError(ValueError):
    """A token request is invalid (unknown role, bad host name)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class _Cached:
    principal: Principal | None
    token_id: int | None
    until: float


class TokenService:
    """Create, authenticate and revoke tokens. Methods taking a ``session`` run inside the
    caller's transaction; ``authenticate`` opens its own short one."""

    def __init__(self, sessions: Callable[[], Session], clock: Callable[[], float] = time.time,
                 cache_seconds: float = 30.0) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}

    def create_agent_token(self, session: Session, host: str) -> str:
        """A new agent token bound to ``host``; returns the plaintext (shown once)."""
        if not HOST_NAME_RE.match(host):
            raise TokenError(f"invalid host name {host!r}: letters, digits, '.', '_' and '-' only")
        return self._create(session, kind="agent", name=f"agent:{host}", host=host, role=None,
                            prefix=AGENT_PREFIX, expires_at=None)

    def create_api_token(self, session: Session, name: str, role: str,
                         expires_in_days: float | None = None) -> str:
        """A new API token capped at ``role``; returns the plaintext (shown once)."""
        if role not in USER_ROLES:
            raise TokenError(f"unknown role {role!r}; choose one of {', '.join(USER_ROLES)}")
        if not name or len(name) > 128:
            raise TokenError("a token name of 1 to 128 characters is required")
        expires_at = self._clock() + expires_in_days * 86400 if expires_in_days else None
        return self._create(session, kind="api", name=name, host=None, role=role,
                            prefix=API_PREFIX, expires_at=expires_at)

    def _create(self, session: Session, *, kind: str, name: str, host: str | None,
                role: str | None, prefix: str, expires_at: float | None) -> str:
        plaintext = prefix + secrets.token_urlsafe(32)
        session.add(Token(kind=kind, name=name, host_name=host, role=role,
                          token_hash=digest(plaintext), created_at=self._clock(),
                          expires_at=expires_at))
        session.flush()
        return plaintext

    def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a presented token, or None when unknown, revoked or expired.
        Blocking (a short indexed SELECT on a cache miss)."""
        key = digest(plaintext)
        now = self._clock()
        hit = self._cache.get(key)
        if hit is None or hit.until < now:
            hit = self._load(key, now)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit.principal

    def _load(self, key: str, now: float) -> _Cached:
        with self._sessions() as session, session.begin():
            row = session.execute(select(Token).where(Token.token_hash == key)).scalar_one_or_none()
            if row is None or row.revoked_at is not None:
                return _Cached(None, None, now + self._cache_seconds)
            if row.expires_at is not None and row.expires_at <= now:
                return _Cached(None, row.id, now + self._cache_seconds)
            session.execute(update(Token).where(Token.id == row.id).values(last_used_at=now))
            until = now + self._cache_seconds
            if row.expires_at is not None:
                until = min(until, row.expires_at)
            if row.kind == "agent":
                principal = Principal("agent", row.name, "agent", host=row.host_name)
            else:
                principal = Principal("api", row.name, row.role or "viewer")
            return _Cached(principal, row.id, until)

    def forget(self) -> None:
        """Drop cached lookups (after a revocation in this process)."""
        self._cache.clear()

    def find_agent_token_host(self, session: Session, plaintext: str) -> str | None:
        """The host a still-valid agent token is bound to, or None."""
        row = session.execute(select(Token).where(Token.token_hash == digest(plaintext))).scalar_one_or_none()
        if row is None or row.kind != "agent" or row.revoked_at is not None:
            return None
        return row.host_name
