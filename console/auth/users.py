"""User accounts: creation, password checks (argon2id with rehash), first-run admin."""
from __future__ import annotations

import re
import time
from typing import Callable

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from console.auth import revocation
from console.auth.passwords import Passwords, generate_password
from console.auth.roles import USER_ROLES, Principal
from console.auth.sessions import apps_tuple
from console.errors import Conflict, InvalidInput, NotFound
from console.i18n import LANGUAGES, tx
from console.storage.models import User, UserSession

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
APP_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte password is an attack
UNCHANGED = object()


def encode_apps(role: str, apps: object) -> str | None:
    """Validate a deployer's app allow-list and encode it for storage (sorted JSON list);
    None (every app) for None. Raises UserError for a non-list, a bad app name, or a list
    given for a role other than deployer."""
    if apps is None:
        return None
    if role != "deployer":
        raise AppsNeedDeployer(tx("an app allow-list applies to the deployer role only"))
    if not isinstance(apps, (list, tuple)) or len(apps) > 1000:
        raise UserError(tx("apps must be a list of up to 1000 app names"))
    bad = [a for a in apps if not isinstance(a, str) or not APP_NAME_RE.fullmatch(a)]
    if bad:
        raise UserError(tx("invalid app name {app}", app=repr(bad[0])))
    return orjson.dumps(sorted(set(apps))).decode()


class UserError(InvalidInput):
    """A user request is invalid (bad name, short password, unknown role or user): 400
    ``invalid_user`` unless a subclass says otherwise."""

    default_code = "invalid_user"


class AppsNeedDeployer(Conflict, UserError):
    """An app allow-list was given for a user or token whose role is not deployer (409)."""

    default_code = "apps_need_deployer"


class UserExists(Conflict, UserError):
    """The user name is taken (409)."""

    default_code = "user_exists"


class UserNotFound(NotFound, UserError):
    """No user of that name (404)."""

    default_code = "user_not_found"


class LastAdmin(Conflict, UserError):
    """The change would leave no enabled admin (409)."""

    default_code = "last_admin"


class UserService:
    """Users and their passwords. Every method runs inside the caller's session."""

    def __init__(self, passwords: Passwords | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.passwords = passwords or Passwords()
        self._clock = clock

    def create(self, session: Session, username: str, password: str, role: str,
               apps: list[str] | None = None, password_hash: str | None = None) -> User:
        """A new enabled user; ``apps`` limits a deployer to those apps; ``password_hash``:
        the password already hashed off the database threads (else hashed here). Raises
        UserError (bad name, role or password; the name is taken)."""
        if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
            raise UserError(tx("invalid user name {user}", user=repr(username)))
        if role not in USER_ROLES:
            raise UserError(tx("unknown role {role}; choose one of {roles}", role=repr(role), roles=", ".join(USER_ROLES)))
        encoded_apps = encode_apps(role, apps)
        self._check_password(password)
        # Deleted users count: the audit log names them, so their names are not reused.
        if session.execute(select(User.id).where(User.username == username)).first():
            raise UserExists(tx("user name {user} is taken (or was, by a deleted user)", user=repr(username)))
        user = User(username=username, password_hash=password_hash or self.passwords.hash(password), role=role,
                    created_at=self._clock(), disabled=False, apps=encoded_apps)
        session.add(user)
        session.flush()
        return user

    def set_password(self, session: Session, username: str, password: str, password_hash: str | None = None) -> None:
        """Change a password and end the user's sessions; ``password_hash`` as in
        :meth:`create`. Raises UserError."""
        self._check_password(password)
        user = self._get(session, username)
        if user is None:
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        user.password_hash = password_hash or self.passwords.hash(password)
        session.execute(delete(UserSession).where(UserSession.user_id == user.id))
        revocation.bump(session)

    def update(self, session: Session, username: str, role: object = UNCHANGED,
               apps: object = UNCHANGED, disabled: object = UNCHANGED) -> dict:
        """Change a user's role, app allow-list (None: every app) or disabled flag; a role
        change or disabling ends the user's sessions. Returns the user as :meth:`list`
        shows it. Raises UserError."""
        user = self._get(session, username)
        if user is None:
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        new_role = user.role if role is UNCHANGED else role
        if new_role not in USER_ROLES:
            raise UserError(tx("unknown role {role}; choose one of {roles}", role=repr(new_role),
                               roles=", ".join(USER_ROLES)))
        if apps is UNCHANGED:
            apps = list(apps_tuple(user.apps) or ()) if user.apps is not None and new_role == "deployer" else None
        new_apps = encode_apps(new_role, apps)
        if disabled is not UNCHANGED and not isinstance(disabled, bool):
            raise UserError(tx("disabled must be true or false"))
        losing_admin = user.role == "admin" and not user.disabled and (new_role != "admin" or disabled is True)
        if losing_admin and session.execute(select(func.count(User.id)).where(
                User.role == "admin", User.disabled.is_(False))).scalar_one() <= 1:
            raise LastAdmin(tx("{user} is the last enabled admin", user=repr(username)))
        end_sessions = new_role != user.role or (disabled is True and not user.disabled)
        apps_changed = new_apps != user.apps
        user.role, user.apps = new_role, new_apps
        if isinstance(disabled, bool):  # else UNCHANGED (anything else was refused above)
            user.disabled = disabled
        if end_sessions:
            session.execute(delete(UserSession).where(UserSession.user_id == user.id))
        if end_sessions or apps_changed:
            revocation.bump(session)  # cached token lookups and open sockets of this user are rechecked
        session.flush()
        return self._describe(user)

    def delete(self, session: Session, username: str) -> dict:
        """Disable ``username``, end its sessions and remove it from every lookup (the row
        stays, so the name is neither lost from nor reused in the audit log). Returns the
        user as it was left. Raises UserNotFound, or LastAdmin for the last enabled admin."""
        described = self.update(session, username, disabled=True)
        user = self._get(session, username)
        if user is None:  # update() found it in this transaction
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        user.deleted_at = self._clock()
        session.flush()
        return described

    def list(self, session: Session) -> list[dict]:
        """``[{"username", "role", "apps" (list or null), "disabled", "created_at" (Unix s)}]``."""
        return [self._describe(u) for u in session.execute(
            select(User).where(User.deleted_at.is_(None)).order_by(User.username)).scalars()]

    def get(self, session: Session, username: str) -> User | None:
        return self._get(session, username)

    def language(self, session: Session, username: str) -> str | None:
        """The dashboard language ``username`` chose (a BCP 47 tag of console/i18n.py
        LANGUAGES), None to follow the browser. Raises UserNotFound."""
        user = self._get(session, username)
        if user is None:
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        return user.language

    def set_language(self, session: Session, username: str, language: str | None) -> str | None:
        """Keep ``language`` (a tag of console/i18n.py LANGUAGES, None: the browser's) as
        ``username``'s dashboard language; returns it. Raises UserNotFound, UserError for a
        language the console does not offer."""
        if language is not None and language not in LANGUAGES:
            raise UserError(tx("unknown language {language}; choose one of {languages}", language=repr(language),
                               languages=", ".join(LANGUAGES)))
        user = self._get(session, username)
        if user is None:
            raise UserNotFound(tx("no user {user}", user=repr(username)))
        user.language = language
        session.flush()
        return language

    @staticmethod
    def _describe(user: User) -> dict:
        apps = apps_tuple(user.apps)
        return {"username": user.username, "role": user.role, "apps": None if apps is None else list(apps),
                "disabled": bool(user.disabled), "created_at": user.created_at}

    def stored_hash(self, session: Session, username: str) -> str | None:
        """The stored password hash of the enabled user ``username``; None for an unknown
        or disabled user. The password itself is checked off the database threads
        (:meth:`Passwords.verify_off_thread`), then :meth:`confirm_login` finishes."""
        if len(username) > 64:
            return None
        user = self._get(session, username)
        return None if user is None or user.disabled else user.password_hash

    def confirm_login(self, session: Session, username: str, verified_hash: str, new_hash: str | None = None
                      ) -> Principal | None:
        """The principal of ``username`` after its password matched ``verified_hash``,
        when the user is still enabled and that is still its hash (a password change or
        a disable in between wins); else None. ``new_hash``: the password hashed again
        under the current parameters, stored in place of the old one."""
        user = self._get(session, username)
        if user is None or user.disabled or user.password_hash != verified_hash:
            return None
        if new_hash is not None:
            user.password_hash = new_hash
        return Principal("user", user.username, user.role, apps=apps_tuple(user.apps), owner=user.username)

    def principal(self, session: Session, username: str) -> Principal | None:
        """The principal of an enabled user, else None."""
        user = self._get(session, username)
        if user is None or user.disabled:
            return None
        return Principal("user", user.username, user.role, apps=apps_tuple(user.apps), owner=user.username)

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
        return session.execute(select(User).where(User.username == username, User.deleted_at.is_(None))
                               ).scalar_one_or_none()

    async def hash_off_thread(self, password: str) -> str:
        """A new password checked (UserError) and hashed on the password pool, to hand to
        :meth:`create` or :meth:`set_password` on the database writer. Raises
        PasswordsBusy."""
        self._check_password(password)
        return await self.passwords.hash_off_thread(password)

    def _check_password(self, password: str) -> None:
        if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise UserError(tx("a password needs {least} to {most} characters", least=MIN_PASSWORD_LENGTH,
                               most=MAX_PASSWORD_LENGTH))
