"""Thin handlers for hosts and metric queries (docs/metrics.md)."""
from __future__ import annotations

import re

from console.errors import ApiError
from console.handlers import ApiHandler
from console.i18n import tx
from console.query.service import Matcher, RangeQuery

_LABEL_ARG = re.compile(r"label\.([a-zA-Z_][a-zA-Z0-9_]*)(!|~|!~)?")
_OPS = {None: "=", "!": "!=", "~": "=~", "!~": "!~"}


class HostsHandler(ApiHandler):
    async def get(self) -> None:
        refusals = self.services.tokens.agent_refusals()
        self.write_json(await self.services.query.ahosts(refusals))


class HostHandler(ApiHandler):
    async def delete(self, name: str) -> None:
        """Retire a host (admin, audited): its series, samples, rollups and logs are deleted
        and its agent tokens revoked (console/fleet/retire.py). 404 for an unknown host."""
        services = self.services
        result = await services.ingest.aretire_host(services.audit, services.tokens, self.principal.actor,
                                                    self.client_ip, name)
        services.metrics.forget_host(name)
        result.pop("host_id")
        self.write_json(result)


class MetricNamesHandler(ApiHandler):
    async def get(self) -> None:
        args = self.query()
        if args.start is not None and args.end is not None and args.end < args.start:
            raise ApiError(422, "invalid_range", tx("end is before start"))  # as the range query does
        names = await self.services.query.ametric_names(
            args.host or None, None if args.start is None else int(args.start * 1000),
            None if args.end is None else int(args.end * 1000))
        self.write_json({"names": names})


class MetricsRangeHandler(ApiHandler):
    async def get(self) -> None:
        query = self.parse_query()
        await self.write_large_json(await self.services.query.arange(query))

    def parse_query(self) -> RangeQuery:
        """The validated query (console/schemas.py RangeQueryArgs) plus its label matchers."""
        args = self.query()
        end = self.services.clock() if args.end is None else args.end
        start = end - 3600 if args.start is None else args.start
        if end < start:
            raise ApiError(422, "invalid_range", tx("end is before start"))
        group_by = None
        if "group_by" in self.request.arguments or "agg" in self.request.arguments:
            group_by = tuple(part.strip() for part in (args.group_by or "").split(",") if part.strip())
        matchers = []
        for key in self.request.arguments:
            if not key.startswith("label."):
                continue
            match = _LABEL_ARG.fullmatch(key)
            if not match:
                raise ApiError(400, "invalid_parameter", tx("bad label matcher {matcher}", matcher=repr(key)), {"parameter": key})
            op = _OPS[match.group(2)]
            value = self.get_argument(key, strip=False)
            try:
                matchers.append(Matcher(match.group(1), op, value))
            except ValueError as exc:
                raise ApiError(400, "invalid_parameter", tx("{parameter}: bad regex (RE2 syntax): {reason}", parameter=key,
                                                              reason=str(exc)),
                               {"parameter": key}) from None
        return RangeQuery(metric=args.metric, start=start, end=end, step=args.step, fn=args.fn,
                          host=args.host or None, matchers=tuple(matchers),
                          group_by=group_by, agg=args.agg, window=args.window)
