"""The effective configuration for the settings page, never a secret.

``effective_settings(config)`` answers ``GET /api/v1/settings``::

    {"file": "/etc/fleetdeck/config.yaml" | null,
     "console": [{"key", "value", "default", "source"}],   # every key of console:
     "sections": [{"name", "configured", "source"}]}       # apps, alerting, inventory, probes

``source`` is where the value came from: ``FILE line N``, ``environment NAME``,
``command-line flag --name`` or ``default``. Values that may hold a credential are
redacted: the password of ``database_url`` (SQLAlchemy's ``hide_password``) and any key
named like a password, token or secret; file paths are shown as they are (they are not
secrets, the files are).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from console.config import Config, ConsoleConfig

_CREDENTIAL_WORDS = ("password", "token", "secret_key")  # secret_key_file is a path: see _shown
OTHER_SECTIONS = ("apps", "alerting", "inventory", "probes")


def _shown(key: str, value: Any) -> Any:
    if key in ("database_url", "database_read_url") and value:
        try:
            return make_url(value).render_as_string(hide_password=True)
        except ArgumentError:
            return "***"
    if any(word in key for word in _CREDENTIAL_WORDS) and not key.endswith("_file") and value:
        return "***"
    return value


def effective_settings(config: Config) -> dict:
    """See the module docstring."""
    defaults = ConsoleConfig()
    rows = []
    for key in ConsoleConfig.model_fields:
        value = getattr(config.console, key)
        rows.append({"key": key, "value": _shown(key, value), "default": _shown(key, getattr(defaults, key)),
                     "source": config.sources.get(key, "default")})
    data = config.document.data if config.document is not None else {}
    sections = []
    for name in OTHER_SECTIONS:
        where = config.document.where((name,)) if config.document is not None and name in data else "default"
        sections.append({"name": name, "configured": bool(data.get(name)), "source": where})
    return {"file": config.path, "console": rows, "sections": sections}
