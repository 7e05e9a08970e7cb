"""HTTP handlers of deploys (docs/deploys.md): parse, authorise (the route
table's role), call ``services.deploys``, render JSON or a page."""
from __future__ import annotations

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
    """``POST /api/v1/apps/{app}/deploys {"version", "reason", "force"}`` → 202 the queued deploy."""

    async def post(self, app: str) -> None:
        self.json_body()  # 400 for a body that is not a JSON object, before anything else
        deploys = self.services.deploys
        deploys.app(app)  # 422/404 before looking at the fields
        require_may_deploy(self, app)
        body = self.body()
        row = await deploys.create(app, body.version, actor_of(self), self.client_ip, body.reason, body.force)
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class AppRollbackHandler(ApiHandler):
    """``POST /api/v1/apps/{app}/rollback {"to": VERSION?, "reason"}`` → 202 the queued rollback."""

    async def post(self, app: str) -> None:
        self.json_body()
        self.services.deploys.app(app)
        require_may_deploy(self, app)
        body = self.body()
        row = await self.services.deploys.rollback(app, body.to, actor_of(self), self.client_ip,
                                                   body.reason)
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class DeploysHandler(ApiHandler):
    """``GET /api/v1/deploys?app=&host=&since=&until=&limit=&before=`` → ``{"deploys": [...],
    "next"}``, newest first; ``since``/``until`` in Unix seconds (chart markers use these)."""

    async def get(self) -> None:
        args = self.query()
        self.write_json(await self.services.deploys.list(
            app=args.app or None, host=args.host or None, since=args.since, until=args.until,
            limit=args.limit, before=args.before))


class DeployHandler(ApiHandler):
    """``GET /api/v1/deploys/{id}`` → the deploy with its ``steps``."""

    async def get(self, deploy_id: str) -> None:
        self.write_json(await self.services.deploys.get(_deploy_id(deploy_id)))


class DeployEventsHandler(ApiHandler):
    """``GET /api/v1/deploys/{id}/events?after=N&limit=`` → events with ``seq > N``."""

    async def get(self, deploy_id: str) -> None:
        args = self.query()
        self.write_json(await self.services.deploys.events(_deploy_id(deploy_id), args.after, min(args.limit, 5000)))


class DeployCancelHandler(ApiHandler):
    """``POST /api/v1/deploys/{id}/cancel`` → the deploy (a running one rolls back, then ends
    ``cancelled``)."""

    async def post(self, deploy_id: str) -> None:
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        require_may_deploy(self, deploy["app"])
        self.write_json(await self.services.deploys.cancel(deploy["id"], actor_of(self),
                                                           self.client_ip), 202)


class DeploysPageHandler(PageHandler):
    def get(self) -> None:
        self.render("deploys.html", app=self.get_argument("app", ""))


class DeployPageHandler(PageHandler):
    async def get(self, deploy_id: str) -> None:
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        watcher = self.services.deploy_watch  # the post-deploy watch's verdicts (docs/alerting.md "Deploys")
        watch = await watcher.verdicts(deploy["id"]) if watcher is not None else []
        self.render("deploy.html", deploy=deploy, watch=watch)
