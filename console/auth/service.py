"""Audited account operations shared by the HTTP API, the pages and the CLI.

Every sync method takes the caller's ``session`` and writes its audit entry in that same
transaction (console/audit): when the entry cannot be written, the change is rolled
back with it; the CLI runs them with ``db.run``. The HTTP API awaits the async twin
(``acreate_user`` for ``create_user``, as Django and httpx name theirs), which runs it on
the database writer (reads on a reader). ``actor`` names who acts (``user:alice``,
``api:ci``, ``cli:root``) and ``source`` where from (a client IP address or ``cli``).
Errors are console/errors.py classes (UserError, TokenError, EnrolError, PasswordsBusy).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.auth.limits import FailureLimiter
from console.auth.roles import Principal
from console.auth.sessions import SessionService
from console.auth.tokens import TokenService, digest
from console.auth.users import MAX_PASSWORD_LENGTH, UNCHANGED, UserNotFound, UserService
from console.i18n import tx
from console.storage.database import Database
from console.storage.models import Token, User


@dataclass(frozen=True)
class LoginResult:
    """Both None when the login was refused."""

    principal: Principal | None
    session_id: str | None
    language: str | None = None  # the language the user chose for the dashboard (None: the browser's)


class AuthService:
    """Logins, sessions, users and tokens, with the audit entries they owe.

    ``login_limit_user``/``login_limit_ip`` count failed logins per (user name, client
    address) and per client address within ``login_window_s`` seconds; ``enrol_limit``
    counts failed enrolments per address. The limiters count in the database, so every
console sharing it counts the same failures (console/auth/limits.py)."""

    def __init__(self, users: UserService, tokens: TokenService, sessions: SessionService,
                 audit: AuditService, *, db: Database, login_failures_per_user: int = 5,
                 login_failures_per_ip: int = 20, login_window_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.users = users
        self.tokens = tokens
        self.sessions = sessions
        self.audit = audit
        self.login_limit_user = FailureLimiter(db, login_failures_per_user, login_window_s)
        self.login_limit_ip = FailureLimiter(db, login_failures_per_ip, login_window_s)
        self.enrol_limit = FailureLimiter(db, login_failures_per_ip, login_window_s, prefix="enrol:")
        self._clock = clock

    # -- sessions -----------------------------------------------------------------------
    async def principal(self, token: str | None, session_id: str | None) -> Principal | None:
        """The principal of a bearer ``token`` (when not None) or else a session id; None
        when neither is valid now. Tokens are looked up through their cache (a reader on a
        miss), sessions on a reader."""
        if token is not None:
            return await self.db.on_reader(self.tokens.authenticate, token) if token else None
        if not session_id:
            return None
        return await self.db.read(self.sessions.principal, session_id)

    async def login(self, username: str, password: str, source: str) -> LoginResult:
        """Check the password; on success open a session. Audits ``login.success`` or
        ``login.failure`` (the password itself is never recorded). The stored hash is read
        on a database reader, argon2 runs on the password pool, and only the short
        transaction that opens the session and writes the audit entry runs on the
        database writer: failed logins cannot queue ahead of ingest. Raises PasswordsBusy
        (console/auth/passwords.py) when the password pool is full."""
        passwords = self.users.passwords
        stored = None
        if len(password) <= MAX_PASSWORD_LENGTH:
            stored = await self.db.read(self.users.stored_hash, username)
            if not await passwords.verify_off_thread(stored, password):
                stored = None
        new_hash = None
        if stored is not None and passwords.needs_rehash(stored):
            new_hash = await passwords.hash_off_thread(password)
        return await self.db.write(self._finish_login, username, stored, new_hash, source)

    def _finish_login(self, session: Session, username: str, verified_hash: str | None, new_hash: str | None,
                      source: str) -> LoginResult:
        principal = None
        if verified_hash is not None:
            principal = self.users.confirm_login(session, username, verified_hash, new_hash)
        if principal is None:
            self.audit.record(session, f"user:{username[:64]}", "login.failure", f"user:{username[:64]}",
                              {}, source)
            return LoginResult(None, None)
        user = self.users.get(session, username)
        if user is None:  # confirm_login found it in this transaction
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        session_id = self.sessions.create(session, user.id, source)
        self.audit.record(session, principal.actor, "login.success", f"user:{username}", {}, source)
        return LoginResult(principal, session_id, user.language)

    def logout(self, session: Session, session_id: str, actor: str, source: str) -> None:
        if self.sessions.destroy(session, session_id):
            self.audit.record(session, actor, "logout", actor, {}, source)

    async def alogout(self, session_id: str, actor: str, source: str) -> None:
        await self.db.write(self.logout, session_id, actor, source)

    # -- users --------------------------------------------------------------------------
    async def language(self, username: str) -> str | None:
        """The dashboard language ``username`` chose, None: the browser's (UserNotFound)."""
        return await self.db.read(self.users.language, username)

    async def set_language(self, username: str, language: str | None) -> str | None:
        """Keep ``username``'s dashboard language (console/auth/users.py ``set_language``):
        a preference of the user's own, not audited."""
        return await self.db.write(self.users.set_language, username, language)

    async def list_users(self) -> list[dict]:
        """``[{"username", "role", "apps", "disabled", ...}]`` (console/auth/users.py)."""
        return await self.db.read(self.users.list)

    async def acreate_user(self, actor: str, source: str, username: str, password: str, role: str,
                           apps: list[str] | None = None) -> dict:
        """:meth:`create_user`, the password hashed on the password pool first (never on the
        database writer). Raises UserError, PasswordsBusy."""
        hashed = await self.users.hash_off_thread(password)
        return await self.db.write(self.create_user, actor, source, username, password, role, apps, hashed)

    async def aupdate_user(self, actor: str, source: str, username: str, *, role: object = UNCHANGED,
                           apps: object = UNCHANGED, disabled: object = UNCHANGED,
                           password: str | None = None) -> dict:
        """:meth:`update_user`, a new password hashed on the password pool first."""
        hashed = None if password is None else await self.users.hash_off_thread(password)
        update = functools.partial(self.update_user, role=role, apps=apps, disabled=disabled,
                                   password=password, password_hash=hashed)
        return await self.db.write(update, actor, source, username)

    async def adelete_user(self, actor: str, source: str, username: str) -> dict:
        return await self.db.write(self.delete_user, actor, source, username)

    def create_user(self, session: Session, actor: str, source: str, username: str, password: str,
                    role: str, apps: list[str] | None = None, password_hash: str | None = None) -> dict:
        user = self.users.create(session, username, password, role, apps, password_hash)
        described = next(u for u in self.users.list(session) if u["username"] == user.username)
        self.audit.record(session, actor, "user.create", f"user:{username}",
                          {"role": role, "apps": described["apps"]}, source)
        return described

    def ensure_admin(self, session: Session, actor: str, source: str, password: str | None = None) -> str | None:
        """First run (no users at all): create ``admin`` (:meth:`UserService.ensure_admin`),
        audited as ``user.create`` with ``first_run: true``. Returns the generated
        password (None when nothing was created or ``password`` was given)."""
        if session.execute(select(func.count(User.id))).scalar_one() > 0:
            return None
        generated = self.users.ensure_admin(session, password)
        self.audit.record(session, actor, "user.create", "user:admin",
                          {"role": "admin", "apps": None, "first_run": True,
                           "password": "generated" if generated else "from FLEETDECK_ADMIN_PASSWORD"}, source)
        return generated

    def update_user(self, session: Session, actor: str, source: str, username: str, *,
                    role: object = UNCHANGED, apps: object = UNCHANGED, disabled: object = UNCHANGED,
                    password: str | None = None, password_hash: str | None = None) -> dict:
        before = self.users.get(session, username)
        was_disabled = bool(before is not None and before.disabled)
        described = self.users.update(session, username, role=role, apps=apps, disabled=disabled)
        changed = {k: v for k, v in (("role", role), ("apps", apps), ("disabled", disabled)) if v is not UNCHANGED}
        if disabled is True and not was_disabled:
            # Off-boarding: the user's API and enrolment tokens go with them (sessions and
            # open sockets end through the revocation generation).
            changed["tokens_revoked"] = self.tokens.revoke_owned(session, username)
        if password is not None:
            self.users.set_password(session, username, password, password_hash)
            changed["password"] = "changed"
        self.audit.record(session, actor, "user.update", f"user:{username}", changed, source)
        return described

    def delete_user(self, session: Session, actor: str, source: str, username: str) -> dict:
        """Off-board ``username`` as a disable does (its tokens revoked, sessions and sockets
        ended), then hide it from the API; audited."""
        described = self.users.delete(session, username)
        revoked = self.tokens.revoke_owned(session, username)
        self.audit.record(session, actor, "user.delete", f"user:{username}",
                          {"tokens_revoked": revoked} if revoked else {}, source)
        return described

    def set_password(self, session: Session, actor: str, source: str, username: str, password: str) -> None:
        self.users.set_password(session, username, password)
        self.audit.record(session, actor, "user.password", f"user:{username}", {}, source)

    # -- tokens -------------------------------------------------------------------------
    async def list_tokens(self, include_revoked: bool = False) -> list[dict]:
        return await self.db.read(self.tokens.list, include_revoked)

    async def acreate_api_token(self, actor: str, source: str, name: str, role: str,
                                expires_in_days: float | None = None, apps: list[str] | None = None,
                                owner: str | None = None) -> dict:
        return await self.db.write(self.create_api_token, actor, source, name, role, expires_in_days, apps, owner)

    async def acreate_agent_token(self, actor: str, source: str, host: str) -> dict:
        return await self.db.write(self.create_agent_token, actor, source, host)

    async def acreate_enrol_token(self, actor: str, source: str, expires_in_s: float, host: str | None = None,
                                  owner: str | None = None) -> dict:
        return await self.db.write(self.create_enrol_token, actor, source, expires_in_s, host, owner)

    async def arevoke_token(self, actor: str, source: str, token_id: int) -> dict:
        """Raises TokenNotFound (404)."""
        return await self.db.write(self.revoke_token, actor, source, token_id)

    async def aenrol(self, enrol_token: str, host: str, source: str) -> str:
        return await self.db.write(self.enrol, enrol_token, host, source)

    def create_api_token(self, session: Session, actor: str, source: str, name: str, role: str,
                         expires_in_days: float | None = None, apps: list[str] | None = None,
                         owner: str | None = None) -> dict:
        """Returns the token's metadata plus ``"token"``: the plaintext, shown this once.
        ``owner``: the user the token acts for (the caller's owner; None from the CLI)."""
        plaintext = self.tokens.create_api_token(session, name, role, expires_in_days, apps=apps, created_by=actor,
                                                 owner=owner)
        return self._created(session, actor, source, plaintext)

    def create_agent_token(self, session: Session, actor: str, source: str, host: str) -> dict:
        plaintext = self.tokens.create_agent_token(session, host, created_by=actor)
        return self._created(session, actor, source, plaintext)

    def create_enrol_token(self, session: Session, actor: str, source: str, expires_in_s: float,
                           host: str | None = None, owner: str | None = None) -> dict:
        _, plaintext = self.tokens.create_enrol_token(session, expires_in_s, host, created_by=actor, owner=owner)
        return self._created(session, actor, source, plaintext)

    def _created(self, session: Session, actor: str, source: str, plaintext: str) -> dict:
        row = session.execute(select(Token).where(Token.token_hash == digest(plaintext))).scalar_one()
        described = self.tokens.describe(row)
        self.audit.record(session, actor, "token.create", f"token:{row.id}",
                          {k: described[k] for k in ("kind", "name", "role", "host", "apps", "expires_at")},
                          source)
        return {**described, "token": plaintext}

    def revoke_token(self, session: Session, actor: str, source: str, token_id: int) -> dict:
        described = self.tokens.revoke(session, token_id)
        self.audit.record(session, actor, "token.revoke", f"token:{token_id}",
                          {"kind": described["kind"], "name": described["name"]}, source)
        return described

    def enrol(self, session: Session, enrol_token: str, host: str, source: str) -> str:
        """Exchange a one-time enrolment token for an agent token bound to ``host``;
        audits ``agent.enrol``. Raises TokenError / EnrolError (console/auth/tokens.py)."""
        enrol_id, plaintext = self.tokens.enrol(session, enrol_token, host)
        self.audit.record(session, f"enrol:{enrol_id}", "agent.enrol", f"host:{host}",
                          {"enrol_token_id": enrol_id}, source)
        return plaintext
