"""User accounts: creation, password checks (argon2id with rehash), first-run admin."""
from __future__ import annotations

import re
import time
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.auth.passwords import Passwords, generate_password
from console.auth.roles import USER_ROLES, Principal
from console.storage.models import User

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 10


class UserError(ValueError):
    """A user request is invalid (bad name, short password, unknown role or user)."""


class UserService:
    """Users and their passwords. Every method runs inside the caller's session."""

    def __init__(self, passwords: Passwords | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._passwords = passwords or Passwords()
        self._clock = clock

    def create(self, session: Session, username: str, password: str, role: str) -> User:
        if not USERNAME_RE.match(username):
            raise UserError(f"invalid user name {username!r}")
        if role not in USER_ROLES:
            raise UserError(f"unknown role {role!r}; choose one of {', '.join(USER_ROLES)}")
        self._check_password(password)
        if session.execute(select(User.id).where(User.username == username)).first():
            raise UserError(f"user {username!r} already exists")
        user = User(username=username, password_hash=self._passwords.hash(password), role=role,
                    created_at=self._clock(), disabled=False)
        session.add(user)
        session.flush()
        return user

    def set_password(self, session: Session, username: str, password: str) -> None:
        self._check_password(password)
        user = self._get(session, username)
        if user is None:
            raise UserError(f"no user {username!r}")
        user.password_hash = self._passwords.hash(password)

    def authenticate(self, session: Session, username: str, password: str) -> Principal | None:
        """The principal for valid credentials, else None. Rehashes an outdated hash."""
        user = self._get(session, username)
        if user is None or user.disabled:
            # Spend the same time as a real check so unknown names are not revealed by timing.
            self._passwords.verify(self._dummy_hash(), password)
            return None
        if not self._passwords.verify(user.password_hash, password):
            return None
        if self._passwords.needs_rehash(user.password_hash):
            user.password_hash = self._passwords.hash(password)
        return Principal("user", user.username, user.role)

    def principal(self, session: Session, username: str) -> Principal | None:
        """The principal of an enabled user (for a session cookie), else None."""
        user = self._get(session, username)
        if user is None or user.disabled:
            return None
        return Principal("user", user.username, user.role)

    def ensure_admin(self, session: Session, password: str | None = None) -> str | None:
        """On first run (no users at all) create ``admin``. Returns the password when it was
        generated here, so the caller can print it once; None when nothing was created or
        the password was supplied."""
        if session.execute(select(func.count(User.id))).scalar_one() > 0:
            return None
        generated = None
        if not password:
            password = generated = generate_password()
        self.create(session, "admin", password, "admin")
        return generated

    def _get(self, session: Session, username: str) -> User | None:
        return session.execute(select(User).where(User.username == username)).scalar_one_or_none()

    def _check_password(self, password: str) -> None:
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")

    def _dummy_hash(self) -> str:
        if not hasattr(self, "_dummy"):
            self._dummy = self._passwords.hash(generate_password())
        return self._dummy
