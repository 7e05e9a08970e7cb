"""``GET /api/v1/logs``: search stored log records (docs/logs.md)."""
from __future__ import annotations

from console.handlers import ApiHandler
from console.logs.service import parse_query

PARAMETERS = ("q", "host", "source", "level", "start", "end", "limit", "cursor")


class LogsHandler(ApiHandler):
    async def get(self) -> None:
        self.query()  # the shape (console/schemas.py LogsQuery); parse_query reads the values
        args = {name: self.get_argument(name, "") for name in PARAMETERS}
        query = parse_query(args, self.services.clock())  # LogQueryError (400/422) for a bad value
        await self.write_large_json(await self.services.logs.asearch(query))
