"""Roles and the principals that carry them.

Route roles (declared once per route in ``console/app.py``):
``public`` (anyone), ``agent`` (an agent token), and the user roles ``viewer`` <
``deployer`` < ``admin`` (a browser session or an API token capped at that role). A
route whose methods need different roles declares a mapping, e.g. ``{"GET": "viewer",
"*": "deployer"}`` (``*``: every method not named).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

USER_ROLES = ("viewer", "deployer", "admin")
ROUTE_ROLES = ("public", "agent") + USER_ROLES
_RANK = {role: rank for rank, role in enumerate(USER_ROLES)}
RouteRole = str | Mapping[str, str]


def role_for(declared: RouteRole, method: str) -> str:
    """The role ``method`` (upper case) needs on a route declared with ``declared``."""
    if isinstance(declared, str):
        return declared
    return declared.get(method, declared["*"])


def declared_roles(declared: RouteRole) -> list[str]:
    """Every role a route declaration names (to validate it)."""
    return [declared] if isinstance(declared, str) else list(declared.values())


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``kind`` is ``user`` (browser session), ``api`` (API token) or
    ``agent`` (agent token, ``host`` set); ``role`` is a user role or ``agent``;
    ``apps`` is a deployer's allow-list of app names (None: every app); ``owner`` is the
    user a session or API token acts for (None: a token of the operator or an agent), and
    the owner of any token this principal mints."""

    kind: str
    name: str
    role: str
    host: str | None = None
    apps: tuple[str, ...] | None = None
    owner: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this principal: ``user:alice``, ``api:ci``, ``agent:web-1``."""
        if self.kind == "agent":
            return f"agent:{self.host}"
        return f"{self.kind}:{self.name}"

    def may_deploy(self, app: str) -> bool:
        """True when this principal may deploy or roll back ``app``: an admin always; a
        deployer when it has no allow-list or ``app`` is on it; nobody else."""
        if self.kind == "agent" or not self.allows("deployer"):
            return False
        if self.role == "admin" or self.apps is None:
            return True
        return app in self.apps

    def allows(self, required: str) -> bool:
        """True when this principal may call a route that requires ``required``."""
        if required == "public":
            return True
        if required == "agent":
            return self.kind == "agent"
        if self.kind == "agent":
            return False
        return _RANK.get(self.role, -1) >= _RANK[required]


def lower_role(a: str, b: str) -> str:
    """The lesser of two user roles (an API token never outranks its owner)."""
    return a if _RANK.get(a, -1) <= _RANK.get(b, -1) else b
