"""Thin handlers of the Prometheus HTTP API under ``/prometheus/api/v1/`` (the subset
Grafana's Prometheus data source uses; see docs/promql.md). Answers use Prometheus'
envelope: ``{"status": "success", "data": ...}`` or ``{"status": "error", "errorType",
"error"}`` (``web/api/v1/api.go``). Parameters come from the query string or a
form-encoded POST body, as Prometheus reads them.
"""
from __future__ import annotations

import math
import os
import re
from datetime import datetime, timezone
from typing import Any

import promql_parser
import tornado.web

from console.errors import FleetdeckError
from console.handlers import ApiHandler, json_bytes
from console.i18n import tx
from console.promql import ast
from console.promql.service import bad_data, parse_expr, parse_matchers

VERSION = "2.42.0"  # the Prometheus release whose query semantics the engine follows
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def parse_time(name: str, raw: str) -> float:
    """Unix seconds (``1700000000.5``) or RFC 3339 (``2023-11-14T22:13:20Z``) -> float
    seconds; PromError 400 otherwise (Prometheus' ``parseTime``)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError("RFC 3339 needs a time zone")
            value = parsed.timestamp()
        except (ValueError, OverflowError):
            raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid timestamp',
                       parameter=name, value=raw)) from None
    if not math.isfinite(value) or abs(value) > 2**53 / 1000:
        raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid timestamp',
                       parameter=name, value=raw))
    return value


def parse_duration(name: str, raw: str) -> float:
    """Seconds (``"15"``, ``"0.5"``) or a Prometheus duration (``"1m30s"``) -> float seconds."""
    try:
        value = float(raw)
    except ValueError:
        try:
            return promql_parser.parse_duration(raw).total_seconds()
        except (ValueError, OverflowError):
            raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid duration',
                       parameter=name, value=raw)) from None
    if not math.isfinite(value) or value < 0 or value > 2**53 / 1000:
        raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid duration',
                       parameter=name, value=raw))
    return value


def _envelope(data: Any, warnings: list[str] | None) -> dict:
    """Prometheus' answer: ``{"status": "success", "data": ..., "warnings": [...]}``, the
    warnings only when there are some."""
    body = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return body


class PrometheusHandler(ApiHandler):
    """Base: Prometheus' envelope for answers and errors alike."""

    machine_api = True  # Prometheus clients read "error": English (console/handlers.py)

    def success(self, data: Any, warnings: list[str] | None = None) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json_bytes(_envelope(data, warnings)))

    async def success_large(self, data: Any, warnings: list[str] | None = None) -> None:
        """:meth:`success` for an answer that grows with the data asked for, encoded beside
        the event loop (ApiHandler.write_large_json)."""
        await self.write_large_json(_envelope(data, warnings), "application/json")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FleetdeckError):  # PromError's code is its errorType
            status, error_type, message = exc.status, exc.code, self.error_text(exc.message)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, tornado.web.HTTPError):
            status, error_type, message = exc.status_code, "bad_data", exc.log_message or self._reason
        else:
            status, error_type, message = 500, "internal", "internal error"
        self.set_status(status)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        self.finish(json_bytes({"status": "error", "errorType": error_type, "error": message}))

    def arg(self, name: str) -> str | None:
        value = self.get_argument(name, None)
        return value if value not in (None, "") else None

    def time_arg(self, name: str) -> float | None:
        raw = self.arg(name)
        return parse_time(name, raw) if raw is not None else None

    def timeout_arg(self) -> float | None:
        raw = self.arg("timeout")
        return parse_duration("timeout", raw) if raw is not None else None

    def selectors(self) -> list[ast.Selector] | None:
        """The ``match[]`` selectors; None when there is none."""
        texts = self.get_arguments("match[]")
        return parse_matchers(texts) if texts else None


class QueryHandler(PrometheusHandler):
    """``/query?query=&time=&timeout=``"""

    async def get(self) -> None:
        text = self.arg("query")
        if text is None:
            raise bad_data(tx('invalid parameter "query": query must not be empty'))
        at = self.time_arg("time")
        at = self.services.clock() if at is None else at
        await self.success_large(*await self.services.promql.query(text, at, self.timeout_arg()))

    post = get


class QueryRangeHandler(PrometheusHandler):
    """``/query_range?query=&start=&end=&step=&timeout=``"""

    async def get(self) -> None:
        text = self.arg("query")
        if text is None:
            raise bad_data(tx('invalid parameter "query": query must not be empty'))
        start, end = self.time_arg("start"), self.time_arg("end")
        if start is None:
            raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid timestamp',
                                  parameter="start", value=""))
        if end is None:
            raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid timestamp',
                                  parameter="end", value=""))
        raw_step = self.arg("step")
        if raw_step is None:
            raise bad_data(tx('invalid parameter "{parameter}": cannot parse "{value}" to a valid duration',
                                  parameter="step", value=""))
        step = parse_duration("step", raw_step)
        await self.success_large(*await self.services.promql.query_range(text, start, end, step, self.timeout_arg()))

    post = get


class SeriesHandler(PrometheusHandler):
    """``/series?match[]=&start=&end=``"""

    async def get(self) -> None:
        selectors = self.selectors()
        if selectors is None:
            raise bad_data(tx("no match[] parameter provided"))
        await self.success_large(await self.services.promql.series(selectors, self.time_arg("start"), self.time_arg("end")))

    post = get


class LabelsHandler(PrometheusHandler):
    """``/labels?match[]=&start=&end=``"""

    async def get(self) -> None:
        self.success(await self.services.promql.label_names(self.selectors(), self.time_arg("start"),
                                                            self.time_arg("end")))

    post = get


class LabelValuesHandler(PrometheusHandler):
    """``/label/<name>/values?match[]=&start=&end=``"""

    async def get(self, name: str) -> None:
        if not _LABEL_NAME.match(name):
            raise bad_data(tx('invalid label name: "{name}"', name=name))
        self.success(await self.services.promql.label_values(name, self.selectors(),
                                                             self.time_arg("start"), self.time_arg("end")))


class ExemplarsHandler(PrometheusHandler):
    """``/query_exemplars?query=&start=&end=``: no exemplars are stored, so none match
    (the query must still parse, as in Prometheus)."""

    async def get(self) -> None:
        text = self.arg("query")
        if text is None:
            raise bad_data(tx('invalid parameter "query": query must not be empty'))
        parse_expr(text)
        self.time_arg("start")  # validated as Prometheus does, though nothing is read
        self.time_arg("end")
        self.success([])

    post = get


class MetadataHandler(PrometheusHandler):
    """``/metadata?metric=&limit=``"""

    async def get(self) -> None:
        raw = self.arg("limit")
        limit = None
        if raw is not None:
            try:
                limit = int(raw)
            except ValueError:
                raise bad_data(tx('invalid parameter "limit": must be a number')) from None
            limit = None if limit < 0 else limit
        self.success(await self.services.promql.metadata(self.arg("metric"), limit))


class BuildInfoHandler(PrometheusHandler):
    """``/status/buildinfo``: the Prometheus version whose semantics are served."""

    def get(self) -> None:
        self.success({"version": VERSION, "revision": "", "branch": "", "buildUser": "", "buildDate": "",
                      "goVersion": ""})


class RuntimeInfoHandler(PrometheusHandler):
    """``/status/runtimeinfo``"""

    def get(self) -> None:
        started = datetime.fromtimestamp(self.settings.get("started_at", 0), tz=timezone.utc)
        self.success({"startTime": started.isoformat().replace("+00:00", "Z"), "CWD": "",
                      "reloadConfigSuccess": True, "lastConfigTime": started.isoformat().replace("+00:00", "Z"),
                      "corruptionCount": 0, "goroutineCount": 0, "GOMAXPROCS": os.cpu_count() or 1,
                      "GOGC": "", "GODEBUG": "",
                      "storageRetention": f"{self.services.config.console.retention_raw_days:g}d"})
