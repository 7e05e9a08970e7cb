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
from console.auth.tokens import TokenService
from console.auth.users import UserService
from console.config import Config
from console.ingest.admission import IngestAdmission
from console.ingest.service import IngestService
from console.live import LiveBus
from console.query.service import QueryService
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
    admission: IngestAdmission | None = None

    def close(self) -> None:
        self.db.close()


def build_services(config: Config, migrate: bool = True, clock: Callable[[], float] = time.time) -> Services:
    """Open the database (applying migrations unless ``migrate`` is False) and wire services."""
    db = Database(config.database_url)
    if migrate:
        db.migrate()
    return Services(config=config, db=db, bus=LiveBus(), metrics=ConsoleMetrics(),
                    users=UserService(clock=clock), tokens=TokenService(db.sessions, clock=clock),
                    ingest=IngestService(db, clock=clock, config=config.console),
                    query=QueryService(config.console, clock=clock),
                    audit=AuditService(clock=clock),
                    clock=clock, rollups=RollupService(db, config.console, clock=clock),
                    admission=IngestAdmission(config.console.ingest_rate_per_host,
                                              config.console.ingest_burst_per_host,
                                              config.console.ingest_max_inflight))


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
