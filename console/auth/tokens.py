"""Agent and API tokens: created once, shown once, stored as SHA-256 digests.

Tokens are 256-bit random strings, so a fast digest is enough to store them (a slow
password hash protects low-entropy secrets; these have none to protect). Lookups are
cached per token for ``cache_seconds`` so the ingest hot path does not hit the
database on every request. Every lookup first checks the revocation generation
(console/auth/revocation.py, at most every 0.25 s), so a token revoked by any process on
the same database (the CLI included) stops working within about a second.

``last_used_at`` is written on a lookup only when the stored time is
:data:`LAST_USED_RESOLUTION_S` old or more, so it may lag by that much plus
``cache_seconds``. Most lookups are then read-only: a lookup runs on the IOLoop, and on
SQLite its UPDATE waited for the write lock behind the ingest writers (tens of ms each,
every ``cache_seconds`` per agent).

An API or enrolment token belongs to its ``owner`` (a user name): it stops working when
that user is disabled (and is revoked then), and never outranks the user's current role.
"""
from __future__ import annotations

import builtins
import hashlib
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from console.auth import revocation
from console.auth.roles import USER_ROLES, Principal, lower_role
from console.auth.sessions import apps_tuple
from console.auth.users import UserError, encode_apps
from console.errors import Forbidden, InvalidInput, NotFound
from console.i18n import tx
from console.storage.database import execute_dml
from console.storage.models import Host, Token, User

HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
AGENT_PREFIX = "fda_"
API_PREFIX = "fdp_"
ENROL_PREFIX = "fde_"
MAX_ENROL_SECONDS = 30 * 86400
LAST_USED_RESOLUTION_S = 300.0  # how stale a token's stored ``last_used_at`` may be (seconds)


class TokenError(InvalidInput):
    """A token request is invalid (unknown role, bad host name): 400 ``invalid_token_request``."""

    default_code = "invalid_token_request"


class TokenNotFound(NotFound, TokenError):
    """No token with that id (404)."""

    default_code = "token_not_found"


class EnrolError(Forbidden):
    """An enrolment was refused (403): the enrolment token is unknown, used, expired, revoked
    or bound to another host (one message for all, so a caller learns nothing more)."""

    default_code = "enrolment_refused"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class _Cached:
    principal: Principal | None
    token_id: int | None
    until: float
    generation: int | None = None  # the revocation generation it was loaded under
    refused_host: str | None = None  # an agent token that no longer counts: the host it was bound to


class TokenService:
    """Create, authenticate and revoke tokens. Methods taking a ``session`` run inside the
    caller's transaction; ``authenticate`` opens its own short one."""

    def __init__(self, sessions: Callable[[], Session], clock: Callable[[], float] = time.time,
                 cache_seconds: float = 30.0) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}
        self._generation: int | None = None  # the revocation generation the cache was filled under
        self._generation_checked = -math.inf  # time.monotonic() of the last check
        # host -> (last refusal, refusals): agents still presenting a revoked or expired
        # token, so the hosts view can say why a host went quiet. Reader threads write it.
        self._refusals: dict[str, tuple[float, int]] = {}
        self._refusals_lock = threading.Lock()

    def create_agent_token(self, session: Session, host: str, created_by: str | None = None) -> str:
        """A new agent token bound to ``host``; returns the plaintext (shown once)."""
        if not isinstance(host, str) or not HOST_NAME_RE.fullmatch(host):
            raise TokenError(tx("invalid host name {host}: letters, digits, '.', '_' and '-' only", host=repr(host)))
        return self._create(session, kind="agent", name=f"agent:{host}", host=host, role=None,
                            prefix=AGENT_PREFIX, expires_at=None, created_by=created_by)

    def create_api_token(self, session: Session, name: str, role: str,
                         expires_in_days: float | None = None, *, apps: list[str] | None = None,
                         created_by: str | None = None, owner: str | None = None) -> str:
        """A new API token capped at ``role`` (a deployer token optionally limited to
        ``apps``), expiring after ``expires_in_days`` days (None: never), acting for the
        user ``owner`` (None: the operator's); returns the plaintext (shown once). Raises
        TokenError."""
        if role not in USER_ROLES:
            raise TokenError(tx("unknown role {role}; choose one of {roles}", role=repr(role), roles=", ".join(USER_ROLES)))
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            raise TokenError(tx("a token name of 1 to 128 characters is required"))
        if expires_in_days is not None and not 0 < expires_in_days <= 3650:
            raise TokenError(tx("expiry must be between 0 and 3650 days"))
        try:
            encoded_apps = encode_apps(role, apps)
        except UserError as exc:
            raise TokenError(exc.message) from None
        expires_at = self._clock() + expires_in_days * 86400 if expires_in_days else None
        return self._create(session, kind="api", name=name, host=None, role=role, prefix=API_PREFIX,
                            expires_at=expires_at, created_by=created_by, apps=encoded_apps, owner=owner)

    def create_enrol_token(self, session: Session, expires_in_s: float, host: str | None = None,
                           created_by: str | None = None, owner: str | None = None) -> tuple[int, str]:
        """A one-time enrolment token valid for ``expires_in_s`` seconds (at most 30 days),
        optionally only for ``host``; returns (id, plaintext). Raises TokenError."""
        if not 0 < expires_in_s <= MAX_ENROL_SECONDS:
            raise TokenError(tx("an enrolment token expires within 1 s to {most} s", most=MAX_ENROL_SECONDS))
        if host is not None and (not isinstance(host, str) or not HOST_NAME_RE.fullmatch(host)):
            raise TokenError(tx("invalid host name {host}: letters, digits, '.', '_' and '-' only", host=repr(host)))
        plaintext = self._create(session, kind="enrol", name=f"enrol:{host or '*'}", host=host, role=None,
                                 prefix=ENROL_PREFIX, expires_at=self._clock() + expires_in_s,
                                 created_by=created_by, owner=owner)
        row_id = session.execute(select(Token.id).where(Token.token_hash == digest(plaintext))).scalar_one()
        return row_id, plaintext

    def enrol(self, session: Session, enrol_token: str, host: str) -> tuple[int, str]:
        """Spend a one-time enrolment token on a new agent token bound to ``host``; returns
        (enrolment token id, agent token plaintext). Raises TokenError for a bad host name
        and EnrolError when the enrolment token cannot be used, or is not bound to ``host``
        while ``host`` is already known (has pushed, or holds a live agent token)."""
        if not isinstance(host, str) or not HOST_NAME_RE.fullmatch(host):
            raise TokenError(tx("invalid host name {host}: letters, digits, '.', '_' and '-' only", host=repr(host)),
                             code="invalid_host")
        now = self._clock()
        row = session.execute(select(Token).where(Token.token_hash == digest(enrol_token))
                              .with_for_update()).scalar_one_or_none()
        if (row is None or row.kind != "enrol" or row.revoked_at is not None
                or (row.expires_at is not None and row.expires_at <= now)
                or (row.host_name is not None and row.host_name != host)):
            raise EnrolError(tx("the enrolment token is invalid, used, expired or bound to another host"))
        if row.host_name is None and self._host_known(session, host):
            # Taking over a host's identity (its metrics, logs and agent token) needs an
            # enrolment token issued for that host by name; it is not spent here.
            raise EnrolError(tx("host {host} is already enrolled; enrolling it again needs an enrolment token "
                                "bound to it (fleetdeck token create --enrol --host {name})", host=repr(host), name=host))
        # Spent in the same transaction that creates the agent token: one use only.
        spent = execute_dml(session, update(Token).where(Token.id == row.id, Token.revoked_at.is_(None))
                                .values(revoked_at=now, last_used_at=now)).rowcount
        if spent != 1:
            raise EnrolError(tx("the enrolment token is invalid, used, expired or bound to another host"))
        return row.id, self.create_agent_token(session, host, created_by=f"enrol:{row.id}")

    @staticmethod
    def _host_known(session: Session, host: str) -> bool:
        """Whether ``host`` has pushed data or holds a live agent token."""
        if session.execute(select(Host.id).where(Host.name == host)).first() is not None:
            return True
        return session.execute(select(Token.id).where(Token.kind == "agent", Token.host_name == host,
                                                      Token.revoked_at.is_(None))).first() is not None

    def list(self, session: Session, include_revoked: bool = False) -> builtins.list[dict]:
        """Token metadata, newest first, never a secret: ``[{"id", "kind" (api|agent|enrol),
        "name", "role", "host", "apps", "created_at", "expires_at", "last_used_at",
        "revoked_at" (Unix s or null), "created_by"}]``."""
        stmt = select(Token).order_by(Token.id.desc())
        if not include_revoked:
            stmt = stmt.where(Token.revoked_at.is_(None))
        return [self.describe(t) for t in session.execute(stmt).scalars()]

    def revoke(self, session: Session, token_id: int) -> dict:
        """Revoke a token (idempotent); returns its metadata. Raises TokenNotFound. The
        lookup cache of this process is dropped; other processes notice within
        ``cache_seconds``."""
        row = session.get(Token, token_id)
        if row is None:
            raise TokenNotFound(tx("no token with id {id}", id=token_id))
        if row.revoked_at is None:
            row.revoked_at = self._clock()
            revocation.bump(session)
        session.flush()
        self.forget()
        return self.describe(row)

    def revoke_owned(self, session: Session, owner: str) -> builtins.list[int]:
        """Revoke every live token of user ``owner`` (when the user is disabled); returns
        their ids."""
        ids = list(session.execute(select(Token.id).where(Token.owner == owner, Token.revoked_at.is_(None))
                                   .order_by(Token.id)).scalars())
        if ids:
            session.execute(update(Token).where(Token.id.in_(ids)).values(revoked_at=self._clock()))
            revocation.bump(session)
            self.forget()
        return ids

    @staticmethod
    def describe(row: Token) -> dict:
        apps = apps_tuple(row.apps)
        return {"id": row.id, "kind": row.kind, "name": row.name, "role": row.role, "host": row.host_name,
                "apps": None if apps is None else list(apps), "created_at": row.created_at,
                "expires_at": row.expires_at, "last_used_at": row.last_used_at,
                "revoked_at": row.revoked_at, "created_by": row.created_by, "owner": row.owner}

    def _create(self, session: Session, *, kind: str, name: str, host: str | None,
                role: str | None, prefix: str, expires_at: float | None,
                created_by: str | None = None, apps: str | None = None, owner: str | None = None) -> str:
        plaintext = prefix + secrets.token_urlsafe(32)
        session.add(Token(kind=kind, name=name, host_name=host, role=role,
                          token_hash=digest(plaintext), created_at=self._clock(),
                          expires_at=expires_at, created_by=created_by, apps=apps, owner=owner))
        session.flush()
        return plaintext

    def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a presented token, or None when unknown, revoked or expired.
        Blocking (a short indexed SELECT on a cache miss)."""
        key = digest(plaintext)
        self._check_generation()
        now = self._clock()
        hit = self._cache.get(key)
        generation = self._generation
        if hit is None or hit.until < now or hit.generation != generation:
            hit = self._load(key, now)
            hit.generation = generation
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = hit
        if hit.principal is None and hit.refused_host is not None:
            with self._refusals_lock:
                _, count = self._refusals.get(hit.refused_host, (0.0, 0))
                self._refusals[hit.refused_host] = (now, count + 1)
        return hit.principal

    def agent_refusals(self) -> dict[str, tuple[float, int]]:
        """``{host: (last refusal, Unix s; refusals since this console started)}`` for
        agents whose revoked or expired token was presented to this console."""
        with self._refusals_lock:
            return dict(self._refusals)

    def _check_generation(self) -> None:
        """Drop the cache when the revocation generation moved (read at most every
        ``revocation.CHECK_INTERVAL_S``; concurrent readers may both read it, harmlessly)."""
        tick = time.monotonic()
        if tick - self._generation_checked < revocation.CHECK_INTERVAL_S:
            return
        self._generation_checked = tick
        with self._sessions() as session, session.begin():
            generation = revocation.current(session)
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation

    def _load(self, key: str, now: float) -> _Cached:
        with self._sessions() as session, session.begin():
            row = session.execute(select(Token).where(Token.token_hash == key)).scalar_one_or_none()
            refused_host = row.host_name if row is not None and row.kind == "agent" else None
            if row is None or row.revoked_at is not None:
                return _Cached(None, None, now + self._cache_seconds, refused_host=refused_host)
            owner = None
            if row.owner is not None:
                owner = session.execute(select(User).where(User.username == row.owner)).scalar_one_or_none()
                if owner is None or owner.disabled:  # the owner left: so did the token
                    return _Cached(None, row.id, now + self._cache_seconds)
            if row.expires_at is not None and row.expires_at <= now:
                return _Cached(None, row.id, now + self._cache_seconds, refused_host=refused_host)
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION_S:
                session.execute(update(Token).where(Token.id == row.id).values(last_used_at=now))
            until = now + self._cache_seconds
            if row.expires_at is not None:
                until = min(until, row.expires_at)
            if row.kind == "agent":
                principal = Principal("agent", row.name, "agent", host=row.host_name)
            elif row.kind == "api":
                role, apps = row.role or "viewer", apps_tuple(row.apps)
                if owner is not None:
                    role = lower_role(role, owner.role)
                    owner_apps = apps_tuple(owner.apps) if owner.role == "deployer" else None
                    if owner_apps is not None:
                        apps = owner_apps if apps is None else tuple(a for a in apps if a in owner_apps)
                principal = Principal("api", row.name, role, apps=apps, owner=row.owner)
            else:  # an enrolment token opens POST /api/v1/enrol only, never a route
                return _Cached(None, row.id, now + self._cache_seconds)
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
