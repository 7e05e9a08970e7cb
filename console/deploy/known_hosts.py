"""Pinned SSH host keys (known_hosts) for the ssh driver, kept in the database.

Keys are pinned only by an explicit admin action (``fleetdeck hosts trust HOST``), which
is audited as ``hosts.trust``. The driver loads the pins into paramiko's ``HostKeys``
and connects with ``RejectPolicy``: an unknown host is refused, and a host presenting a
different key fails with ``BadHostKeyException``, before authentication, so nothing runs
there. Fingerprints are ``SHA256:<unpadded base64>`` as ``ssh-keygen -lf`` prints them.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import time
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.deploy.inventory import HostEntry
from console.storage.models import SshKnownHost


class TrustError(ValueError):
    """``code``: invalid_key, fingerprint_mismatch, already_pinned, unreachable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def fingerprint(key_base64: str) -> str:
    """``SHA256:...`` of the key blob (OpenSSH's format). Raises TrustError for bad base64."""
    try:
        blob = base64.b64decode(key_base64, validate=True)
    except ValueError:
        raise TrustError("invalid_key", "the key is not valid base64") from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_key_line(line: str) -> tuple[str, str]:
    """``(key_type, key_base64)`` from ``TYPE BASE64 [comment]`` or a known_hosts line
    ``NAMES TYPE BASE64``; the key must load in paramiko. Raises TrustError."""
    parts = line.split()
    if len(parts) >= 3 and not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        parts = parts[1:]
    if len(parts) < 2:
        raise TrustError("invalid_key", "expected 'TYPE BASE64' (a line of a .pub or known_hosts file)")
    key_type, key_b64 = parts[0], parts[1]
    import paramiko  # here, not at the top: the admin commands import this module (~0.3 s)

    try:
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64, validate=True))
    except (ValueError, paramiko.SSHException, TypeError) as exc:
        raise TrustError("invalid_key", f"not an SSH public key: {exc}") from None
    return key.get_name(), key.get_base64()


def scan(host: HostEntry, timeout: float = 10.0) -> tuple[str, str]:
    """The key ``host`` presents, read from the SSH handshake without authenticating
    (like ``ssh-keyscan``): ``(key_type, key_base64)``. Raises TrustError(unreachable)."""
    import paramiko  # see parse_key_line

    try:
        sock = socket.create_connection((host.address, host.port), timeout=timeout)
    except OSError as exc:
        raise TrustError("unreachable", f"cannot connect to {host.address}:{host.port}: {exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.handshake_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return key.get_name(), key.get_base64()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TrustError("unreachable", f"SSH handshake with {host.address}:{host.port} failed: {exc}") from None
    finally:
        transport.close()


class KnownHostsService:
    """Pinned keys. Methods take the caller's session; ``trust`` audits in it."""

    def __init__(self, audit: AuditService, clock: Callable[[], float] = time.time) -> None:
        self._audit = audit
        self._clock = clock

    def entries(self, session: Session) -> list[tuple[str, str, str]]:
        """``[(hostname, key_type, key_base64)]`` for paramiko's ``HostKeys.add``."""
        rows = session.execute(select(SshKnownHost).order_by(SshKnownHost.hostname)).scalars()
        return [(r.hostname, r.key_type, r.key_base64) for r in rows]

    def list(self, session: Session) -> list[dict]:
        rows = session.execute(select(SshKnownHost).order_by(SshKnownHost.hostname)).scalars()
        return [{"host": r.host, "hostname": r.hostname, "key_type": r.key_type, "fingerprint": r.fingerprint,
                 "added_by": r.added_by, "added_at": r.added_at} for r in rows]

    def trust(self, session: Session, host: HostEntry, key_type: str, key_base64: str, actor: str,
              source: str = "cli", replace: bool = False) -> dict:
        """Pin ``key_type key_base64`` for ``host``; returns ``{"hostname", "fingerprint",
        "previous_fingerprint"}``. A different key already pinned raises
        TrustError(already_pinned) unless ``replace``. Audited as ``hosts.trust``."""
        fp = fingerprint(key_base64)
        row = session.execute(select(SshKnownHost).where(SshKnownHost.hostname == host.known_hosts_name)
                              ).scalar_one_or_none()
        previous = row.fingerprint if row else None
        if row is not None and (row.key_type, row.key_base64) != (key_type, key_base64) and not replace:
            raise TrustError("already_pinned", f"{host.known_hosts_name} is pinned to {row.fingerprint}; the new key "
                                               f"is {fp}. If the host key really changed, pass --replace")
        if row is None:
            row = SshKnownHost(hostname=host.known_hosts_name)
            session.add(row)
        row.host, row.key_type, row.key_base64, row.fingerprint = host.name, key_type, key_base64, fp
        row.added_by, row.added_at = actor, self._clock()
        session.flush()
        self._audit.record(session, actor, "hosts.trust", f"host:{host.name}",
                           {"hostname": host.known_hosts_name, "key_type": key_type, "fingerprint": fp,
                            "previous_fingerprint": previous}, source)
        return {"hostname": host.known_hosts_name, "fingerprint": fp, "previous_fingerprint": previous}
