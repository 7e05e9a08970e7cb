"""The PromQL query service behind ``/prometheus/api/v1/``: runs evaluations and label
lookups on a database reader thread with a deadline, and shapes Prometheus' JSON ``data``.

Errors are :class:`PromError` carrying Prometheus' ``errorType`` and HTTP status
(``web/api/v1/api.go``): ``bad_data`` 400, ``execution`` 422, ``timeout`` 503.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Callable, TypeVar

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.config import ConfigError
from console.errors import ApiError
from console.i18n import tx
from console.promql import ast
from console.promql.aggregations import AggregationError
from console.promql.binary import MatchingError
from console.promql.engine import EvalError, QueryTimeout, Result, evaluate_instant, evaluate_range
from console.promql.functions import FunctionError
from console.promql.rollups import ClosedSumsCache
from console.promql.storage import BadRegex, Storage, TooManySamples, VirtualSource
from console.promql.values import format_time, format_value, format_values
from console.storage.database import Database
from console.storage.models import Series

R = TypeVar("R")

DEFAULT_TIMEOUT_S = 120.0  # Prometheus' --query.timeout default (2m)
DEFAULT_MAX_SAMPLES = 10_000_000  # a fifth of Prometheus' --query.max-samples: a sample costs ~100 bytes here
MAX_POINTS = 11_000  # points per series a range query may ask for, as Prometheus


class PromError(ApiError):
    """An error answer: ``error_type`` (bad_data, execution, timeout, unavailable...; also
    its ``code``), HTTP ``status``, ``message``."""

    def __init__(self, error_type: str, message: str, status: int) -> None:
        super().__init__(status, error_type, message)
        self.error_type = error_type


def bad_data(message: str) -> PromError:
    return PromError("bad_data", message, 400)


def parse_expr(text: str) -> ast.Node:
    """Raises PromError: 400 bad_data for a parse error, 422 execution for an
    unsupported construct (naming it)."""
    try:
        return ast.parse(text)
    except ast.ParseError as exc:
        raise bad_data(tx("invalid parameter \"{parameter}\": {reason}", parameter="query", reason=str(exc))) from None
    except ast.Unsupported as exc:
        raise PromError("execution", tx("unsupported PromQL construct: {construct}", construct=str(exc)), 422) from None


def parse_matchers(texts: list[str]) -> list[ast.Selector]:
    """``match[]`` values -> selectors; each must be an instant vector selector."""
    out = []
    for text in texts:
        try:
            node = ast.parse(text)
        except (ast.ParseError, ast.Unsupported) as exc:
            raise bad_data(tx("invalid parameter \"{parameter}\": {reason}", parameter="match[]", reason=str(exc))) from None
        if not isinstance(node, ast.Selector) or node.range_ms is not None:
            raise bad_data(tx("invalid parameter \"match[]\": {selector} is not an instant vector selector",
                              selector=repr(text)))
        out.append(node)
    return out


def _vector_json(result: Result) -> list[dict]:
    return [{"metric": dict(s.labels), "value": [format_time(result.ts), format_value(s.value)]}
            for s in result.series()]


def _matrix_json(series: list) -> list[dict]:
    # (time, value) tuples, which orjson writes as arrays: one C-level zip per series.
    return [{"metric": dict(s.labels), "values": list(zip(_times(s.ts), format_values(s.values)))} for s in series]


def _times(ts: list[int]) -> list:
    """``format_time`` of each Unix ms (whole seconds, the common case, as ints: checked and
    divided with numpy, a tenth of the time of a Python loop over a day of minutes)."""
    stamps = np.fromiter(ts, np.int64, len(ts))
    if not (stamps % 1000).any():
        return (stamps // 1000).tolist()
    return [format_time(t) for t in ts]


def result_json(result: Result) -> dict:
    """Prometheus' ``data`` of a query: ``{"resultType", "result"}``."""
    body: list
    if result.type == ast.VECTOR:
        body = _vector_json(result)
    elif result.type == ast.MATRIX:
        body = _matrix_json(result.series())
    elif result.type == ast.SCALAR:
        body = [format_time(result.ts), format_value(result.scalar())]
    else:
        body = [format_time(result.ts), result.value]
    return {"resultType": result.type, "result": body}


class PromQLService:
    """``query``/``query_range``/``series``/``labels``/``label_values``, each awaited on the
    IOLoop and run on a reader thread. ``timeout_s`` caps every query's evaluation;
    ``max_samples`` the samples one query may load and produce."""

    def __init__(self, db: Database, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_samples: int = DEFAULT_MAX_SAMPLES, clock: Callable[[], float] = time.time,
                 raw_retention_s: float | None = None, cache_cells: int = 1_000_000) -> None:
        """Raises ConfigError for a timeout that is not a positive number of seconds or a
        sample limit below 1. ``raw_retention_s``: how long raw samples are kept; a query
        reaching further back is answered with a warning. ``cache_cells``: bound of the
        cache of closed rollup buckets' sums (console/promql/rollups.py; 0: off)."""
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigError(tx("{key}: must be positive seconds, got {value}", key="console.promql_timeout",
                                 value=repr(timeout_s)))
        if max_samples < 1:
            raise ConfigError(tx("{key}: must be at least 1, got {value}", key="console.promql_max_samples",
                                 value=repr(max_samples)))
        self.db = db
        self.timeout_s = timeout_s
        self.max_samples = max_samples
        self.clock = clock
        self.raw_retention_s = raw_retention_s
        self.virtual: VirtualSource | None = None  # computed series (console/alerting)
        self.closed_sums = ClosedSumsCache(cache_cells)

    async def _run(self, fn: Callable[..., R], timeout_s: float | None, *args: Any, primary: bool = False) -> R:
        timeout = min(timeout_s, self.timeout_s) if timeout_s else self.timeout_s
        deadline = time.monotonic() + timeout
        # Queries for people go to the read replica if any; decisions (canary, deploy watch) read the primary.
        future = (self.db.read if primary else self.db.query)(self._guarded, fn, deadline, *args)
        try:
            # The evaluation checks the deadline itself; this bounds a long database read too.
            return await asyncio.wait_for(future, timeout + 1.0)
        except asyncio.TimeoutError:
            raise PromError("timeout", tx("query timed out in expression evaluation"), 503) from None

    def _guarded(self, session: Session, fn: Callable[..., R], deadline: float, *args: Any) -> R:
        storage = Storage(session, self.max_samples, self.virtual, closed_sums=self.closed_sums)
        try:
            return fn(storage, deadline, *args)
        except QueryTimeout:
            raise PromError("timeout", tx("query timed out in expression evaluation"), 503) from None
        except TooManySamples:
            raise PromError("execution", tx("query processing would load too many samples into memory in query "
                                            "execution"), 422) from None
        except ast.ParseError as exc:
            raise bad_data(str(exc)) from None
        except ast.Unsupported as exc:
            raise PromError("execution", tx("unsupported PromQL construct: {construct}", construct=str(exc)),
                            422) from None
        except BadRegex as exc:
            raise bad_data(str(exc)) from None
        except (EvalError, MatchingError, FunctionError, AggregationError) as exc:
            raise PromError("execution", str(exc), 422) from None
        except RecursionError:  # a backstop: parsing bounds the depth of expressions
            raise PromError("execution", tx("the expression nests too deeply to evaluate"), 422) from None

    def _answer(self, result: Result) -> tuple[dict, list[str]]:
        warnings = []
        if (self.raw_retention_s is not None and result.earliest is not None
                and result.earliest < (self.clock() - self.raw_retention_s) * 1000):
            warnings.append(f"the query reads samples older than the raw retention ({self.raw_retention_s / 86400:g} "
                            "days); this query is answered from raw samples, so older data is missing")
        return result_json(result), warnings

    async def query(self, text: str, at_s: float, timeout_s: float | None = None,
                    primary: bool = False) -> tuple[dict, list[str]]:
        """``/query``: ``(data, warnings)`` of ``text`` evaluated at ``at_s`` (Unix seconds).
        ``primary``: read the primary even when a read replica is configured (for decisions
        that must not lag, docs/scaling.md)."""
        node = parse_expr(text)
        t = round(at_s * 1000)
        return await self._run(lambda st, dl: self._answer(evaluate_instant(st, node, t, dl, self.max_samples)),
                               timeout_s, primary=primary)

    async def query_range(self, text: str, start_s: float, end_s: float, step_s: float,
                          timeout_s: float | None = None) -> tuple[dict, list[str]]:
        """``/query_range``: ``(data, warnings)``, the data a matrix of ``text`` at every step."""
        if end_s < start_s:
            raise bad_data(tx("end timestamp must not be before start time"))
        if step_s <= 0:
            raise bad_data(tx("zero or negative query resolution step widths are not accepted. "
                              "Try a positive integer"))
        if (end_s - start_s) / step_s > MAX_POINTS:
            raise bad_data(tx("exceeded maximum resolution of 11,000 points per timeseries. "
                              "Try decreasing the query resolution (?step=XX)"))
        node = parse_expr(text)
        start, end, step = round(start_s * 1000), round(end_s * 1000), round(step_s * 1000)
        if step <= 0:
            raise bad_data(tx("step must be at least 1ms"))
        return await self._run(lambda st, dl: self._answer(
            evaluate_range(st, node, start, end, step, dl, self.max_samples)), timeout_s)

    # -- metadata ------------------------------------------------------------------------
    def _selected(self, storage: Storage, selectors: list[ast.Selector] | None,
                  start_s: float | None, end_s: float | None) -> list:
        seen: dict = {}
        if selectors is None:
            selectors = [ast.Selector(())]
        windowed = start_s is not None or end_s is not None
        lo = round(start_s * 1000) if start_s is not None else -(2**62)
        hi = round(end_s * 1000) if end_s is not None else 2**62
        for sel in selectors:
            for s in storage.match(sel.matchers, lo, hi) if windowed else storage.match(sel.matchers):
                seen.setdefault(s.id, s)
        series = sorted(seen.values(), key=lambda s: s.labels)
        if windowed:  # first/last bound the window; the samples say exactly
            series = [s for s in series if storage.has_samples(s.id, lo, hi)]
        return series

    async def series(self, selectors: list[ast.Selector], start_s: float | None, end_s: float | None) -> list:
        """``/series``: the label sets of the series matching any selector."""
        return await self._run(lambda st, dl: [dict(s.labels) for s in self._selected(st, selectors, start_s, end_s)],
                               None)

    async def label_names(self, selectors: list[ast.Selector] | None, start_s: float | None,
                          end_s: float | None) -> list[str]:
        def run(st: Storage, dl: float) -> list[str]:
            return sorted({name for s in self._selected(st, selectors, start_s, end_s) for name, _ in s.labels})
        return await self._run(run, None)

    async def label_values(self, name: str, selectors: list[ast.Selector] | None, start_s: float | None,
                           end_s: float | None) -> list[str]:
        def run(st: Storage, dl: float) -> list[str]:
            return sorted({v for s in self._selected(st, selectors, start_s, end_s) for k, v in s.labels if k == name})
        return await self._run(run, None)

    async def metadata(self, metric: str | None, limit: int | None) -> dict:
        """``/metadata``: ``{name: [{"type", "help", "unit"}]}`` from the stored series types."""
        def run(session: Session) -> dict:
            stmt = select(Series.name, Series.type).distinct().order_by(Series.name)
            if metric:
                stmt = stmt.where(Series.name == metric)
            out: dict[str, list] = {}
            for name, kind in session.execute(stmt):
                if limit is not None and len(out) >= limit and name not in out:
                    break
                entry = {"type": kind, "help": "", "unit": ""}
                if entry not in out.setdefault(name, []):
                    out[name].append(entry)
            return out
        return await self.db.query(run)
