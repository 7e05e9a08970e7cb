"""HTTP handlers of approvals, promotions and the apps reload (docs/deploys.md,
"Approvals and environments"); every 403 is audited (handlers.DeployActionHandler)."""
from __future__ import annotations

from console.deploy.approvals import identity_of
from console.errors import FleetdeckError
from console.deploy.handlers import AppHandler, DeployActionHandler, OnDeployHandler, _deploy_id, actor_of, \
    require_may_deploy


class _DecisionHandler(OnDeployHandler):
    approve = True

    async def act(self, deploy_id: str) -> None:
        self.json_body()
        deploy = await self.services.deploys.get(_deploy_id(deploy_id))
        require_may_deploy(self, deploy["app"])
        body = self.body()
        self.write_json(await self.services.deploys.decide(deploy["id"], self.principal, self.approve,
                                                           self.client_ip, body.reason))


class DeployApproveHandler(_DecisionHandler):
    """``POST /api/v1/deploys/{id}/approve {"reason"?}`` → the deploy, now ``queued``. 403
    ``self_approval`` for the requester, ``approver_role`` below the app's approver role,
    ``app_not_allowed`` outside a deployer's apps; 409 ``not_awaiting_approval`` or
    ``approval_expired``."""

    action = "deploy.approve"


class DeployRejectHandler(_DecisionHandler):
    """``POST /api/v1/deploys/{id}/reject {"reason"?}`` → the deploy, now ``rejected``
    (errors as approve)."""

    action = "deploy.reject"
    approve = False


class AppPromoteHandler(DeployActionHandler):
    """``POST /api/v1/apps/{app}/promote {"from": ENV, "to": ENV, "reason"?}`` → 202 the
    deploy of the version running in ``from`` to ``to``; 409 ``nothing_to_promote``."""

    action = "deploy.promote"

    async def act(self, app: str) -> None:
        self.json_body()
        deploys = self.services.deploys
        deploys.app(app)
        require_may_deploy(self, app)
        body = self.body()
        row = await deploys.promote(app, body.source, body.to, actor_of(self), self.client_ip, body.reason,
                                    identity_of(self.principal))
        self.set_header("Location", f"/api/v1/deploys/{row['id']}")
        self.write_json(row, 202)


class AppsReloadHandler(AppHandler):
    """``POST /api/v1/apps/reload`` (admin) → ``{"added", "removed", "changed",
    "unchanged"}`` app names: read ``apps:`` from the configuration file again. An invalid
    file is refused whole with 422 ``apps_refused`` (``details.errors``: one line per
    problem, naming the key and FILE line N); the previous apps stay. A 403 (not an admin)
    is audited as ``apps.reload`` with ``outcome: denied``. Deploys running keep
    the definition they started with. ``GET`` shows an app called ``reload``."""

    async def prepare(self) -> None:
        try:
            await super().prepare()
        except FleetdeckError as exc:  # a reload refused by the route's role is audited, as deploy actions are
            if self.request.method == "POST" and exc.status == 403 and self.current_user is not None:
                await self.services.deploys.audit_denied_reload(self.principal.actor, self.client_ip,
                                                                {"code": exc.code, "message": exc.message})
            raise

    async def get(self, app: str = "reload") -> None:
        await super().get(app)

    async def post(self) -> None:
        self.write_json(await self.services.reload_apps(actor_of(self), self.client_ip))
