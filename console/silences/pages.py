"""Silence pages: ``/alerts/silences`` (list, expire) and ``/alerts/silences/new`` (the
form; ``?matchers={alertname="X",instance="y"}`` prefills it, as alert messages and the
/alerts page link to it). Their data comes from the Alertmanager API v2
(console/silences/api.py)."""
from __future__ import annotations

from console.errors import InvalidInput
from console.handlers import PageHandler
from console.matchers import parse_matchers


class SilencesPageHandler(PageHandler):
    def get(self) -> None:
        self.render("silences.html")


class SilenceNewPageHandler(PageHandler):
    """A ``matchers`` argument that does not parse is shown as an error above an empty form."""

    def get(self) -> None:
        raw = self.get_argument("matchers", "")
        error, matchers = None, []
        try:
            matchers = parse_matchers(raw)
        except InvalidInput as exc:
            error = exc.message
        self.render("silence_new.html", matchers=matchers, error=error,
                    may_write=self.principal is not None and self.principal.allows("deployer"))
