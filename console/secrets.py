"""Secrets at rest: SSH keys, kubeconfigs, registry passwords and webhook URLs, encrypted
with Fernet (AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package) under a key
kept outside the database.

Keys come from ``$FLEETDECK_SECRET_KEY`` (one or more Fernet keys separated by commas)
or else from the key file (``console.secret_key_file``, default ``<data_dir>/secret.key``,
created with mode 0600 on first run, one key per line). The first key encrypts; every
key decrypts (``MultiFernet``), so a key is rotated by putting a new key first, running
``fleetdeck secrets rotate`` (re-encrypts every row under the first key), then removing
the old key.

The HTTP API stores, lists and deletes secrets but never returns a plaintext; only
server-side code (deploy drivers) calls :meth:`SecretService.reveal`.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Callable, Literal, Mapping, get_args

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.config import ConfigError
from console.deploy.kubeconfig import KubeconfigRefused, check_kubeconfig
from console.errors import InvalidInput
from console.i18n import tx
from console.storage.database import Database, bound, execute_dml
from console.storage.models import StoredSecret

log = logging.getLogger(__name__)
SECRET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SecretKind = Literal["ssh_key", "kubeconfig", "registry_password", "webhook_url", "generic"]
SECRET_KINDS: tuple[str, ...] = get_args(SecretKind)
MAX_SECRET_BYTES = 64 * 1024
ENV_KEY = "FLEETDECK_SECRET_KEY"


class SecretError(InvalidInput):
    """A secret request is invalid (``reason``: invalid_name, invalid_kind, too_large,
    not_found, kubeconfig_refused with ``field``), or a stored secret cannot be decrypted
    with the configured keys (``undecryptable``). The JSON code is ``secret_<reason>``;
    the status 404 for not_found, 422 with ``details.field`` for well-formed content the
    console refuses to keep, else 400."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message, {"field": field} if field is not None else None, code=f"secret_{reason}")
        self.reason = reason
        self.field = field
        self.status = 404 if reason == "not_found" else 422 if field is not None else 400


class KeyConfigError(ConfigError):
    """The secret key file or environment variable is unusable (a configuration error: the
    console refuses to start, naming it)."""


def _parse_keys(text: str, where: str) -> list[bytes]:
    keys = [part.strip().encode("ascii") for part in re.split(r"[,\s]+", text) if part.strip()]
    if not keys:
        raise KeyConfigError(tx("{source} holds no key", source=where))
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise KeyConfigError(tx("{source}: key {number} is not a Fernet key (32 url-safe base64-encoded bytes)",
                                    source=where, number=index + 1)) from None
    return keys


def load_keys(key_file: Path, env: Mapping[str, str] | None = None) -> list[bytes]:
    """The Fernet keys, primary first, from ``$FLEETDECK_SECRET_KEY`` or ``key_file``; the
    file is created (0600, one new key) when neither exists. Raises KeyConfigError."""
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return _parse_keys(env[ENV_KEY], ENV_KEY)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: read theirs
            return _parse_keys(key_file.read_text(), str(key_file))
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode("ascii") + "\n")
        log.info("created the secret key file %s (mode 0600); back it up apart from the database", key_file)
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning("secret key file %s is readable by group or others (mode %o); chmod 600 it", key_file, mode)
    return _parse_keys(key_file.read_text(), str(key_file))


class SecretBox:
    """Encrypt and decrypt text under the configured keys (first key encrypts)."""

    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Raises SecretError(``undecryptable``) when no configured key opens ``token``."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretError("undecryptable", tx("no configured key decrypts this secret")) from None

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the primary key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretError("undecryptable", tx("no configured key decrypts this secret")) from None


class SecretService:
    """Stored secrets. The sync methods take the caller's ``session``, changes audited in it;
    their async twins (``aput`` for ``put``) run them on the database writer (reads on a
    reader) of ``db``."""

    def __init__(self, box: SecretBox, audit: AuditService, clock: Callable[[], float] = time.time,
                 db: Database | None = None) -> None:
        self._box = box
        self._audit = audit
        self._clock = clock
        self.db = db

    async def aput(self, name: str, kind: str, value: str, actor: str, source: str = "") -> dict:
        return await bound(self.db, self).write(self.put, name, kind, value, actor, source)

    async def alist(self) -> list[dict]:
        return await bound(self.db, self).read(self.list)

    async def adelete(self, name: str, actor: str, source: str = "") -> None:
        await bound(self.db, self).write(self.delete, name, actor, source)

    def put(self, session: Session, name: str, kind: str, value: str, actor: str, source: str = "") -> dict:
        """Create or replace secret ``name``; returns its metadata (see :meth:`list`).
        Raises SecretError for a bad name or kind, a value over 64 KiB, or a kubeconfig
        that is not inline credentials only (``kubeconfig_refused``, console/deploy/kubeconfig.py)."""
        if not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
            raise SecretError("invalid_name", tx("a secret name is 1-128 of letters, digits and ._:- "
                                                 "starting with a letter or digit"))
        if kind not in SECRET_KINDS:
            raise SecretError("invalid_kind", tx("kind must be one of {kinds}", kinds=", ".join(SECRET_KINDS)))
        if not isinstance(value, str) or not value or len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise SecretError("too_large" if isinstance(value, str) and value else "invalid_value",
                              tx("a secret value is 1 to {most} bytes of text", most=MAX_SECRET_BYTES))
        if kind == "kubeconfig":
            try:
                check_kubeconfig(value)
            except KubeconfigRefused as exc:
                raise SecretError("kubeconfig_refused", str(exc), exc.field) from None
        now = self._clock()
        row = session.execute(select(StoredSecret).where(StoredSecret.name == name)).scalar_one_or_none()
        action = "secret.update" if row else "secret.create"
        if row is None:
            row = StoredSecret(name=name, created_at=now)
            session.add(row)
        row.kind, row.ciphertext, row.updated_at, row.updated_by = kind, self._box.encrypt(value), now, actor
        session.flush()
        self._audit.record(session, actor, action, f"secret:{name}", {"kind": kind}, source)
        return self._meta(row)

    def list(self, session: Session) -> list[dict]:
        """``[{"name", "kind", "created_at", "updated_at" (Unix s), "updated_by"}]`` by name;
        never the value."""
        rows = session.execute(select(StoredSecret).order_by(StoredSecret.name)).scalars()
        return [self._meta(r) for r in rows]

    def delete(self, session: Session, name: str, actor: str, source: str = "") -> None:
        """Raises SecretError(``not_found``)."""
        if execute_dml(session, delete(StoredSecret).where(StoredSecret.name == name)).rowcount == 0:
            raise SecretError("not_found", tx("no secret named {name}", name=repr(name)))
        self._audit.record(session, actor, "secret.delete", f"secret:{name}", {}, source)

    def reveal(self, session: Session, name: str) -> str:
        """The plaintext, for server-side use only (drivers). Raises SecretError."""
        row = session.execute(select(StoredSecret).where(StoredSecret.name == name)).scalar_one_or_none()
        if row is None:
            raise SecretError("not_found", tx("no secret named {name}", name=repr(name)))
        return self._box.decrypt(row.ciphertext)

    def rotate_all(self, session: Session, actor: str = "cli") -> int:
        """Re-encrypt every secret under the primary key; returns how many. Raises SecretError
        (and changes nothing) when any secret cannot be decrypted."""
        rows = list(session.execute(select(StoredSecret)).scalars())
        for row in rows:
            row.ciphertext = self._box.rotate(row.ciphertext)
        self._audit.record(session, actor, "secret.rotate", "secrets", {"count": len(rows)}, "cli")
        return len(rows)

    @staticmethod
    def _meta(row: StoredSecret) -> dict:
        return {"name": row.name, "kind": row.kind, "created_at": row.created_at,
                "updated_at": row.updated_at, "updated_by": row.updated_by}
