"""Admin pages (users, tokens, secrets, settings) and the settings API.

The pages are shells: their script (web/static/js/admin.js) reads and changes through
the admin JSON API (``/api/v1/users``, ``/api/v1/tokens``, ``/api/v1/secrets``,
``/api/v1/settings``), so every action is the API's, audited the same way.
"""
from __future__ import annotations

from console.admin.settings import effective_settings
from console.handlers import ApiHandler, PageHandler


class SettingsHandler(ApiHandler):
    """``GET /api/v1/settings``: the effective configuration with each value's source
    (:func:`console.admin.settings.effective_settings`); credentials redacted."""

    def get(self) -> None:
        self.write_json(effective_settings(self.services.config))


class UsersPageHandler(PageHandler):
    """``/users``: create, change role, disable or enable, reset password, delete."""

    def get(self) -> None:
        self.render("users.html")


class TokensPageHandler(PageHandler):
    """``/tokens``: API, agent and enrolment tokens; a new one is shown once; revoke."""

    def get(self) -> None:
        self.render("tokens.html")


class SecretsPageHandler(PageHandler):
    """``/secrets``: names and kinds (never values); add, replace, delete."""

    def get(self) -> None:
        self.render("secrets.html")


class SettingsPageHandler(PageHandler):
    """``/settings``: the effective configuration, read-only, with each value's source."""

    def get(self) -> None:
        self.render("settings.html")
