"""HTTP handlers of deploys (docs/deploys.md): parse, authorise (the route
table's role), call ``services.deploys``, render JSON or a page."""
from __future__ import annotations

import math

from console.errors import ApiError
from console.handlers import ApiHandler, PageHandler
from console.params import INT32_MAX, ascii_uint


def actor_of(handler: ApiHandler | PageHandler) -> str:
    """``api:<token name>`` or ``user:<name>``: who the audit log names."""
    return handler.principal.actor


def require_may_deploy(handler: ApiHandler, app: str) -> None:
    """403 ``app_not_allowed`` unless the caller may deploy ``app`` (a deployer may be
    limited to named apps; see console/auth/roles.py)."""
    if not handler.principal.may_deploy(app):
        raise ApiError(403, "app_not_allowed", f"{handler.principal.actor} may not deploy or roll back {app!r}")


def _int_arg(handler: ApiHandler, name: str, default: int | None, minimum: int = 0) -> int | None:
    """An integer query argument in ``[minimum, 2**31 - 1]`` (deploy ids and event
    sequence numbers are 32-bit columns); raises ApiError 400 otherwise."""
    raw = handler.get_argument(name, None)
    if raw is None or raw == "":
        return default
    value = ascii_uint(raw, INT32_MAX)
    if value is None or value < minimum:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {minimum} to {INT32_MAX}",
                       {name: raw[:50]})
    return value


def _time_arg(handler: ApiHandler, name: str) -> float | None:
    raw = handler.get_argument(name, None)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(400, "invalid_parameter", f"{name} must be Unix seconds", {name: raw[:50]})
    return value


def _deploy_id(raw: str) -> int:
    deploy_id = ascii_uint(raw, INT32_MAX)
    if deploy_id is None:
        raise ApiError(404, "unknown_deploy", f"no deploy {raw[:20]!r}")
    return deploy_id


class AppsHandler(ApiHandler):
    """``GET /api/v1/apps`` → ``[{"name", "driver", "target", "health_check", "strategy",
    "current", "active", ...}]``."""

    async def get(self) -> None:
        self.write_json(await self.services.deploys.app_summaries())


class AppHandler(ApiHandler):
    """``GET /api/v1/apps/{app}`` → the app's summary plus ``instances`` from the engine."""

    async def get(self, app: str) -> None:
        deploys = self.services.deploys
        deploys.app(app)
        summary = next(s for s in await deploys.app_summaries() if s["name"] == app)
        summary.update(await deploys.instances(app))
        self.write_json(summary)


class AppDeploysHandler(ApiHandler):
    """``POST /api/v1/apps/{app}/deploys {"version", "reason"}`` → 202 the queued deploy."""

    async def post(self, app: str) -> None:
        body = self.json_body()
        deploys = self.services.deploys
        deploys.app(app)  # 422/404 before looking at the body
        require_may_deploy(self, app)
        if "version" not in body:
            raise ApiError(422, "invalid_version", "version is required")
        row = await deploys.create(app, body.get("version"), actor_of(self), self.request.remote_ip,
                                   body.get("reason"))
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class AppRollbackHandler(ApiHandler):
    """``POST /api/v1/apps/{app}/rollback {"to": VERSION?, "reason"}`` → 202 the queued rollback."""

    async def post(self, app: str) -> None:
        body = self.json_body()
        self.services.deploys.app(app)
        require_may_deploy(self, app)
        row = await self.services.deploys.rollback(app, body.get("to"), actor_of(self), self.request.remote_ip,
                                                   body.get("reason"))
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class DeploysHandler(ApiHandler):
    """``GET /api/v1/deploys?app=&host=&since=&until=&limit=&before=`` → ``{"deploys": [...],
    "next"}``, newest first; ``since``/``until`` in Unix seconds (chart markers use these)."""

    async def get(self) -> None:
        self.write_json(await self.services.deploys.list(
            app=self.get_argument("app", None) or None, host=self.get_argument("host", None) or None,
            since=_time_arg(self, "since"), until=_time_arg(self, "until"),
            limit=_int_arg(self, "limit", 50, 1), before=_int_arg(self, "before", None)))


class DeployHandler(ApiHandler):
    """``GET /api/v1/deploys/{id}`` → the deploy with its ``steps``."""

    async def get(self, deploy_id: str) -> None:
        self.write_json(await self.services.deploys.get(_deploy_id(deploy_id)))


class DeployEventsHandler(ApiHandler):
    """``GET /api/v1/deploys/{id}/events?after=N&limit=`` → events with ``seq > N``."""

    async def get(self, deploy_id: str) -> None:
        limit = min(_int_arg(self, "limit", 1000, 1), 5000)
        self.write_json(await self.services.deploys.events(_deploy_id(deploy_id), _int_arg(self, "after", 0), limit))


class DeployCancelHandler(ApiHandler):
    """``POST /api/v1/deploys/{id}/cancel`` → the deploy (a running one rolls back, then ends
    ``cancelled``)."""

    async def post(self, deploy_id: str) -> None:
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        require_may_deploy(self, deploy["app"])
        self.write_json(await self.services.deploys.cancel(deploy["id"], actor_of(self),
                                                           self.request.remote_ip), 202)


class DeploysPageHandler(PageHandler):
    def get(self) -> None:
        self.render("deploys.html", app=self.get_argument("app", ""))


class DeployPageHandler(PageHandler):
    async def get(self, deploy_id: str) -> None:
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        self.render("deploy.html", deploy=deploy)
