"""The console's service objects, built once from the configuration and handed to
every handler through the route table."""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from console.audit.service import AuditService
from console.auth.service import AuthService
from console.auth.sessions import SessionService
from console.auth.tokens import TokenService
from console.auth.users import UserService
from console.config import Config
from console.ingest.service import IngestService
from console.live import LiveBus
from console.query.service import QueryService
from console.secrets import SecretBox, SecretService, load_keys
from console.storage.database import Database
from console.tiers.service import RollupService
from console.telemetry import ConsoleMetrics


@dataclass
class Services:
    config: Config
    db: Database
    bus: LiveBus
    metrics: ConsoleMetrics
    users: UserService
    tokens: TokenService
    ingest: IngestService
    query: QueryService
    audit: AuditService
    clock: Callable[[], float]
    rollups: RollupService | None = None
    auth: AuthService | None = None
    secrets: SecretService | None = None

    def close(self) -> None:
        self.db.close()


def build_services(config: Config, migrate: bool = True, clock: Callable[[], float] = time.time) -> Services:
    """Open the database (applying migrations unless ``migrate`` is False) and wire services."""
    db = Database(config.database_url)
    if migrate:
        db.migrate()
    users, tokens, audit = UserService(clock=clock), TokenService(db.sessions, clock=clock), AuditService(clock=clock)
    c = config.console
    auth = AuthService(users, tokens, SessionService(c.session_days * 86400, clock=clock), audit,
                       login_failures_per_user=c.login_failures_per_user,
                       login_failures_per_ip=c.login_failures_per_ip, login_window_s=c.login_window_seconds,
                       clock=clock)
    secret_store = SecretService(SecretBox(load_keys(config.secret_key_file)), audit, clock=clock)
    return Services(config=config, db=db, bus=LiveBus(), metrics=ConsoleMetrics(),
                    users=users, tokens=tokens,
                    ingest=IngestService(db, clock=clock, config=config.console),
                    query=QueryService(config.console, clock=clock),
                    audit=audit,
                    clock=clock, rollups=RollupService(db, config.console, clock=clock),
                    auth=auth, secrets=secret_store)


def cookie_secret(data_dir: Path) -> str:
    """The signing secret for session cookies, created on first use in ``data_dir`` (0600)."""
    path = data_dir / "cookie_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret
