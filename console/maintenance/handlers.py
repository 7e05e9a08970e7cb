"""Maintenance window endpoints and page (docs/alerting.md, "Maintenance windows").

Reading needs the viewer role, creating and deleting the deployer role (console/app.py
ROUTES declares both)."""
from __future__ import annotations

from console.errors import ApiError
from console.handlers import ApiHandler, PageHandler
from console.i18n import tx
from console.maintenance.windows import LOOKAHEAD_S

MAX_SPAN_S = 366 * 86400  # the longest range of occurrences one list request expands


class WindowsHandler(ApiHandler):
    """``GET /api/v1/maintenance/windows?host&start&end``: ``{"windows": [...]}`` by
    name (console/maintenance/service.py ``list``); ``POST`` a new window (201, the
    window; 400 ``invalid_field`` with ``details.field``; 409 for a name in use). 422
    ``invalid_range`` when only one of start and end is given, start is after end, they
    are more than 366 days apart or end is more than 10 years ahead."""

    async def get(self) -> None:
        args = self.query()  # console/schemas.py WindowsQuery
        if (args.start is None) != (args.end is None) or (args.start is not None and not (
                0 <= args.end - args.start <= MAX_SPAN_S and args.end <= self.services.clock() + LOOKAHEAD_S)):
            raise ApiError(422, "invalid_range", tx("start and end go together, start not after end, at most "
                                                    "{days} days apart, within 10 years from now",
                                                    days=MAX_SPAN_S // 86400),
                           {"parameter": "start"})
        self.write_json({"windows": await self.services.maintenance.list(args.host, args.start, args.end)})

    async def post(self) -> None:
        doc = self.body()  # console/schemas.py NewWindow
        window = await self.services.maintenance.create(doc, self.principal.actor, self.client_ip)
        self.write_json(window, 201)


class WindowHandler(ApiHandler):
    """``GET /api/v1/maintenance/windows/NAME?count=N``: the window with its next N
    occurrences (default 5); ``DELETE`` it. 404 for an unknown name."""

    async def get(self, name: str) -> None:
        args = self.query()  # console/schemas.py WindowQuery
        self.write_json(await self.services.maintenance.get(name, args.count))

    async def delete(self, name: str) -> None:
        self.write_json(await self.services.maintenance.delete(name, self.principal.actor, self.client_ip))


class MaintenancePageHandler(PageHandler):
    """``/maintenance``: the windows, open now or next, from ``/api/v1/maintenance/windows``."""

    def get(self) -> None:
        self.render("maintenance.html")
