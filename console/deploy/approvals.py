"""Approvals of deploys to protected apps and environments (docs/deploys.md, "Approvals
and environments").

A deploy, rollback or promotion of a lane whose ``approval:`` is required is stored in
state ``awaiting_approval`` with a ``deploy_approvals`` row (``pending``). It becomes
``queued`` (and runs as any other) when a user other than the requester, whose role is
at least the lane's ``approver_role``, approves it; it ends ``rejected`` when such a user
rejects it and ``expired`` when nobody decided within ``timeout`` seconds. Requests,
decisions and expiries are audited (``deploy.approval.request``, ``deploy.approve``,
``deploy.reject``, ``deploy.approval.expire``).

"Another user": sessions and API tokens are compared by the user they act for (a token
of alice cannot approve alice's request); a token with no owner (made with the CLI) is
its own identity. The functions here run inside the deploy service's write transactions.
"""
from __future__ import annotations

from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.auth.roles import Principal
from console.deploy.environments import Approval
from console.errors import Conflict, Forbidden, NotFound
from console.i18n import Text, tx
from console.storage.models import Deploy, DeployApproval

AWAITING, REJECTED, EXPIRED = "awaiting_approval", "rejected", "expired"
PENDING, APPROVED = "pending", "approved"


def identity_of(principal: Principal) -> str:
    """Who a principal is for the four-eyes rule: ``user:NAME`` for a session or a token
    acting for NAME, else the token itself (``api:NAME``)."""
    return f"user:{principal.owner}" if principal.owner else principal.actor


class ApprovalDesk:
    """The approval rows of the deploy service (``clock``: Unix seconds)."""

    def __init__(self, audit: AuditService, clock: Callable[[], float]) -> None:
        self.audit = audit
        self._clock = clock

    def request(self, session: Session, d: Deploy, approval: Approval, identity: str, source: str) -> None:
        """Hold the new deploy ``d`` (flushed, state set by the caller) for approval."""
        now = self._clock()
        session.add(DeployApproval(deploy_id=d.id, state=PENDING, approver_role=approval.approver_role,
                                   requested_by=identity, requested_at=now, expires_at=now + approval.timeout,
                                   reason=""))
        self.audit.record(session, d.requested_by, "deploy.approval.request", f"app:{d.app}",
                          {"deploy_id": d.id, "environment": d.environment, "version": d.version,
                           "approver_role": approval.approver_role, "expires_at": now + approval.timeout},
                          source)

    def decide(self, session: Session, deploy_id: int, principal: Principal, approve: bool, reason: str,
               source: str) -> tuple[Deploy, str]:
        """Approve (the deploy becomes ``queued``) or reject (it ends ``rejected``) a pending
        request; returns the deploy and the event message. NotFound (404) for an unknown
        deploy, Conflict (409) when it awaits no approval (``not_awaiting_approval``) or the
        request expired (``approval_expired``, the deploy ends ``expired``), Forbidden (403)
        for the requester (``self_approval``) or a role below ``approver_role``
        (``approver_role``)."""
        d = session.get(Deploy, deploy_id)
        if d is None:
            raise NotFound(tx("no deploy {id}", id=deploy_id), code="unknown_deploy")
        row = session.get(DeployApproval, deploy_id)
        if row is None or d.state != AWAITING or row.state != PENDING:
            raise Conflict(tx("deploy {id} is {state}, not awaiting approval", id=deploy_id, state=d.state),
                           {"state": d.state}, code="not_awaiting_approval")
        now = self._clock()
        if now >= row.expires_at:
            raise Conflict(tx("the approval request of deploy {id} expired", id=deploy_id), code="approval_expired")
        if identity_of(principal) == row.requested_by:
            raise Forbidden(tx("{actor} requested deploy {id}; another user must approve or reject it",
                               actor=principal.actor, id=deploy_id),
                            {"requested_by": row.requested_by}, code="self_approval")
        if not principal.allows(row.approver_role):
            raise Forbidden(tx("deploy {id} of {app} needs an approver with the {role} role", id=deploy_id, app=d.app,
                               role=row.approver_role),
                            {"approver_role": row.approver_role}, code="approver_role")
        row.state, row.decided_by, row.decided_at, row.reason = (APPROVED if approve else REJECTED,
                                                                 identity_of(principal), now, reason)
        verb = "approve" if approve else "reject"
        self.audit.record(session, principal.actor, f"deploy.{verb}", f"app:{d.app}",
                          {"deploy_id": d.id, "environment": d.environment, "version": d.version,
                           "requested_by": row.requested_by, "reason": reason}, source)
        if approve:
            said = (tx("approved by {actor}: {reason}", actor=principal.actor, reason=reason) if reason
                    else tx("approved by {actor}", actor=principal.actor))
            d.state = "queued"
        else:
            said = (tx("rejected by {actor}: {reason}", actor=principal.actor, reason=reason) if reason
                    else tx("rejected by {actor}", actor=principal.actor))
            d.state, d.finished_at, d.error = REJECTED, now, str(said)
        return d, said

    def expire_due(self, session: Session) -> list[tuple[Deploy, Text]]:
        """End every pending request whose time is up (deploy state ``expired``); returns
        those deploys, each with why (translatable)."""
        now = self._clock()
        rows = session.execute(select(DeployApproval, Deploy).join(Deploy, Deploy.id == DeployApproval.deploy_id)
                               .where(DeployApproval.state == PENDING, DeployApproval.expires_at <= now,
                                      Deploy.state == AWAITING)).all()
        out = []
        for row, d in rows:
            row.state, row.decided_at = EXPIRED, now
            d.state, d.finished_at = EXPIRED, now
            why = tx("nobody approved it within {timeout} s", timeout=f"{row.expires_at - row.requested_at:g}")
            d.error = str(why)
            self.audit.record(session, "system", "deploy.approval.expire", f"app:{d.app}",
                              {"deploy_id": d.id, "environment": d.environment, "version": d.version,
                               "requested_by": row.requested_by}, "console")
            out.append((d, why))
        return out

    @staticmethod
    def next_expiry(session: Session) -> float | None:
        """When the next pending request expires (Unix s), or None."""
        return session.execute(select(DeployApproval.expires_at).join(Deploy, Deploy.id == DeployApproval.deploy_id)
                               .where(DeployApproval.state == PENDING, Deploy.state == AWAITING)
                               .order_by(DeployApproval.expires_at).limit(1)).scalar_one_or_none()

    @staticmethod
    def attach(session: Session, deploys: Iterable[dict | None]) -> None:
        """Set ``approval`` on each public deploy dict: ``{"required": true, "state",
        "approver_role", "requested_by", "decided_by", "decided_at", "expires_at",
        "reason"}``, or None for a deploy that needed none."""
        rows: list[dict] = [d for d in deploys if d is not None]
        ids = [d["id"] for d in rows]
        found = {a.deploy_id: a for a in session.execute(
            select(DeployApproval).where(DeployApproval.deploy_id.in_(ids))).scalars()} if ids else {}
        for d in rows:
            a = found.get(d["id"])
            d["approval"] = None if a is None else {
                "required": True, "state": a.state, "approver_role": a.approver_role, "requested_by": a.requested_by,
                "requested_at": a.requested_at, "decided_by": a.decided_by, "decided_at": a.decided_at,
                "expires_at": a.expires_at, "reason": a.reason}
