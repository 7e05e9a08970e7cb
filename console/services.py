"""The console's service objects, built once from the configuration and handed to
every handler through the route table."""
from __future__ import annotations

import asyncio
import functools
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from console.audit.anchor import HeadAnchor
from console.alerting.service import AlertingService
from console.audit.service import AuditService
from console.auth.service import AuthService
from console.auth.sessions import SessionService
from console.auth.tokens import TokenService
from console.auth.users import UserService
from console.config import Config
from console.deploy.apps import parse_apps
from console.deploy.factory import DriverFactory
from console.deploy.inventory import Inventory, parse_inventory
from console.deploy.known_hosts import KnownHostsService
from console.deploy.service import DeployService
from console.ingest.admission import IngestAdmission
from console.ingest.remote_write import RemoteWriteDecoder
from console.ingest.retention import prune_forever
from console.ingest.service import IngestService
from console.live import LiveBus, SocketRegistry
from console.logs.service import LogService
from console.notify.delivery import DeliveryWorker
from console.notify.muting import Muting
from console.notify.store import AlertStore
from console.probes.config import parse_probes
from console.probes.service import ProbeService
from console.promql.service import PromQLService
from console.query.service import QueryService
from console.secrets import SecretBox, SecretService, load_keys
from console.storage.database import Database, private_data_dir
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
    deploys: DeployService
    clock: Callable[[], float]
    rollups: RollupService | None = None
    logs: LogService | None = None
    admission: IngestAdmission | None = None
    auth: AuthService | None = None
    secrets: SecretService | None = None
    inventory: Inventory | None = None
    known_hosts: KnownHostsService | None = None
    sockets: SocketRegistry | None = None
    probes: ProbeService | None = None
    remote_write: RemoteWriteDecoder = field(default_factory=RemoteWriteDecoder)
    promql: PromQLService | None = None
    alerting: AlertingService | None = None
    muting: Muting = field(default_factory=Muting)
    alert_store: AlertStore = field(default_factory=AlertStore)
    delivery: DeliveryWorker | None = None
    _pruning: asyncio.Task | None = field(default=None, init=False, repr=False)
    _watching: asyncio.Task | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Start background work (deploy runners, cleanup, rollups and retention). Call on
        the running IOLoop."""
        self.deploys.start()
        if self.rollups is not None:
            self.rollups.start()
        if self.logs is not None:
            self.logs.start_retention()
        if self.probes is not None:
            self.probes.start()
        self._pruning = asyncio.ensure_future(prune_forever(self))
        if self.sockets is not None:
            self._watching = asyncio.ensure_future(self.sockets.watch())
        if self.alerting is not None:
            self.alerting.start()
        if self.delivery is not None:
            self.delivery.start()

    def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
        if self._watching is not None:
            self._watching.cancel()
        if self.probes is not None:
            self.probes.close()
        if self.alerting is not None:
            self.alerting.close()
        if self.delivery is not None:
            self.delivery.close()
        self.deploys.close()
        self.users.passwords.close()
        self.db.close()
        self.audit.close()


def build_services(config: Config, migrate: bool = True, clock: Callable[[], float] = time.time) -> Services:
    """Open the database (applying migrations unless ``migrate`` is False) and wire services.
    Raises ConfigError for an invalid ``apps:``, ``inventory:`` or ``probes:`` section
    before touching the database."""
    apps = parse_apps(config.apps, config.source_of("apps"))
    inventory = parse_inventory(config.inventory, config.source_of("inventory"))
    probes = parse_probes(config.probes, config.source_of("probes"))
    private_data_dir(config.data_dir)
    db = Database(config.database_url)
    if migrate:
        db.migrate()
    users, tokens = UserService(clock=clock), TokenService(db.sessions, clock=clock)
    audit = AuditService(clock=clock, anchor=HeadAnchor(config.data_dir))
    db.run(functools.partial(audit.bind, db.sessions))
    c = config.console
    auth = AuthService(users, tokens, SessionService(c.session_days * 86400, clock=clock), audit,
                       login_failures_per_user=c.login_failures_per_user,
                       login_failures_per_ip=c.login_failures_per_ip, login_window_s=c.login_window_seconds,
                       clock=clock)
    secret_store = SecretService(SecretBox(load_keys(config.secret_key_file)), audit, clock=clock)
    bus = LiveBus()
    known_hosts = KnownHostsService(audit, clock=clock)
    ingest = IngestService(db, clock=clock, config=c)
    metrics = ConsoleMetrics()
    promql = PromQLService(db, c.promql_timeout, c.promql_max_samples, clock=clock,
                           raw_retention_s=c.retention_raw_days * 86400)
    logs = LogService(db, retention_days=c.log_retention_days, retention_bytes=c.log_retention_bytes,
                      retention_check_seconds=c.log_retention_check_seconds, clock=clock)
    alerting = AlertingService(db, config.alerting, max_samples=c.promql_max_samples, query_timeout_s=c.promql_timeout,
                               host_interval_s=c.default_interval, down_after_intervals=c.down_after_intervals,
                               registry=metrics.registry, clock=clock, logs=logs)
    promql.virtual = alerting  # up, ALERTS and the other computed series for every PromQL query
    muting = Muting()
    alerting.muting = muting
    # The receivers are read from the loaded configuration at every send, so a reload applies.
    delivery = DeliveryWorker(db, lambda: getattr(config.alerting, "notifications", None), secret_store,
                              config.alerting.delivery, registry=metrics.registry, clock=clock, audit=audit)
    return Services(config=config, db=db, bus=bus, metrics=metrics,
                    users=users, tokens=tokens,
                    ingest=ingest,
                    query=QueryService(c, clock=clock),
                    audit=audit, deploys=DeployService(db, bus, audit, apps, clock=clock,
                                                       driver_factory=DriverFactory(db, inventory, known_hosts,
                                                                                    secret_store)),
                    clock=clock, rollups=RollupService(db, c, clock=clock),
                    logs=logs,
                    admission=IngestAdmission(c.ingest_rate_per_host, c.ingest_burst_per_host,
                                              c.ingest_max_inflight),
                    auth=auth, secrets=secret_store, inventory=inventory, known_hosts=known_hosts,
                    sockets=SocketRegistry(db, tokens.forget),
                    probes=ProbeService(probes, ingest, clock=clock),
                    promql=promql, alerting=alerting, muting=muting, delivery=delivery)


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
