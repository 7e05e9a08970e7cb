"""Thin handlers for hosts and metric queries (DESIGN.md section 3)."""
from __future__ import annotations

import re

from console.errors import ApiError
from console.handlers import ApiHandler
from console.query.service import Matcher, RangeQuery

_LABEL_ARG = re.compile(r"^label\.([a-zA-Z_][a-zA-Z0-9_]*)(!|~|!~)?$")
_OPS = {None: "=", "!": "!=", "~": "=~", "!~": "!~"}


class HostsHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json(await self.services.db.read(self.services.query.hosts))


class MetricNamesHandler(ApiHandler):
    async def get(self) -> None:
        host = self.query().host or None
        names = await self.services.db.read(self.services.query.metric_names, host)
        self.write_json({"names": names})


class MetricsRangeHandler(ApiHandler):
    async def get(self) -> None:
        query = self.parse_query()
        self.write_json(await self.services.db.read(self.services.query.range, query))

    def parse_query(self) -> RangeQuery:
        """The validated query (console/schemas.py RangeQueryArgs) plus its label matchers."""
        args = self.query()
        end = self.services.clock() if args.end is None else args.end
        start = end - 3600 if args.start is None else args.start
        if end < start:
            raise ApiError(422, "invalid_range", "end is before start")
        group_by = None
        if "group_by" in self.request.arguments or "agg" in self.request.arguments:
            group_by = tuple(part.strip() for part in (args.group_by or "").split(",") if part.strip())
        matchers = []
        for key in self.request.arguments:
            if not key.startswith("label."):
                continue
            match = _LABEL_ARG.match(key)
            if not match:
                raise ApiError(400, "invalid_parameter", f"bad label matcher {key!r}", {"parameter": key})
            op = _OPS[match.group(2)]
            value = self.get_argument(key, strip=False)
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ApiError(400, "invalid_parameter", f"{key}: bad regex: {exc}", {"parameter": key}) from None
            matchers.append(Matcher(match.group(1), op, value))
        return RangeQuery(metric=args.metric, start=start, end=end, step=args.step, fn=args.fn,
                          host=args.host or None, matchers=tuple(matchers),
                          group_by=group_by, agg=args.agg, window=args.window)
