"""The console's service objects, built once from the configuration and handed to
every handler through the route table. Handlers ``await`` the services' async methods;
each service chooses its own thread (database reader or writer, its own pool), so no
handler touches ``db`` (tests/unit/test_layout.py)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from console.cluster.leader import Leadership
from console.cluster.relay import FrameRelay, PostgresRelay, SocketRelay
from console.cluster.shared import SharedState
from console.admin.services import build_admin_services
from console.answers import AnswerEncoder
from console.alerting.service import AlertingService
from console.audit.service import AuditService
from console.auth.service import AuthService
from console.auth.tokens import TokenService
from console.auth.users import UserService
from console.config import Config, ConfigError
from console.deploy.apps import parse_apps
from console.deploy.canary import CanaryAnalysis
from console.deploy.factory import DriverFactory
from console.deploy.inventory import Inventory
from console.deploy.known_hosts import KnownHostsService
from console.deploy.reload import read_apps
from console.deploy.service import DeployService
from console.errors import FleetdeckError
from console.i18n import tx
from console.ingest.admission import IngestAdmission
from console.ingest.remote_write import RemoteWriteDecoder
from console.ingest.retention import prune_forever
from console.ingest.service import IngestService
from console.live import LiveBus, SocketRegistry
from console.logs.service import LogService
from console.maintenance.deploys import DeployHold, DeployWatcher, app_hosts, check_watch
from console.maintenance.service import MaintenanceService
from console.notify.config import load_notifications
from console.notify.dispatch import Dispatcher
from console.notify.inhibit import Inhibitor
from console.notify.delivery import DeliveryWorker
from console.notify.muting import Muting
from console.notify.posted import PostedAlerts
from console.notify.store import AlertStore
from console.ops.service import ReadinessService
from console.probes.config import parse_probes
from console.probes.service import ProbeService
from console.promql.service import PromQLService
from console.query.service import QueryService
from console.silences.service import SilenceService
from console.secrets import SecretService
from console.storage.database import Database
from console.storage.partitions import PartitionMaintenance
from console.tiers.service import RollupService
from console.telemetry import ConsoleMetrics


@dataclass(kw_only=True)  # built by build_services, by keyword
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
    rollups: RollupService
    logs: LogService
    admission: IngestAdmission
    auth: AuthService
    secrets: SecretService
    inventory: Inventory
    known_hosts: KnownHostsService
    sockets: SocketRegistry
    probes: ProbeService
    remote_write: RemoteWriteDecoder = field(default_factory=RemoteWriteDecoder)
    promql: PromQLService
    alerting: AlertingService
    readiness: ReadinessService
    muting: Muting = field(default_factory=Muting)
    alert_store: AlertStore = field(default_factory=AlertStore)
    maintenance: MaintenanceService  # windows: a muter, reasons window:<name>
    deploy_hold: DeployHold  # a muter, reasons deploy:<id>
    deploy_watch: DeployWatcher  # raises DeployRegression after deploys
    silences: SilenceService
    dispatcher: Dispatcher  # routes alert_store's alerts into the outbox (console/notify/dispatch.py)
    delivery: DeliveryWorker
    leader: Leadership  # which console of those sharing the database runs the run-once jobs
    partitions: PartitionMaintenance  # PostgreSQL: time partitions made ahead
    shared: SharedState  # re-reads silences, windows and posted alerts another console changed
    posted_alerts: PostedAlerts  # alerts posted to the Alertmanager API, through the database
    answers: AnswerEncoder = field(default_factory=AnswerEncoder)  # large answers' JSON and gzip, off the event loop
    _pruning: asyncio.Task | None = field(default=None, init=False, repr=False)
    _watching: asyncio.Task | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Start background work (deploy runners, cleanup, rollups and retention). Call on
        the running IOLoop."""
        self.leader.try_acquire()  # alone on its database, a console leads from its first moment
        self.leader.start()
        self.bus.start()
        self.shared.start()
        self.ingest.start()
        self.deploys.start()
        self.partitions.start()
        self.rollups.start()
        self.logs.start_retention()
        self.probes.start()
        self._pruning = asyncio.ensure_future(prune_forever(self))
        self._watching = asyncio.ensure_future(self.sockets.watch())
        for part in (self.alerting, self.maintenance, self.deploy_hold, self.deploy_watch, self.silences,
                     self.dispatcher, self.delivery):
            part.start()

    async def reload(self) -> dict[str, str]:
        """Re-read the rule files and the notification configuration (``POST /-/reload``,
        SIGHUP); returns what was refused, ``{file or "alerting.notifications": message}``
        (each refused part keeps its previous version running)."""
        errors = dict(await self.alerting.reload())  # a copy: the service keeps its own
        errors.update(await self.dispatcher.reload(self.config))
        try:
            await self.reload_apps("system", "reload")
        except FleetdeckError as exc:
            errors["apps"] = exc.message
        return errors

    async def reload_apps(self, actor: str, source: str) -> dict:
        """Read ``apps:`` again (console/deploy/reload.py); see DeployService.reload_apps."""
        def read() -> dict:
            raw, apps = read_apps(self.config)
            self.config.apps = raw  # what this process runs now
            return apps

        return await self.deploys.reload_apps(read, actor, source)

    def close(self) -> None:
        self.leader.close()  # released first: another replica takes over at its next poll
        self.bus.close()
        self.shared.close()
        for task in (self._pruning, self._watching):
            if task is not None:
                task.cancel()
        for part in (self.partitions, self.probes, self.alerting, self.maintenance, self.deploy_hold, self.deploy_watch,
                     self.silences, self.dispatcher, self.delivery):
            part.close()
        self.deploys.close()
        self.users.passwords.close()
        self.ingest.close()
        self.query.close()  # its helper thread, before the database it reads
        self.answers.close()
        self.db.close()
        self.audit.close()


def build_services(config: Config, migrate: bool = True, clock: Callable[[], float] = time.time,
                   metrics_dir: Path | None = None) -> Services:
    """Open the database (applying migrations unless ``migrate`` is False) and wire services:
    the administrative ones (console/admin/services.py), then the rest.
    ``metrics_dir``: the workers' shared metric files (a worker of ``serve --workers N``).
    Raises ConfigError for an invalid ``apps:``, ``inventory:`` or ``probes:`` section
    before touching the database."""
    apps = parse_apps(config.apps, config.source_of("apps"))
    probes = parse_probes(config.probes, config.source_of("probes"))
    check_watch(config.alerting.deploy_watch, apps, config.source_of("alerting"))
    admin = build_admin_services(config, migrate=migrate, clock=clock)
    db, users, tokens, audit, auth = admin.db, admin.users, admin.tokens, admin.audit, admin.auth
    secret_store, known_hosts, inventory = admin.secrets, admin.known_hosts, admin.inventory
    c = config.console
    ingest = IngestService(db, clock=clock, config=c)
    metrics = ConsoleMetrics(metrics_dir)
    relay = live_relay(config.database_url, metrics)
    bus = LiveBus(relay, subscriptions=metrics.live_subscribers)
    leader = Leadership(config.database_url, registry=metrics.registry)
    promql = PromQLService(db, c.promql_timeout, c.promql_max_samples, clock=clock,
                           raw_retention_s=c.retention_raw_days * 86400, cache_cells=c.query_cache_points)
    logs = LogService(db, retention_days=c.log_retention_days, retention_bytes=c.log_retention_bytes,
                      retention_check_seconds=c.log_retention_check_seconds, clock=clock, leads=leader.leads)
    alerting = AlertingService(db, config.alerting, max_samples=c.promql_max_samples, query_timeout_s=c.promql_timeout,
                               host_interval_s=c.default_interval, down_after_intervals=c.down_after_intervals,
                               registry=metrics.registry, clock=clock, logs=logs, leads=leader.leads)
    promql.virtual = alerting  # up, ALERTS and the other computed series for every PromQL query
    alerting.ingest = ingest  # recording rules' samples are stored as series
    muting = Muting()
    alerting.muting = muting
    targets = app_hosts(apps, inventory)
    maintenance = MaintenanceService(db, audit, targets, clock=clock)
    deploy_hold = DeployHold(db, config.alerting.deploy_settle, targets, clock=clock)
    deploy_watch = DeployWatcher(db, promql, config.alerting.deploy_watch, clock=clock, leads=leader.leads)
    muting.register(maintenance)
    muting.register(deploy_hold)
    alerting.sources.append(deploy_watch)
    silences = SilenceService(db, clock, audit=audit)
    db.run(silences.load)
    muting.register(silences)
    shared = SharedState(relay)
    silences.shared = maintenance.shared = shared
    shared.watch("silences", silences.reread)
    shared.watch("windows", maintenance.reread)
    alert_store = AlertStore()
    alerting.alert_store, alerting.external_url = alert_store, config.public_url
    inhibitor = Inhibitor(alert_store)
    posted_alerts = PostedAlerts(db, alert_store, clock=clock)
    posted_alerts.shared = shared
    shared.watch("alerts", posted_alerts.reread)
    muting.register(inhibitor)
    dispatcher = Dispatcher(db, alert_store, muting,
                            load_notifications(config.alerting.notifications, config.document,
                                               Path(config.path).resolve().parent if config.path else None),
                            inhibitor=inhibitor, default_inhibit_rules=config.alerting.default_inhibit_rules,
                            external_url=config.public_url, clock=clock, leads=leader.leads)
    muting.register(dispatcher)  # time_interval:<name> reasons in the history and the API
    # The receivers are read from the dispatcher's loaded configuration at every send, so a reload applies.
    delivery = DeliveryWorker(db, lambda: dispatcher.config, secret_store,
                              config.alerting.delivery, registry=metrics.registry, clock=clock, audit=audit,
                              leads=leader.leads)
    dispatcher.on_enqueued = delivery.wake
    return Services(config=config, db=db, bus=bus, metrics=metrics,
                    users=users, tokens=tokens,
                    ingest=ingest,
                    query=QueryService(c, clock=clock, db=db),
                    audit=audit, deploys=DeployService(db, bus, audit, apps, clock=clock,
                                                       driver_factory=DriverFactory(db, inventory, known_hosts,
                                                                                    secret_store),
                                                       canary=CanaryAnalysis(promql, alerting, alert_store, clock)),
                    clock=clock, rollups=RollupService(db, c, clock=clock, leads=leader.leads),
                    logs=logs,
                    admission=IngestAdmission(c.ingest_rate_per_host, c.ingest_burst_per_host,
                                              c.ingest_max_inflight, samples_rate=c.ingest_samples_per_host,
                                              samples_burst=c.ingest_samples_burst_per_host,
                                              lines_rate=c.ingest_lines_per_host,
                                              lines_burst=c.ingest_lines_burst_per_host),
                    auth=auth, secrets=secret_store, inventory=inventory, known_hosts=known_hosts,
                    sockets=SocketRegistry(db, tokens.forget),
                    probes=ProbeService(probes, ingest, clock=clock, leads=leader.leads),
                    promql=promql, alerting=alerting, muting=muting,
                    readiness=ReadinessService(db, metrics, c.storage_retry_after),
                    maintenance=maintenance, deploy_hold=deploy_hold, deploy_watch=deploy_watch,
                    silences=silences, alert_store=alert_store, dispatcher=dispatcher, delivery=delivery,
                    leader=leader, shared=shared, posted_alerts=posted_alerts,
                    partitions=PartitionMaintenance(db, c, clock=clock, leads=leader.leads, registry=metrics.registry))


def live_relay(database_url: str, metrics: ConsoleMetrics) -> FrameRelay | None:
    """How live frames reach the other consoles of the database (docs/scaling.md):
    LISTEN/NOTIFY on PostgreSQL, datagrams beside a SQLite file; none in memory."""
    if database_url.startswith("postgresql"):
        return PostgresRelay(database_url, registry=metrics.registry)
    path = database_url.split("///", 1)[-1]
    if not path or path == ":memory:":
        return None
    return SocketRelay(Path(path), registry=metrics.registry)


COOKIE_SECRET_ENV = "FLEETDECK_COOKIE_SECRET"


def cookie_secret(data_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """The signing secret for session cookies: ``$FLEETDECK_COOKIE_SECRET`` (at least 32
    characters; consoles behind one load balancer share it, docs/scaling.md), else the
    file ``data_dir/cookie_secret``, created on first use (0600). Raises ConfigError for
    a variable that is set but too short."""
    value = (os.environ if env is None else env).get(COOKIE_SECRET_ENV, "")
    if value:
        if len(value.strip()) < 32:
            raise ConfigError(tx("{variable}: must be at least 32 characters (e.g. the output of "
                                 "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`), got {length}",
                                 variable=COOKIE_SECRET_ENV, length=len(value.strip())))
        return value.strip()
    path = data_dir / "cookie_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written whole under a name of its own, then linked into place: the workers of
    # `serve --workers N` start together, and one must neither fail on the file another
    # made a moment before (it crashed the worker) nor read it half-written.
    draft = data_dir / f".cookie_secret.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        with contextlib.suppress(FileExistsError):  # another process's secret came first: it is the one
            os.link(draft, path)
    finally:
        draft.unlink()
    return path.read_text().strip()
