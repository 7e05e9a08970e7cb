"""``GET /api/v1/logs``: search stored log records (docs/logs.md)."""
from __future__ import annotations

from console.errors import ApiError
from console.handlers import ApiHandler
from console.logs.service import LogQueryError, parse_query

PARAMETERS = ("q", "host", "source", "level", "start", "end", "limit", "cursor")


class LogsHandler(ApiHandler):
    async def get(self) -> None:
        self.query()  # the shape (console/schemas.py LogsQuery); parse_query reads the values
        args = {name: self.get_argument(name, "") for name in PARAMETERS}
        try:
            query = parse_query(args, self.services.clock())
        except LogQueryError as exc:
            status = 422 if exc.code == "invalid_range" else 400
            raise ApiError(status, exc.code, str(exc), {"parameter": exc.parameter}) from None
        self.write_json(await self.services.db.read(self.services.logs.search, query))
