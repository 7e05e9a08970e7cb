"""Roles and the principals that carry them.

Route roles (declared once per route in ``console/app.py``):
``public`` (anyone), ``agent`` (an agent token), and the user roles ``viewer`` <
``deployer`` < ``admin`` (a browser session or an API token capped at that role).
"""
from __future__ import annotations

from dataclasses import dataclass

USER_ROLES = ("viewer", "deployer", "admin")
ROUTE_ROLES = ("public", "agent") + USER_ROLES
_RANK = {role: rank for rank, role in enumerate(USER_ROLES)}


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``kind`` is ``user`` (browser session), ``api`` (API token) or
    ``agent`` (agent token, ``host`` set); ``role`` is a user role or ``agent``."""

    kind: str
    name: str
    role: str
    host: str | None = None

    def allows(self, required: str) -> bool:
        """True when this principal may call a route that requires ``required``."""
        if required == "public":
            return True
        if required == "agent":
            return self.kind == "agent"
        if self.kind == "agent":
            return False
        return _RANK.get(self.role, -1) >= _RANK[required]
