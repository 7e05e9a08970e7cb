"""Protected apps and environments: the ``approval:`` model and the deploy lanes.

An app either has one ``target:`` or ``environments:`` (``staging``, ``production``, ...),
each with its own target and optionally its own ``approval:``. The deploy service runs
one lane per app (no environments) or per environment: a lane has its own queue, its own
current release and its own driver. The driver of an environment sees the app under the
name ``APP-ENV`` (container names and labels, release directories), so two environments
on one engine never touch each other's containers; the deploy history and the API name
the app and the environment apart.

Options and defaults are documented in config.yaml and docs/deploys.md ("Approvals and
environments").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from console.deploy.schema import Flag, Seconds, Section

if TYPE_CHECKING:
    from console.deploy.apps import AppDefinition

ENVIRONMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
ApproverRole = Literal["deployer", "admin"]


class Approval(Section):
    """``approval:`` of an app or an environment. ``required``: deploys, rollbacks and
    promotions wait (state ``awaiting_approval``) until a user other than the requester
    whose role is at least ``approver_role`` approves; ``timeout`` (seconds) after the
    request, an undecided deploy ends ``expired`` and never runs."""

    required: Flag = True
    approver_role: ApproverRole = "admin"
    timeout: Seconds = Field(3600.0, ge=1.0, le=30 * 86400.0)


def lane_key(app: str, environment: str | None) -> str:
    """The driver's name of an app's environment: ``APP`` or ``APP-ENV``."""
    return app if environment is None else f"{app}-{environment}"


@dataclass(frozen=True)
class Lane:
    """One queue of deploys: ``app`` (the configured name), ``environment`` (None: the
    app's only target) and ``definition``, the app as its driver sees it (named
    :func:`lane_key`, with this environment's target and approval)."""

    app: str
    environment: str | None
    definition: "AppDefinition"

    @property
    def key(self) -> str:
        return lane_key(self.app, self.environment)

    @property
    def approval(self) -> Approval | None:
        """The approval this lane's deploys need (None: they start at once)."""
        a = self.definition.approval
        return a if a is not None and a.required else None

    def describe(self) -> str:
        return self.app if self.environment is None else f"{self.app} ({self.environment})"


def lanes_of(apps: "dict[str, AppDefinition]") -> dict[str, Lane]:
    """Every lane of ``apps`` by key."""
    out: dict[str, Lane] = {}
    for name, app in apps.items():
        if not app.environments:
            out[name] = Lane(name, None, app)
        for env, definition in app.environments.items():
            out[lane_key(name, env)] = Lane(name, env, definition)
    return out
