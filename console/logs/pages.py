"""The log viewer page; its data comes from ``GET /api/v1/logs`` and the live socket."""
from __future__ import annotations

from console.handlers import PageHandler


class LogsPageHandler(PageHandler):
    def get(self) -> None:
        self.render("logs.html", host=self.get_argument("host", ""), q=self.get_argument("q", ""))
