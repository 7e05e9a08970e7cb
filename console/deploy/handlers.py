"""HTTP handlers of deploys (docs/deploys.md): parse, authorise (the route
table's role), call ``services.deploys``, render JSON or a page."""
from __future__ import annotations

from typing import Any

from console.deploy.approvals import identity_of
from console.errors import ApiError, FleetdeckError
from console.handlers import ApiHandler, PageHandler
from console.i18n import localize_message, tx
from console.params import INT32_MAX, ascii_uint


def actor_of(handler: ApiHandler | PageHandler) -> str:
    """``api:<token name>`` or ``user:<name>``: who the audit log names."""
    return handler.principal.actor


def require_may_deploy(handler: ApiHandler, app: str) -> None:
    """403 ``app_not_allowed`` unless the caller may deploy ``app`` (a deployer may be
    limited to named apps; see console/auth/roles.py)."""
    if not handler.principal.may_deploy(app):
        raise ApiError(403, "app_not_allowed", tx("{actor} may not deploy or roll back {app}",
                                                  actor=handler.principal.actor, app=repr(app)))


def _deploy_id(raw: str) -> int:
    deploy_id = ascii_uint(raw, INT32_MAX)
    if deploy_id is None:
        raise ApiError(404, "unknown_deploy", tx("no deploy {id}", id=repr(raw[:20])))
    return deploy_id


class DeployActionHandler(ApiHandler):
    """A POST that changes deploys (``act``). Every refusal with 403, by the route's role or
    by the handler (an app outside a deployer's list, an approver's role, self-approval),
    is audited as ``action`` on ``app:APP`` with ``outcome: denied``."""

    action = ""

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except FleetdeckError as exc:
            await self.audit_denied(exc)
            raise

    async def post(self, target: str) -> None:
        try:
            await self.act(target)
        except FleetdeckError as exc:
            await self.audit_denied(exc)
            raise

    async def act(self, target: str) -> None:
        """The action on ``target``, the route's one path argument (an app or a deploy id)."""
        raise NotImplementedError

    async def target_app(self) -> tuple[str, dict]:
        """The app the request names and details for the audit entry (the path's app by
        default; routes on a deploy id look the deploy up)."""
        return self.path_args[0], {}

    async def audit_denied(self, exc: FleetdeckError) -> None:
        if exc.status != 403 or self.current_user is None:
            return
        app, details = await self.target_app()
        await self.services.deploys.audit_denied(self.principal.actor, self.action, app, self.client_ip,
                                                 {**details, "code": exc.code, "message": exc.message})


class OnDeployHandler(DeployActionHandler):
    """A deploy action on ``/api/v1/deploys/{id}/...``."""

    async def target_app(self) -> tuple[str, dict]:
        deploy_id = ascii_uint(self.path_args[0], INT32_MAX)
        try:
            deploy = await self.services.deploys.get(deploy_id) if deploy_id is not None else None
        except FleetdeckError:
            deploy = None
        return (deploy["app"] if deploy else "", {"deploy_id": deploy_id, "environment":
                                                  deploy["environment"] if deploy else None})


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


class AppDeploysHandler(DeployActionHandler):
    """``POST /api/v1/apps/{app}/deploys {"version", "reason", "environment", "force"}`` → 202 the
    queued deploy (``awaiting_approval`` for a protected app or environment)."""

    action = "deploy.create"

    async def act(self, app: str) -> None:
        self.json_body()  # 400 for a body that is not a JSON object, before anything else
        deploys = self.services.deploys
        deploys.app(app)  # 422/404 before looking at the fields
        require_may_deploy(self, app)
        body = self.body()
        row = await deploys.create(app, body.version, actor_of(self), self.client_ip, body.reason,
                                   body.environment, identity_of(self.principal), body.force)
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class AppRollbackHandler(DeployActionHandler):
    """``POST /api/v1/apps/{app}/rollback {"to": VERSION?, "reason", "environment"}`` → 202
    the queued rollback."""

    action = "deploy.rollback"

    async def act(self, app: str) -> None:
        self.json_body()
        self.services.deploys.app(app)
        require_may_deploy(self, app)
        body = self.body()
        row = await self.services.deploys.rollback(app, body.to, actor_of(self), self.client_ip,
                                                   body.reason, body.environment, identity_of(self.principal))
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
        self.write_json(localize_deploy(self, await self.services.deploys.get(_deploy_id(deploy_id))))


class DeployEventsHandler(ApiHandler):
    """``GET /api/v1/deploys/{id}/events?after=N&limit=`` → events with ``seq > N``."""

    async def get(self, deploy_id: str) -> None:
        args = self.query()
        page = await self.services.deploys.events(_deploy_id(deploy_id), args.after, min(args.limit, 5000))
        # The console's own messages in the request's language (docs/dashboard.md "Languages").
        lookup = self.settings["i18n"].lookup(self.language)
        page["events"] = [localize_message(e, e["data"].get("i18n"), lookup) for e in page["events"]]
        self.write_json(page)


class DeployCancelHandler(OnDeployHandler):
    """``POST /api/v1/deploys/{id}/cancel`` → the deploy (a running one rolls back, then ends
    ``cancelled``)."""

    action = "deploy.cancel"

    async def act(self, deploy_id: str) -> None:
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        require_may_deploy(self, deploy["app"])
        self.write_json(await self.services.deploys.cancel(deploy["id"], actor_of(self),
                                                           self.client_ip), 202)


class DeploysPageHandler(PageHandler):
    def get(self) -> None:
        # The apps this user may deploy, roll back and cancel: the page shows actions for these only
        # (the API checks again on every call).
        deployable = [name for name in sorted(self.services.deploys.apps) if self.principal.may_deploy(name)]
        self.render("deploys.html", app=self.get_argument("app", ""), deployable=deployable)


class DeployPageHandler(PageHandler):
    async def get(self, deploy_id: str) -> None:
        deploy = localize_deploy(self, await self.services.deploys.get(_deploy_id(deploy_id)))
        watcher = self.services.deploy_watch  # the post-deploy watch's verdicts (docs/alerting.md "Deploys")
        watch = await watcher.verdicts(deploy["id"]) if watcher is not None else []
        self.render("deploy.html", deploy=deploy, watch=watch, may_deploy=self.principal.may_deploy(deploy["app"]),
                    may_decide=may_decide(self, deploy))


def localize_deploy(handler: ApiHandler | PageHandler, deploy: dict[str, Any]) -> dict[str, Any]:
    """``deploy`` (DeployService.get) with its error and the messages of its steps and canary in the
    request's language (docs/dashboard.md "Languages"): the console's own sentences are
    translated, the values in them (names, another program's output) kept."""
    lookup = handler.settings["i18n"].lookup(handler.language)
    deploy["steps"] = [localize_message(s, s.get("i18n"), lookup) for s in deploy["steps"]]
    if deploy.get("error_i18n"):
        said = localize_message({"message": deploy["error"]}, deploy.pop("error_i18n"), lookup)
        deploy["error"], deploy["error_parts"] = said["message"], said.get("message_parts")
    if deploy.get("canary"):
        deploy["canary"] = localize_message(deploy["canary"], deploy["canary"].get("i18n"), lookup)
    return deploy


def may_decide(handler: ApiHandler | PageHandler, deploy: dict[str, Any]) -> bool:
    """True when the caller may approve or reject ``deploy`` now (the page shows the
    buttons only then; the API checks again): it awaits approval, the caller may deploy
    its app, has the approver role and did not request it."""
    approval = deploy.get("approval") or {}
    principal = handler.principal
    return (deploy["state"] == "awaiting_approval" and approval.get("state") == "pending"
            and principal.may_deploy(deploy["app"]) and principal.allows(approval["approver_role"])
            and identity_of(principal) != approval["requested_by"])
