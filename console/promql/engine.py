"""The evaluator: a parsed expression at one time or at every step of a range.

Semantics are Prometheus 2.x's (``promql/engine.go``):

* An instant vector selector at time ``t`` takes, per series, the newest sample in
  ``[t - offset - 5m, t - offset]`` (the 5 minute lookback; the sample keeps its own
  timestamp for ``timestamp()``).
* A range selector ``x[r]`` at ``t`` takes the samples in ``[t - offset - r, t - offset]``.
* ``@ T`` replaces ``t`` with ``T`` (``start()``/``end()``: the query's start and end).
* A subquery ``e[r:s]`` at ``t`` evaluates ``e`` at every multiple of ``s`` (absolute,
  Unix ms) in ``[t - offset - r, t - offset]``; without ``s``, every minute.
* A range query is the expression evaluated at ``start``, ``start + step``, ... ``end``;
  each output series holds the steps at which it had a value.

Evaluation runs on a database reader thread (it reads samples through
:class:`console.promql.storage.Storage`) and checks ``deadline`` (``time.monotonic()``)
as it goes: :class:`QueryTimeout` past it, :class:`TooManySamples` past ``max_samples``
samples loaded or produced.
"""
from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from console.promql import ast, rollups
from console.promql.ast import (MATRIX, SCALAR, STRING, VECTOR, Aggregate, Binary, Call, Negate, Node, Number,
                                Selector, String, Subquery)
from console.promql.storage import Storage, StoredSeries, TooManySamples
from console.promql.values import NAME, Sample, SeriesPoints, drop_name, get

LOOKBACK_MS = 300_000  # Prometheus' default --query.lookback-delta (5m)


class QueryTimeout(Exception):
    """The evaluation ran past its deadline."""


class EvalError(Exception):
    """An execution error Prometheus also raises (``errorType: execution``, HTTP 422):
    duplicate label sets, many-to-many matching..."""


@dataclass
class Result:
    """``type`` is scalar, vector, matrix or string; ``value`` is a float, a list of
    Sample, a list of SeriesPoints or a ``(ts_ms, str)`` pair."""

    type: str
    value: object
    ts: int = 0
    earliest: int | None = None  # Unix ms of the oldest sample any selector asked for

    def scalar(self) -> float:
        """The value of a scalar result; TypeError for another type."""
        if self.type != SCALAR or not isinstance(self.value, (int, float)):
            raise TypeError(f"a {self.type} result is not a scalar")
        return self.value

    def series(self) -> list:
        """The Samples of a vector result, or the SeriesPoints of a matrix; TypeError for
        a scalar or a string."""
        if self.type not in (VECTOR, MATRIX) or not isinstance(self.value, list):
            raise TypeError(f"a {self.type} result holds no series")
        return self.value


class Evaluator:
    """One query's evaluation state: its time range, its loaded series, its budget."""

    def __init__(self, storage: Storage, start_ms: int, end_ms: int, deadline: float, max_samples: int,
                 lookback_ms: int = LOOKBACK_MS) -> None:
        self.storage = storage
        self.start = start_ms
        self.end = end_ms
        self.deadline = deadline
        self.max_samples = max_samples
        self.lookback = lookback_ms
        self.produced = 0
        self._windows: dict[Selector, list[int]] = {}
        self._data: dict[Selector, list[StoredSeries]] = {}
        self._subquery_cache: dict[tuple[Node, int], object] = {}
        self._without_name: dict[tuple, tuple] = {}
        self._node_caches: dict[Node, dict] = {}

    # -- preparation: which samples each selector needs ---------------------------------
    def _at(self, at: int | str | None, default: int) -> int:
        if at is None:
            return default
        if at == "start":
            return self.start
        if at == "end":
            return self.end
        if isinstance(at, str):  # the parser gives start(), end() or a time
            raise EvalError(f"unknown @ modifier {at!r}")
        return at

    def _bounds(self, node: Node, lo: int, hi: int) -> None:
        if isinstance(node, Selector):
            if node.at is not None:
                lo = hi = self._at(node.at, lo)
            width = node.range_ms if node.range_ms is not None else self.lookback
            window = [lo - node.offset_ms - width, hi - node.offset_ms]
            old = self._windows.get(node)
            self._windows[node] = window if old is None else [min(old[0], window[0]), max(old[1], window[1])]
        elif isinstance(node, Subquery):
            if node.at is not None:
                lo = hi = self._at(node.at, lo)
            self._bounds(node.expr, lo - node.offset_ms - node.range_ms, hi - node.offset_ms)
        elif isinstance(node, Call):
            for arg in node.args:
                self._bounds(arg, lo, hi)
        elif isinstance(node, Aggregate):
            self._bounds(node.expr, lo, hi)
            if node.param is not None:
                self._bounds(node.param, lo, hi)
        elif isinstance(node, Binary):
            self._bounds(node.lhs, lo, hi)
            self._bounds(node.rhs, lo, hi)
        elif isinstance(node, Negate):
            self._bounds(node.expr, lo, hi)

    def earliest(self) -> int | None:
        """Unix ms of the oldest sample the prepared selectors read (None: no selector)."""
        return min((w[0] for w in self._windows.values()), default=None)

    def prepare(self, root: Node) -> None:
        """Load, for every selector of ``root``, the samples of every time it is evaluated at."""
        self._bounds(root, self.start, self.end)
        for node, (mint, maxt) in self._windows.items():
            self.check()
            self._data[node] = self.storage.load(node.matchers, mint, maxt)

    # -- budget --------------------------------------------------------------------------
    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout()

    def count(self, n: int) -> None:
        self.produced += n
        if self.storage.loaded + self.produced > self.max_samples:
            raise TooManySamples()

    # -- evaluation at one time ----------------------------------------------------------
    def eval(self, node: Node, t: int):  # noqa: ANN201 - float | str | list[Sample] | list[SeriesPoints]
        if isinstance(node, Number):
            return node.value
        if isinstance(node, String):
            return node.value
        if isinstance(node, Selector):
            if node.range_ms is None:
                return self.instant(node, t)
            return self.range(node, t)
        if isinstance(node, Subquery):
            return self.subquery(node, t)
        if isinstance(node, Negate):
            value = self.eval(node.expr, t)
            if isinstance(value, float):
                return -value
            return self.unique([Sample(self.drop_name(s.labels), -s.value, t) for s in value], "unary minus")
        if isinstance(node, Call):
            from console.promql.functions import call

            return call(self, node, t)
        if isinstance(node, Aggregate):
            from console.promql.aggregations import aggregate

            return aggregate(self, node, t)
        if isinstance(node, Binary):
            from console.promql.binary import binary

            return binary(self, node, t)
        raise ast.Unsupported(type(node).__name__)

    def drop_name(self, labels: tuple) -> tuple:
        """``labels`` without ``__name__``, memoised over the query (every step asks again)."""
        out = self._without_name.get(labels)
        if out is None:
            out = self._without_name[labels] = drop_name(labels)
        return out

    def node_cache(self, node: Node) -> dict:
        """A dict that lives as long as the query, for values one node computes at every step."""
        cache = self._node_caches.get(node)
        if cache is None:
            cache = self._node_caches[node] = {}
        return cache

    def single_name(self, node: Selector) -> bool:
        """True when every series ``node`` selected has the same metric name (dropping the
        name then cannot make two label sets equal)."""
        cache = self.node_cache(node)
        if "single_name" not in cache:
            cache["single_name"] = len({get(s.labels, NAME) for s in self._data[node]}) <= 1
        return cache["single_name"]

    def unique(self, vector: list[Sample], where: str) -> list[Sample]:
        """``vector`` unless two elements share a label set (Prometheus refuses that)."""
        if len({s.labels for s in vector}) != len(vector):
            raise EvalError(f"vector cannot contain metrics with the same labelset ({where})")
        return vector

    def selector_time(self, node: Selector | Subquery, t: int) -> int:
        """The time a selector or subquery reads at: ``@`` (or ``t``) minus its offset."""
        return self._at(node.at, t) - node.offset_ms

    def instant(self, node: Selector, t: int) -> list[Sample]:
        ref = self.selector_time(node, t)
        floor = ref - self.lookback
        out = []
        for s in self._data[node]:
            i = bisect_right(s.ts, ref) - 1
            if i >= 0 and s.ts[i] >= floor and (s.stale_from is None or ref < s.stale_from):
                out.append(Sample(s.labels, s.values[i], s.ts[i]))
        return out

    def windows(self, node: Selector, t: int) -> list[tuple[StoredSeries, int, int]]:
        """``(series, lo, hi)``: the samples ``lo:hi`` of each series in the range selector's
        window at ``t`` (series with none left out), without copying them."""
        ref = self.selector_time(node, t)
        start = ref - node.window_ms
        out = []
        for s in self._data[node]:
            ts = s.ts
            lo = bisect_left(ts, start)
            hi = bisect_right(ts, ref, lo)
            if hi > lo:
                out.append((s, lo, hi))
        return out

    def range(self, node: Selector, t: int) -> list[SeriesPoints]:
        return [SeriesPoints(s.labels, s.ts[lo:hi], s.values[lo:hi]) for s, lo, hi in self.windows(node, t)]

    def subquery(self, node: Subquery, t: int) -> list[SeriesPoints]:
        ref = self.selector_time(node, t)
        step = node.step_ms or ast.DEFAULT_SUBQUERY_STEP_MS
        first = -(-(ref - node.range_ms) // step) * step  # the first multiple of step >= ref - range
        series: dict = {}
        for inner in range(first, ref + 1, step):
            self.check()
            key = (node, inner)
            value = self._subquery_cache.get(key)
            if value is None:
                value = self.eval(node.expr, inner)
                self._subquery_cache[key] = value
            self.count(append_step(series, value, inner))
        return list(series.values())


def append_step(series: dict, value, t: int) -> int:  # noqa: ANN001 - float or list[Sample]
    """Add the value of one step ``t`` (a scalar, or an instant vector) to ``series``
    (label set -> SeriesPoints); returns how many points were added."""
    if isinstance(value, float):
        value = [Sample((), value, t)]
    for s in value:
        entry = series.get(s.labels)
        if entry is None:
            series[s.labels] = entry = SeriesPoints(s.labels, [], [])
        entry.ts.append(t)
        entry.values.append(s.value)
    return len(value)


def evaluate_instant(storage: Storage, root: Node, t: int, deadline: float, max_samples: int) -> Result:
    """``root`` at ``t`` (Unix ms): the query API's ``/query``."""
    kind = ast.value_type(root)
    ev = Evaluator(storage, t, t, deadline, max_samples)
    ev.prepare(root)
    value = ev.eval(root, t)
    if kind == SCALAR:
        return Result(SCALAR, value, t, ev.earliest())
    if kind == STRING:
        return Result(STRING, value, t, ev.earliest())
    if kind == MATRIX:
        ev.count(sum(len(s.ts) for s in value))
        return Result(MATRIX, sorted(value, key=lambda s: s.labels), t, ev.earliest())
    ev.count(len(value))
    for s in value:
        s.ts = t
    return Result(VECTOR, value, t, ev.earliest())


def evaluate_range(storage: Storage, root: Node, start: int, end: int, step: int, deadline: float,
                   max_samples: int) -> Result:
    """``root`` at every step from ``start`` to ``end`` (Unix ms): ``/query_range``. Raises
    EvalError for an expression that is not a scalar or an instant vector. Counter rates
    over long ranges read the rollup tiers where they can (console/promql/rollups.py);
    ``earliest`` then covers the raw samples read only."""
    kind = ast.value_type(root)
    if kind not in (SCALAR, VECTOR):
        shown = {MATRIX: "range vector", STRING: "string"}[kind]
        raise ast.ParseError(f'invalid expression type "{shown}" for range query, must be Scalar or instant Vector')
    series: dict = {}
    produced = 0
    plan = rollups.plan(root, start, end, step) if storage.rollups else None
    answered = None
    if plan is not None:
        def check() -> None:
            if time.monotonic() > deadline:
                raise QueryTimeout()
        answered = rollups.evaluate(storage, plan, start, end, step, check)
    if answered is not None:  # the steps the rollup tier answers; the rest from raw samples
        series, start = answered
        produced = sum(len(s.ts) for s in series.values())
    ev = Evaluator(storage, start, end, deadline, max_samples)
    ev.check()
    ev.count(produced)
    if start > end:
        return Result(MATRIX, sorted(series.values(), key=lambda s: s.labels), end, None)
    ev.prepare(root)
    for t in range(start, end + 1, step):
        ev.check()
        ev.count(append_step(series, ev.eval(root, t), t))
    return Result(MATRIX, sorted(series.values(), key=lambda s: s.labels), end, ev.earliest())
