"""Thin handlers for hosts and metric queries (docs/metrics.md)."""
from __future__ import annotations

import contextlib
import math
import re

from console.errors import ApiError
from console.handlers import ApiHandler
from console.ingest.batch import LABEL_NAME_RE, METRIC_NAME_RE
from console.query.service import FUNCTIONS, Matcher, RangeQuery
from console.query.series_math import AGGREGATORS

MAX_SECONDS = 2**53 / 1000  # about 285,000 years of Unix time, in seconds
_LABEL_ARG = re.compile(r"label\.([a-zA-Z_][a-zA-Z0-9_]*)(!|~|!~)?")
_OPS = {None: "=", "!": "!=", "~": "=~", "!~": "!~"}


class HostsHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json(await self.services.db.read(self.services.query.hosts))


class HostHandler(ApiHandler):
    async def delete(self, name: str) -> None:
        """Retire a host (admin, audited): its series, samples, rollups and logs are deleted
        and its agent tokens revoked (console/fleet/retire.py). 404 for an unknown host."""
        from console.fleet.retire import HostNotFound

        services = self.services
        try:
            result = await services.db.on_writer(services.ingest.retire_host, services.audit, services.tokens,
                                                 self.principal.actor, self.client_ip, name)
        except HostNotFound as exc:
            raise ApiError(404, "host_not_found", str(exc)) from None
        # KeyError: no batch of this host carried sent_at since this console started.
        with contextlib.suppress(KeyError):
            services.metrics.host_clock_skew.remove(name)
        result.pop("host_id")
        self.write_json(result)


class MetricNamesHandler(ApiHandler):
    async def get(self) -> None:
        host = self.get_argument("host", None) or None
        names = await self.services.db.read(self.services.query.metric_names, host)
        self.write_json({"names": names})


class MetricsRangeHandler(ApiHandler):
    async def get(self) -> None:
        query = self.parse_query()
        self.write_json(await self.services.db.read(self.services.query.range, query))

    def _number(self, name: str, default: float | None) -> float | None:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, "invalid_parameter", f"{name} must be a number", {"parameter": name}) from None
        if not math.isfinite(value):
            raise ApiError(400, "invalid_parameter", f"{name} must be finite", {"parameter": name})
        # Times and durations become Unix ms in SQL; keep them in the range a 64-bit integer
        # (and a JSON number) holds exactly.
        if not 0 <= value <= MAX_SECONDS:
            raise ApiError(400, "invalid_parameter", f"{name} must be between 0 and {MAX_SECONDS:.0f} seconds",
                           {"parameter": name})
        return value

    def parse_query(self) -> RangeQuery:
        metric = self.get_argument("metric", "")
        if not METRIC_NAME_RE.fullmatch(metric):
            raise ApiError(400, "invalid_parameter", "metric must be a metric name", {"parameter": "metric"})
        end = self._number("end", self.services.clock())
        start = self._number("start", end - 3600)
        step = self._number("step", None)
        if end < start:
            raise ApiError(422, "invalid_range", "end is before start")
        if step is not None and step <= 0:
            raise ApiError(400, "invalid_parameter", "step must be positive seconds", {"parameter": "step"})
        window = self._number("window", None)
        if window is not None and not 0 < window <= 86400 * 31:
            raise ApiError(400, "invalid_parameter", "window must be seconds in (0, 31 days]",
                           {"parameter": "window"})
        fn = self.get_argument("fn", "raw")
        if fn not in FUNCTIONS:
            raise ApiError(400, "invalid_parameter", f"fn must be one of {', '.join(FUNCTIONS)}", {"parameter": "fn"})
        agg = self.get_argument("agg", "sum")
        if agg not in AGGREGATORS:
            raise ApiError(400, "invalid_parameter", f"agg must be one of {', '.join(AGGREGATORS)}",
                           {"parameter": "agg"})
        group_by = None
        if "group_by" in self.request.arguments or "agg" in self.request.arguments:
            raw = self.get_argument("group_by", "")
            group_by = tuple(part.strip() for part in raw.split(",") if part.strip())
            bad = [g for g in group_by if not LABEL_NAME_RE.fullmatch(g)]
            if bad:
                raise ApiError(400, "invalid_parameter", f"group_by has invalid label name {bad[0]!r}",
                               {"parameter": "group_by"})
        matchers = []
        for key in self.request.arguments:
            if not key.startswith("label."):
                continue
            match = _LABEL_ARG.fullmatch(key)
            if not match:
                raise ApiError(400, "invalid_parameter", f"bad label matcher {key!r}", {"parameter": key})
            op = _OPS[match.group(2)]
            value = self.get_argument(key, strip=False)
            try:
                matchers.append(Matcher(match.group(1), op, value))
            except ValueError as exc:
                raise ApiError(400, "invalid_parameter", f"{key}: bad regex (RE2 syntax): {exc}",
                               {"parameter": key}) from None
        return RangeQuery(metric=metric, start=start, end=end, step=step, fn=fn,
                          host=self.get_argument("host", None) or None, matchers=tuple(matchers),
                          group_by=group_by, agg=agg, window=window)
