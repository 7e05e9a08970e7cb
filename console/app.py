"""The one route table and the application factory.

Each route names its handler and the role it requires (deny by default: see
``console/handlers.py``). ``/prometheus/api/v1/`` holds the Prometheus-compatible routes:
the query API (console/promql, docs/promql.md) and remote write (docs/prometheus.md).
"""
from __future__ import annotations

import logging
import time

import tornado.web

from console.deploy.approval_handlers import (AppPromoteHandler, AppsReloadHandler, DeployApproveHandler,
                                              DeployRejectHandler)
from console.deploy.handlers import (AppDeploysHandler, AppHandler, AppRollbackHandler, AppsHandler,
                                     DeployCancelHandler, DeployEventsHandler, DeployHandler, DeployPageHandler,
                                     DeploysHandler, DeploysPageHandler)
from console.alerting.handlers import (AlertHistoryHandler, AlertsPageHandler, PromAlertsHandler, PromRulesHandler,
                                       ReloadHandler, RulePageHandler)
from console.audit.handlers import AuditHandler, AuditPageHandler, AuditVerifyHandler
from console.auth.handlers import (EnrolHandler, MeHandler, SecretHandler, SecretsHandler, TokenHandler,
                                   TokensHandler, UserHandler, UsersHandler)
from console.handlers import BaseHandler, NotFoundHandler, OpenApiHandler, StaticFilesHandler
from console.i18n import I18n
from console.ingest.handlers import IngestHandler, RemoteWriteHandler
from console.live_socket import LiveSocketHandler
from console.notify.handlers import NotificationsHandler, NotificationsPageHandler, NotificationTestHandler
from console.logs.handlers import LogsHandler
from console.ops.handlers import HealthzHandler, MetricsHandler, ReadyzHandler
from console.promql.handlers import (BuildInfoHandler, ExemplarsHandler, LabelsHandler, LabelValuesHandler,
                                     MetadataHandler, QueryHandler, QueryRangeHandler, RuntimeInfoHandler,
                                     SeriesHandler)
from console.query.handlers import HostHandler, HostsHandler, MetricNamesHandler, MetricsRangeHandler
from console.openapi import build_document
from console.services import Services, cookie_secret
from console.admin.handlers import (
    SecretsPageHandler,
    SettingsHandler,
    SettingsPageHandler,
    TokensPageHandler,
    UsersPageHandler,
)
from console.ui.handlers import ExplorePageHandler, HostPageHandler, LoginHandler, LogoutHandler, OverviewHandler
from console.logs.pages import LogsPageHandler
from console.maintenance.handlers import MaintenancePageHandler, WindowHandler, WindowsHandler
from console.silences.api import AlertsHandler as AmAlertsHandler, SilenceHandler, SilencesHandler, StatusHandler
from console.silences.pages import SilenceNewPageHandler, SilencesPageHandler

# (pattern, handler, required role)
ROUTES = (
    (r"/healthz", HealthzHandler, "public"),
    (r"/readyz", ReadyzHandler, "public"),
    (r"/metrics", MetricsHandler, "public"),
    (r"/login", LoginHandler, "public"),
    (r"/logout", LogoutHandler, "viewer"),
    (r"/", OverviewHandler, "viewer"),
    (r"/hosts/([^/]+)", HostPageHandler, "viewer"),
    (r"/explore", ExplorePageHandler, "viewer"),
    (r"/deploys", DeploysPageHandler, "viewer"),
    (r"/deploys/([^/]+)", DeployPageHandler, "viewer"),
    (r"/api/v1/ingest", IngestHandler, "agent"),
    (r"/api/v1/write", RemoteWriteHandler, "agent"),
    (r"/prometheus/api/v1/write", RemoteWriteHandler, "agent"),
    (r"/api/v1/hosts", HostsHandler, "viewer"),
    (r"/api/v1/hosts/([^/]+)", HostHandler, "admin"),
    (r"/api/v1/metrics/names", MetricNamesHandler, "viewer"),
    (r"/api/v1/metrics/range", MetricsRangeHandler, "viewer"),
    (r"/api/v1/live", LiveSocketHandler, "viewer"),
    (r"/api/v1/apps", AppsHandler, "viewer"),
    (r"/api/v1/apps/reload", AppsReloadHandler, {"GET": "viewer", "*": "admin"}),  # GET: an app called reload
    (r"/api/v1/apps/([^/]+)", AppHandler, "viewer"),
    (r"/api/v1/apps/([^/]+)/promote", AppPromoteHandler, "deployer"),
    (r"/api/v1/apps/([^/]+)/deploys", AppDeploysHandler, "deployer"),
    (r"/api/v1/apps/([^/]+)/rollback", AppRollbackHandler, "deployer"),
    (r"/api/v1/deploys", DeploysHandler, "viewer"),
    (r"/api/v1/deploys/([^/]+)", DeployHandler, "viewer"),
    (r"/api/v1/deploys/([^/]+)/events", DeployEventsHandler, "viewer"),
    (r"/api/v1/deploys/([^/]+)/cancel", DeployCancelHandler, "deployer"),
    (r"/api/v1/deploys/([^/]+)/approve", DeployApproveHandler, "deployer"),  # and the app's approver role
    (r"/api/v1/deploys/([^/]+)/reject", DeployRejectHandler, "deployer"),
    (r"/api/v1/logs", LogsHandler, "viewer"),
    (r"/logs", LogsPageHandler, "viewer"),
    (r"/alerts", AlertsPageHandler, "viewer"),
    (r"/alerts/rules/([^/]+)/([^/]+)", RulePageHandler, "viewer"),
    (r"/audit", AuditPageHandler, "admin"),
    (r"/api/v1/openapi.json", OpenApiHandler, "public"),
    (r"/api/v1/me", MeHandler, "viewer"),
    (r"/api/v1/users", UsersHandler, "admin"),
    (r"/api/v1/users/([^/]+)", UserHandler, "admin"),
    (r"/api/v1/tokens", TokensHandler, "admin"),
    (r"/api/v1/tokens/([^/]+)", TokenHandler, "admin"),
    (r"/api/v1/enrol", EnrolHandler, "public"),
    (r"/api/v1/audit", AuditHandler, "admin"),
    (r"/api/v1/audit/verify", AuditVerifyHandler, "admin"),
    (r"/api/v1/secrets", SecretsHandler, "admin"),
    (r"/api/v1/secrets/([^/]+)", SecretHandler, "admin"),
    (r"/api/v1/settings", SettingsHandler, "admin"),
    (r"/users", UsersPageHandler, "admin"),
    (r"/tokens", TokensPageHandler, "admin"),
    (r"/secrets", SecretsPageHandler, "admin"),
    (r"/settings", SettingsPageHandler, "admin"),
    (r"/prometheus/api/v1/query", QueryHandler, "viewer"),
    (r"/prometheus/api/v1/query_range", QueryRangeHandler, "viewer"),
    (r"/prometheus/api/v1/series", SeriesHandler, "viewer"),
    (r"/prometheus/api/v1/labels", LabelsHandler, "viewer"),
    (r"/prometheus/api/v1/label/([^/]+)/values", LabelValuesHandler, "viewer"),
    (r"/prometheus/api/v1/query_exemplars", ExemplarsHandler, "viewer"),
    (r"/prometheus/api/v1/metadata", MetadataHandler, "viewer"),
    (r"/prometheus/api/v1/status/buildinfo", BuildInfoHandler, "viewer"),
    (r"/prometheus/api/v1/status/runtimeinfo", RuntimeInfoHandler, "viewer"),
    (r"/prometheus/api/v1/rules", PromRulesHandler, "viewer"),
    (r"/prometheus/api/v1/alerts", PromAlertsHandler, "viewer"),
    (r"/api/v1/alerts/history", AlertHistoryHandler, "viewer"),
    (r"/-/reload", ReloadHandler, "admin"),
    # Maintenance windows: read as viewer; create and delete need deployer.
    (r"/maintenance", MaintenancePageHandler, "viewer"),
    (r"/api/v1/maintenance/windows", WindowsHandler, {"GET": "viewer", "*": "deployer"}),
    (r"/api/v1/maintenance/windows/([^/]+)", WindowHandler, {"GET": "viewer", "*": "deployer"}),
    # Alertmanager's API v2 (console/silences/api.py): reads need viewer; POST and DELETE
    # need deployer (POST alerts also takes an agent token: AlertsHandler.roles).
    (r"/alertmanager/api/v2/status", StatusHandler, "viewer"),
    (r"/alertmanager/api/v2/alerts", AmAlertsHandler, {"GET": "viewer", "*": "deployer"}),
    (r"/alertmanager/api/v2/silences", SilencesHandler, {"GET": "viewer", "*": "deployer"}),
    (r"/alertmanager/api/v2/silence/([^/]+)", SilenceHandler, {"GET": "viewer", "*": "deployer"}),
    (r"/alerts/silences", SilencesPageHandler, "viewer"),
    (r"/alerts/silences/new", SilenceNewPageHandler, "viewer"),
    (r"/api/v1/notifications", NotificationsHandler, "viewer"),
    (r"/api/v1/notifications/test", NotificationTestHandler, "admin"),
    (r"/notifications", NotificationsPageHandler, "viewer"),
)

access_log = logging.getLogger("tornado.access")
# Request metrics are labelled with these methods (any other: "other") and with the route
# pattern of the route table ("static" for static files, "*" for no route): never with
# text a client chose, which would grow /metrics by a series per request.
METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def make_app(services: Services, debug: bool = False) -> tornado.web.Application:
    """Build the Tornado application around ``services``."""
    web_dir = services.config.web_dir
    handlers = [tornado.web.url(pattern, handler, {"services": services, "role": role, "route": pattern})
                for pattern, handler, role in ROUTES]

    def log_request(handler: tornado.web.RequestHandler) -> None:
        duration = handler.request.request_time()
        method = handler.request.method if handler.request.method in METRIC_METHODS else "other"
        route = handler.route if isinstance(handler, BaseHandler) else "static"
        status = handler.get_status()
        services.metrics.request_duration.labels(method, route, status).observe(duration)
        # Successful requests (an ingest every interval from every agent) stay at DEBUG.
        level = logging.DEBUG if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        access_log.log(level, "%d %s %.1fms", status, handler._request_summary(), 1000.0 * duration)

    return tornado.web.Application(
        handlers,
        template_path=str(web_dir / "templates"),
        static_path=str(web_dir / "static"),
        static_handler_class=StaticFilesHandler,
        cookie_secret=cookie_secret(services.config.data_dir),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": False, "samesite": "Strict",
                            "secure": services.config.console.cookie_secure},
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        log_function=log_request,
        websocket_ping_interval=30,
        compress_response=True,
        debug=debug,
        started_at=time.time(),
        openapi=build_document(ROUTES),
        i18n=I18n(),  # console/i18n.py: the catalogs of the pages and scripts
    )
