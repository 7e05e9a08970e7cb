"""Query service: hosts and their summary, metric names, and range queries.

Methods take a SQLAlchemy session and run on a database reader thread.
"""
from __future__ import annotations

import itertools
import operator
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Generic, Iterable, Literal, Sequence, TypeVar, get_args

import numpy as np
import orjson
import re2
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from console.regex import RegexError, compile_re2
from console.config import ConsoleConfig
from console.errors import Unavailable, Unprocessable
from console.fleet.drift import mark_drift
from console.i18n import tx
from console.query import series_math
from console.query.agent_health import agent_health
from console.query.closed import ClosedCache
from console.query.columns import Columns, Points, concat, cut, points_json_many
from console.storage.database import Database, bound
from console.storage.hot_samples import present_buckets
from console.storage import blocks, rollup_blocks
from console.storage.models import RULES_HOST, Host, IngestRejection, RollupWatermark, Series

Function = Literal["raw", "rate", "increase", "avg", "min", "max"]
FUNCTIONS: tuple[str, ...] = get_args(Function)
RESOLUTIONS = {"1m": 60, "1h": 3600}  # rollup tiers and their bucket width, seconds
MAX_STEPS = 11_000  # like Prometheus: a query may not ask for more points per series
MATCH_DEADLINE_S = 10.0  # label matching of one query gives up after this long (503 query_timeout)
NAME_LABEL = "__name__"  # the metric's name as a label, as in PromQL
_FIRST = operator.itemgetter(0)
T = TypeVar("T")
SUMMARY_METRICS = ("node_cpu_seconds_total", "node_memory_MemTotal_bytes",
                   "node_memory_MemAvailable_bytes", "node_filesystem_size_bytes",
                   "node_filesystem_avail_bytes", "node_load1")


def label_regex(pattern: str) -> "re2._Regexp":
    """Compile a label matcher's regex with RE2 (google-re2), the engine and syntax of
    Prometheus' own matchers (Go's regexp is RE2): matching takes time linear in the
    label's length whatever the pattern, so ``(.+)+#`` cannot backtrack for minutes, and
    the match runs without the GIL. As in PromQL the match is fully anchored and ``.``
    also matches a newline (Prometheus 3). Raises ValueError with RE2's message for a
    pattern RE2 refuses (back-references, look-around, or too large to compile)."""
    try:  # never_capture: groups are never read, the fast automaton suffices
        return compile_re2(pattern, never_capture=True, dot_nl=True)
    except RegexError as exc:
        raise ValueError(exc.reason) from None


@dataclass(frozen=True)
class Matcher:
    """A label matcher: ``op`` is ``=``, ``!=``, ``=~`` or ``!~`` (regex fully anchored,
    RE2 syntax: see :func:`label_regex`). Raises ValueError for a regex RE2 refuses."""

    label: str
    op: str
    value: str
    regex: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", label_regex(self.value))

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class RangeQuery:
    """A range query. ``start``/``end``/``step`` are Unix seconds; ``group_by`` None means
    no grouping, an empty tuple means one group over every series."""

    metric: str
    start: float
    end: float
    step: float | None = None
    fn: str = "raw"
    host: str | None = None
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None
    agg: str = "sum"
    window: float | None = None  # rate/increase window in seconds; None: the step


@dataclass
class _Series:
    labels: dict[str, str]
    points: list = field(default_factory=list)
    counter: bool = False
    rows: list = field(default_factory=list)  # rollup rows (bucket, min, max, sum, count, increase)


@dataclass
class _Closed:
    """Points of the closed step buckets ``[lo, hi)`` (Unix ms) of one query shape, as
    read under the tier's watermark ``generation`` when it stood at ``done_until``."""

    generation: int
    done_until: int
    lo: int
    hi: int
    points: dict[int, Points]  # series id (or group index) -> its points, time-ordered
    size: int  # points held


class ClosedBucketCache(ClosedCache[_Closed]):
    """Points of closed rollup buckets per query shape, bounded by ``max_points`` held in
    all (as numpy columns: 16 bytes of memory a point); when an entry serves: console/query/closed.py."""

    def __init__(self, max_points: int) -> None:
        super().__init__(max_points)

    @property
    def max_points(self) -> int:
        return self.max_size


class _Later(Generic[T]):
    """The answer of ``fn(session, *args)`` started on the helper thread of :class:`Beside`,
    on a connection of its own; see :meth:`Beside.start`."""

    def __init__(self, future: Future, session: Session, fn: Callable[..., T], args: tuple) -> None:
        self._future, self._session, self._fn, self._args = future, session, fn, args

    def result(self) -> T:
        """The answer, or the exception ``fn`` raised (the same one, so a query fails as it
        would have on the caller's thread). Not started yet (the helper busy with another
        query's part): run here, on the caller's connection, instead of waiting."""
        if self._future.cancel():
            return self._fn(self._session, *self._args)
        return self._future.result()

    def discard(self) -> None:
        """The caller failed: not started, never run; started, waited for (its connection
        back in the pool before the caller's error is answered), its outcome dropped."""
        if not self._future.cancel():
            self._future.exception()


class Beside:
    """One helper thread per :class:`QueryService` (created with it, ended by its ``close``)
    on which a part of a query that needs nothing from the rest reads the database on a
    connection of its own while the query's own thread goes on: on the 1m tier the rows
    after the packed days are read there while the packed days' blocks are decoded. sqlite3
    and psycopg let go of the GIL while the database works, numpy and pcodec while they
    compute, so the two overlap on a second core (on PostgreSQL the server's work and the
    client's too). Each statement of a query already reads its own snapshot (SQLite outside
    an explicit transaction, PostgreSQL's READ COMMITTED), so another connection sees what
    the caller's next statement would."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="query-helper")

    def start(self, session: Session, fn: Callable[..., T], *args: Any) -> _Later[T] | None:
        """``fn(session', *args)`` begun on the helper thread with a session ``session'`` of
        its own on the engine of ``session``; None where the engine gives no second view of
        the same data (an in-memory SQLite database is one per connection) or after
        :meth:`close`: the caller then runs ``fn`` itself."""
        engine = session.get_bind()
        if not isinstance(engine, Engine) or (engine.dialect.name == "sqlite"
                                              and engine.url.database in (None, "", ":memory:")):
            return None
        try:
            future = self._pool.submit(_on_own_session, engine, fn, args)
        except RuntimeError:  # shut down
            return None
        return _Later(future, session, fn, args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _on_own_session(engine: Engine, fn: Callable[..., T], args: tuple) -> T:
    with Session(engine) as session:  # read only: closing rolls its transaction back
        return fn(session, *args)


class QueryService:
    """``match_deadline_s``: seconds label matching of one query may take before it is
    answered 503 ``query_timeout`` (it runs on a database reader thread, never the IOLoop).
    The async twins (``ahosts`` for ``hosts``) run the sync methods on a reader of ``db``."""

    def __init__(self, config: ConsoleConfig, clock: Callable[[], float] = time.time,
                 match_deadline_s: float = MATCH_DEADLINE_S, db: Database | None = None) -> None:
        self.db = db
        self._config = config
        self._clock = clock
        self._match_deadline_s = match_deadline_s
        self.closed_buckets = ClosedBucketCache(config.query_cache_points)
        self.beside = Beside()

    def close(self) -> None:
        """End the helper thread (:class:`Beside`); a query still running finishes on its own thread."""
        self.beside.close()

    async def ahosts(self, refusals: dict[str, tuple[float, int]] | None = None) -> list[dict]:
        return await bound(self.db, self).read(self.hosts, refusals)

    async def ahost_exists(self, name: str) -> bool:
        """Whether a host of this name ever reported (a row in ``hosts``)."""
        return await bound(self.db, self).read(self.host_exists, name)

    def host_exists(self, session: Session, name: str) -> bool:
        return session.execute(select(Host.id).where(Host.name == name)).first() is not None

    async def ametric_names(self, host: str | None, start_ms: int | None = None,
                            end_ms: int | None = None) -> list[str]:
        return await bound(self.db, self).query(self.metric_names, host, start_ms, end_ms)

    async def arange(self, q: RangeQuery) -> dict:
        return await bound(self.db, self).query(self.range, q)

    # -- hosts -------------------------------------------------------------------------
    def hosts(self, session: Session, refusals: dict[str, tuple[float, int]] | None = None) -> list[dict]:
        """Every known host: ``{"host", "up", "last_seen" (Unix s), "agent_version",
        "interval" (s), "labels", "summary": {"cpu_ratio", "memory_ratio",
        "disk_max_ratio", "disk_max_mountpoint" (the mount point of that fullest filesystem), "load1"},
        "agent_health": {...} ("unknown" with why while the host is down), "config_hash", "drift": bool,
        "drift_fields": [...], "drift_baseline": {...}, "clock_skew_seconds" (agent minus console clock, s, or None),
        "clock_skewed": bool (beyond ``clock_skew_max_seconds``)}``, ratios in 0..1 or None when not reported; ``agent_health`` as
        in :func:`console.query.agent_health.agent_health`, plus ``auth_refused``
        (``{"last_at", "count"}``) while the host's agent presents a revoked or expired token
        (``refusals``: :meth:`console.auth.tokens.TokenService.agent_refusals`); drift as in
        console/fleet/drift.py."""
        now = self._clock()
        refusals = refusals or {}
        out = []
        for host in session.execute(select(Host).where(Host.name != RULES_HOST).order_by(Host.name)).scalars():
            interval = host.interval_s or self._config.default_interval
            up = host.last_seen is not None and now - host.last_seen <= interval * self._config.down_after_intervals
            health = self._refused(agent_health(session, host.id), host, refusals.get(host.name))
            out.append({"host": host.name, "up": up, "last_seen": host.last_seen,
                        "agent_version": host.agent_version, "interval": interval,
                        "labels": orjson.loads(host.labels or "{}"),
                        "summary": self._summary(session, host.id),
                        "rejected": self._rejected(session, host.id),
                         "agent_health": health if up else self._silent(health, host.last_seen, now),
                         "config_hash": host.config_hash,
                         "clock_skew_seconds": host.clock_skew_seconds,
                         "clock_skewed": host.clock_skew_seconds is not None
                         and abs(host.clock_skew_seconds) > self._config.clock_skew_max_seconds})
        mark_drift(out)
        return out

    @staticmethod
    def _silent(health: dict, last_seen: float | None, now: float) -> dict:
        # A down host's agent says nothing now: its last self-metrics ("ok" included) are
        # history, so its health is unknown, with why (worded as overview.js problemText reads it).
        since = "never reported" if last_seen is None else f"no report for {max(0, int(now - last_seen))} s"
        was = f"; its last report said {health['status']}" if health["status"] != "unknown" else ""
        return {**health, "status": "unknown", "problems": [f"{since}{was}", *health["problems"]]}

    @staticmethod
    def _refused(health: dict, host: Host, refused: tuple[float, int] | None) -> dict:
        # An agent whose token was revoked keeps its data in its spool and retries; its own
        # metrics cannot reach the console, so the console's count of refusals says why.
        if refused is None or (host.last_seen is not None and refused[0] < host.last_seen):
            return health
        last_at, count = refused
        problem = f"agent token refused (revoked or expired): {count} attempt(s); data waits in the agent's spool"
        return {**health, "status": "degraded", "problems": [*health["problems"], problem],
                "auth_refused": {"last_at": last_at, "count": count}}

    def _rejected(self, session: Session, host_id: int) -> list[dict]:
        """Samples of this host not stored, per reason: ``[{"reason", "count" (since the
        first refusal), "last_at" (Unix s), "example", "metric"}]``; reasons are
        ``series_limit``, ``too_old``, ``too_new``, ``non_finite`` and, for log records,
        ``log_too_old``. ``example`` is the last refused series as ingest wrote it,
        ``name{labels as JSON}`` (`` @ <Unix ms>`` after it for a sample outside the time
        window), and ``metric`` its name; for ``log_too_old`` it is ``source @ <Unix s>`` and
        ``metric`` is None."""
        rows = session.execute(select(IngestRejection).where(IngestRejection.host_id == host_id)
                               .order_by(IngestRejection.reason)).scalars()
        return [{"reason": r.reason, "count": r.count, "last_at": r.last_at, "example": r.last_example,
                 "metric": self._rejected_metric(r.reason, r.last_example)} for r in rows]

    @staticmethod
    def _rejected_metric(reason: str, example: str) -> str | None:
        # A metric name has no "{" (Prometheus' [a-zA-Z_:][a-zA-Z0-9_:]*) and ingest writes
        # the labels as a JSON object right after it, so the name ends at the first "{".
        if reason == "log_too_old" or "{" not in example:
            return None
        return example.partition("{")[0] or None

    def _summary(self, session: Session, host_id: int) -> dict:
        rows = session.execute(select(Series.id, Series.name, Series.labels).where(
            Series.host_id == host_id, Series.name.in_(SUMMARY_METRICS))).all()
        latest: dict[str, list[tuple[dict, list]]] = {}
        for sid, name, labels_json in rows:
            labels = orjson.loads(labels_json)
            if name == "node_cpu_seconds_total" and labels.get("mode") != "idle":
                continue
            points = blocks.latest_samples(session, sid, 2)
            if points:
                latest.setdefault(name, []).append((labels, points))

        def last(name: str) -> float | None:
            values = latest.get(name)
            return values[0][1][-1][1] if values else None

        idle_rates = [series_math.rate(points)[-1][1] for _, points in latest.get("node_cpu_seconds_total", [])
                      if len(points) == 2 and series_math.rate(points)]
        cpu = min(1.0, max(0.0, 1.0 - sum(idle_rates) / len(idle_rates))) if idle_rates else None
        total, available = last("node_memory_MemTotal_bytes"), last("node_memory_MemAvailable_bytes")
        memory = 1.0 - available / total if total and available is not None else None
        sizes = {labels.get("mountpoint"): points[-1][1] for labels, points in latest.get("node_filesystem_size_bytes", [])}
        disk = [(1.0 - points[-1][1] / sizes[labels.get("mountpoint")], labels.get("mountpoint") or "")
                for labels, points in latest.get("node_filesystem_avail_bytes", [])
                if sizes.get(labels.get("mountpoint"))]
        worst = max(disk) if disk else (None, None)
        return {"cpu_ratio": cpu, "memory_ratio": memory, "disk_max_ratio": worst[0],
                "disk_max_mountpoint": worst[1], "load1": last("node_load1")}

    # -- metrics -----------------------------------------------------------------------
    def metric_names(self, session: Session, host: str | None, start_ms: int | None = None,
                     end_ms: int | None = None) -> list[str]:
        """Names of the series (of ``host``) with samples stored; with ``start_ms`` and
        ``end_ms`` (Unix ms), only of those with data in that window."""
        stmt = select(Series.name).distinct().order_by(Series.name).where(Series.last_ts.is_not(None))
        if start_ms is not None:
            stmt = stmt.where(Series.last_ts >= start_ms)
        if end_ms is not None:
            stmt = stmt.where(Series.first_ts <= end_ms)
        if host:
            stmt = stmt.join(Host, Host.id == Series.host_id).where(Host.name == host)
        return list(session.execute(stmt).scalars())

    def choose_resolution(self, start: float, step: float | None) -> str:
        """The tier a query reads: the coarsest rollup whose bucket divides ``step`` (so
        buckets combine exactly), else raw; a tier whose retention no longer covers
        ``start`` is replaced by the next coarser one."""
        c = self._config
        now = self._clock()
        tier = "raw"
        if step is not None:
            for name in ("1h", "1m"):
                width = RESOLUTIONS[name]
                if step >= width and step % width == 0:
                    tier = name
                    break
        if tier == "raw" and start < now - c.retention_raw_days * 86400:
            tier = "1m"
        if tier == "1m" and start < now - c.retention_1m_days * 86400:
            tier = "1h"
        return tier

    def range(self, session: Session, q: RangeQuery) -> dict:
        """Run a range query -> ``{"metric", "step", "fn", "resolution": "raw"|"1m"|"1h",
        "series": [{"labels", "points": [[ts_ms, value], ...]}]}``; on the rollup tiers each
        series' points are already written as that JSON text (an ``orjson.Fragment``:
        orjson, the handler's encoder, writes it into the answer as it is), on the raw tier
        they are a list of ``(ts_ms, value)`` pairs.

        Without a step, fn=raw returns stored samples and rate/increase work between
        consecutive samples. With a step (seconds), points sit on multiples of it:
        raw/avg/min/max summarise the bucket ``[t, t+step)`` stamped ``t`` (raw: its last
        sample on the raw tier, its average on a rollup tier); rate/increase cover
        ``[t-step, t]`` stamped ``t``, with Prometheus' extrapolation on the raw tier and
        the exact sum of bucket increases on rollup tiers. Raises Unprocessable (422) when the
        query exceeds the step, series or point limits."""
        step = q.step
        if step is None and (q.group_by is not None or q.fn in ("avg", "min", "max")):
            step = auto_step(q.start, q.end)
        if step is not None and (q.end - q.start) / step > MAX_STEPS:
            raise Unprocessable(tx("range/step asks for more than {limit} points per series; raise step", limit=MAX_STEPS),
                                {"limit": MAX_STEPS}, code="too_many_steps")
        resolution = self.choose_resolution(q.start, step)
        if resolution != "raw" and step is None:
            step = float(RESOLUTIONS[resolution])
        step_ms = int(step * 1000) if step else None
        start_ms, end_ms = int(q.start * 1000), int(q.end * 1000)
        # Only series with a sample in the window read (the query's, widened by what a
        # step bucket or a rate window reaches back or forth) are selected and counted.
        reach = step_ms or 0
        if q.fn in ("rate", "increase"):
            reach = max(reach, int((q.window or 0) * 1000), 300_000)
        selected = self._select_series(session, q, start_ms - reach, end_ms + (step_ms or 0))
        results: Sequence[tuple[dict, Points]]
        if resolution == "raw":
            results = self._raw_tier(session, q, selected, start_ms, end_ms, step_ms)
            if q.group_by is not None:
                grouped = series_math.aggregate(
                    ((tuple(labels.get(k, "") for k in q.group_by), points) for labels, points in results), q.agg)
                results = [(dict(zip(q.group_by, key)), points) for key, points in sorted(grouped.items())]
        else:  # grouped already, in SQL
            assert step_ms is not None  # a rollup tier always has a step (set above)
            results = self._rollup_tier(session, q, selected, resolution, start_ms, end_ms, step_ms)
        return {"metric": q.metric, "step": step, "fn": q.fn, "resolution": resolution,
                "series": [{"labels": labels, "points": points} for labels, points in _encoded(results)]}

    def _raw_tier(self, session: Session, q: RangeQuery, selected: dict[int, "_Series"],
                  start_ms: int, end_ms: int, step_ms: int | None) -> list[tuple[dict, list]]:
        counting = q.fn in ("rate", "increase")
        # rate/increase over [t - window, t]: Prometheus' rate(x[window]) evaluated every step.
        window_ms = int(q.window * 1000) if q.window else step_ms
        # They need the samples before the first window: one window back, or 5 minutes.
        lookback = (window_ms if window_ms else 300_000) if counting else 0
        if step_ms and not counting:
            start_ms = start_ms // step_ms * step_ms
            end_ms = end_ms // step_ms * step_ms + step_ms - 1  # whole buckets, as on rollup tiers
        self._load_points(session, selected, start_ms - lookback, end_ms)
        results = []
        for series in selected.values():
            points = series.points
            if counting and step_ms:
                points = series_math.step_windows(points, start_ms, end_ms, step_ms, q.fn == "rate",
                                                   window_ms=window_ms)
            elif counting:
                points = series_math.rate(points) if q.fn == "rate" else series_math.increases(points)
                points = [(ts, v) for ts, v in points if ts >= start_ms]
            elif step_ms and q.fn == "raw":
                points = series_math.bucket_start(series_math.align_last(points, step_ms), step_ms)
            elif step_ms:
                fn = series_math.AGGREGATORS[q.fn]  # avg, min or max
                buckets: dict[int, list[float]] = {}
                for ts, v in points:
                    buckets.setdefault(ts // step_ms * step_ms, []).append(v)
                points = [(ts, fn(vs)) for ts, vs in buckets.items()]
            results.append((series.labels, points))
        return results

    def _rollup_tier(self, session: Session, q: RangeQuery, selected: dict[int, "_Series"], resolution: str,
                     start_ms: int, end_ms: int, step_ms: int) -> list[tuple[dict, Points]]:
        """Step buckets wholly below the tier's watermark are computed in SQL from the rollup
        rows (and, with ``group_by``, aggregated across series there too, so one row per
        group and step leaves the database); the buckets from the watermark's step on
        combine rollup rows with raw samples not rolled up yet, in Python, the same way."""
        counting = q.fn in ("rate", "increase")
        # Buckets [b, b+step) needed: gauges stamp b, counters stamp b+step.
        first = start_ms // step_ms * step_ms
        if counting:
            first = -(-start_ms // step_ms) * step_ms - step_ms
        # A bucket stamped t always covers all of [t, t+step), even past ``end``.
        last_end = end_ms // step_ms * step_ms + (0 if counting else step_ms)
        mark = session.get(RollupWatermark, resolution)
        done = min(mark.done_until if mark else first, last_end)
        done = max(done, first)
        cut = done // step_ms * step_ms  # buckets before it lie wholly in the rollup table
        # rate/increase exist for counters only: rollups keep increases for those alone.
        ids = [sid for sid, s in selected.items() if s.counter or not counting]
        table = "rollup_1m" if resolution == "1m" else "rollup_1h"
        width = RESOLUTIONS[resolution] * 1000
        budget = self._config.max_points_per_query
        keys: list[tuple] = []
        if q.group_by is not None:
            keys = sorted({tuple(s.labels.get(k, "") for k in q.group_by) for s in selected.values()})
        head = self._closed_points(session, resolution, mark, table, q, selected, ids, keys, first, cut,
                                   step_ms, width, budget)

        tail: dict[int, list] = {}
        if cut < last_end:
            loaded = sum(len(v) for v in head.values())
            self._load_rollups(session, selected, ids, table, cut, done, step_ms, width, budget - loaded)
            if done < last_end:
                # Minutes of samples per series: one statement, not one per series. The
                # sample before ``done`` (looked for 5 minutes back) is only an increase's
                # start: averages, minima and maxima read from ``done`` on (a sixth of the
                # rows at a 10 s interval).
                self._load_points(session, selected, done - (300_000 if counting else 0), last_end - 1, short=True)
                for series in selected.values():
                    before = [p for p in series.points if p[0] < done]
                    after = [p for p in series.points if p[0] >= done]
                    prev = before[-1][1] if before else None
                    series.rows.extend(series_math.bucket_stats(after, step_ms, prev))
            for sid, series in selected.items():
                points = []
                for b, mn, mx, sm, n, inc in _merge_rows(series.rows):
                    if q.fn in ("raw", "avg"):
                        points.append((b, sm / n))
                    elif q.fn == "min":
                        points.append((b, mn))
                    elif q.fn == "max":
                        points.append((b, mx))
                    elif series.counter and inc is not None:
                        points.append((b + step_ms, inc * 1000.0 / step_ms if q.fn == "rate" else inc))
                tail[sid] = points
        # The closed buckets' points may be the cache's own: joined into new ones, never extended.
        if q.group_by is None:
            return [(s.labels, concat(head.get(sid, []), tail.get(sid, []))) for sid, s in selected.items()]
        grouped = series_math.aggregate(
            ((tuple(s.labels.get(k, "") for k in q.group_by), tail.get(sid, [])) for sid, s in selected.items()),
            q.agg)
        return [(dict(zip(q.group_by, key)), concat(head.get(i, []), grouped.get(key, []))) for i, key in enumerate(keys)]

    def _closed_points(self, session: Session, resolution: str, mark: RollupWatermark | None, table: str,
                       q: RangeQuery, selected: dict[int, "_Series"], ids: list[int], keys: list[tuple],
                       lo: int, hi: int, step_ms: int, width: int, limit: int) -> dict[int, Points]:
        """:func:`_rollup_sql` of the closed buckets ``[lo, hi)``, through the cache of
        closed buckets: a query repeated, or moved forward as a dashboard refreshes, reads
        from the database only the buckets closed since (none, or the newest few), and
        answers as if read now. Raises Unprocessable (422) beyond ``limit`` points."""
        def read(a: int, b: int) -> dict[int, Points]:
            return _closed_sql(session, self._config.rollup_1m_host, table, q, selected, ids, keys, a, b, step_ms,
                               width, limit, self.beside)

        cache = self.closed_buckets
        if hi <= lo or not ids or mark is None or cache.max_points == 0:
            return read(lo, hi)
        # The selected series (their ids) fix the metric, the matchers' outcome and the groups.
        key = (resolution, q.fn, q.group_by, q.agg if q.group_by is not None else None, step_ms, tuple(sorted(selected)))
        entry = cache.get(key, mark.generation, mark.done_until, lo)
        if entry is None:
            points = read(lo, hi)
            start = lo
        else:
            points = entry.points
            start = entry.lo
            if hi > entry.hi:
                newer = read(entry.hi, hi)
                points = {k: concat(points.get(k, []), newer.get(k, [])) for k in points.keys() | newer.keys()}
        # Points are stamped at their bucket's start, counters' at its end.
        offset = step_ms if q.fn in ("rate", "increase") else 0
        out = {}
        for k, series in points.items():
            kept = cut(series, lo + offset if start < lo else -2 ** 63, hi + offset)
            if len(kept):
                out[k] = kept
        size = sum(len(p) for p in out.values())
        if size > limit:
            raise _too_many_points(limit)
        if entry is None or hi > entry.hi or (hi == entry.hi and lo > entry.lo):  # never lose newer buckets
            cache.put(key, _Closed(mark.generation, mark.done_until, lo, hi, out, size))
        return out

    def _load_rollups(self, session: Session, selected: dict[int, "_Series"], ids: list[int], table: str,
                      lo: int, hi: int, step_ms: int, width: int, limit: int) -> None:
        """Per-series rollup rows of ``[lo, hi)`` grouped to the step -> ``series.rows``
        as ``(bucket, min, max, sum, count, increase)``."""
        if hi <= lo or not ids:
            return
        cold = rollup_blocks.read_blocks(session, ids, lo, hi) if table == "rollup_1m" else []
        if cold:  # packed days in the window: read blocks and rows together, grouped as in SQL below
            loaded = 0
            for sid, found in rollup_blocks.load(session, ids, lo, hi, cold).items():
                rows = found.tuples() if step_ms == width else rollup_blocks.bucket_rows(found, step_ms)
                loaded += len(rows)
                if loaded > limit:
                    raise _too_many_points(self._config.max_points_per_query)
                selected[sid].rows.extend(rows)
            return
        b = f"(ts / {step_ms}) * {step_ms}"
        if step_ms == width:  # rows are the buckets: no GROUP BY
            sql = (f"SELECT series_id, ts, min, max, sum, count, increase FROM {table} "
                   f"WHERE series_id IN ({_ints(ids)}) AND ts >= {lo} AND ts < {hi} ORDER BY series_id, ts")
        else:
            sql = (f"SELECT series_id, {b} AS b, MIN(min), MAX(max), SUM(sum), SUM(count), SUM(increase) "
                   f"FROM {table} WHERE series_id IN ({_ints(ids)}) AND ts >= {lo} AND ts < {hi} "
                   f"GROUP BY series_id, {b} ORDER BY series_id, b")
        rows = _fetch(session, sql + f" LIMIT {limit + 1}")
        if len(rows) > limit:
            raise _too_many_points(self._config.max_points_per_query)
        for sid, *row in rows:
            selected[sid].rows.append(tuple(row))

    def _select_series(self, session: Session, q: RangeQuery, lo_ms: int, hi_ms: int) -> dict[int, _Series]:
        """The series of ``q`` with data in ``[lo_ms, hi_ms]`` (Unix ms; by their first and
        last sample time) whose labels match, in the order of their ids (the order they were
        first stored). Raises Unprocessable over the series limit."""
        stmt = (select(Series.id, Series.labels, Host.name, Series.type).join(Host, Host.id == Series.host_id)
                .where(Series.name == q.metric, Series.first_ts <= hi_ms, Series.last_ts >= lo_ms)
                .order_by(Series.id))  # one order for every answer: PostgreSQL's plan, and so its order, varies
        if q.host:
            stmt = stmt.where(Host.name == q.host)
        selected: dict[int, _Series] = {}
        deadline = time.monotonic() + self._match_deadline_s
        # The metric's name is a label as in PromQL (``__name__``) for the matchers and
        # group_by that name it; the per-series answer's labels leave it out, as before.
        grouped_by_name = NAME_LABEL in (q.group_by or ())
        named = grouped_by_name or any(m.label == NAME_LABEL for m in q.matchers)
        for sid, labels_json, host_name, kind in session.connection().execute(stmt):  # Core: no ORM rows
            labels = orjson.loads(labels_json)
            if host_name != RULES_HOST:  # a recording rule's series has only its own labels
                labels["host"] = host_name
            if named:
                labels[NAME_LABEL] = q.metric
            if all(m.matches(labels) for m in q.matchers):
                if named and not grouped_by_name:
                    del labels[NAME_LABEL]
                selected[sid] = _Series(labels, counter=kind == "counter")
            if q.matchers and time.monotonic() > deadline:
                raise Unavailable(tx("matching labels took longer than {seconds} s; narrow the "
                                     "query with host= or label.K=V matchers", seconds=f"{self._match_deadline_s:g}"), {"limit_seconds": self._match_deadline_s},
                                  code="query_timeout")
        limit = self._config.max_series_per_query
        if len(selected) > limit:
            raise Unprocessable(tx("query matches {count} series, more than the limit of {limit}; "
                                   "narrow it with host= or label matchers", count=len(selected), limit=limit), {"limit": limit}, code="too_many_series")
        return selected

    def _load_points(self, session: Session, selected: dict[int, _Series], start_ms: int, end_ms: int,
                     short: bool = False) -> None:
        """Raw samples of ``[start_ms, end_ms]`` -> ``series.points`` as ``(ts_ms, value)``;
        raises Unprocessable (422) beyond ``max_points_per_query`` samples."""
        limit = self._config.max_points_per_query
        if not selected:
            return
        points, loaded = sample_rows(session, selected, int(start_ms), int(end_ms), limit, short)
        for sid, rows in points.items():
            selected[sid].points = rows
        if loaded > limit:
            raise Unprocessable(tx("query reads more than {limit} samples; shorten the range or "
                                   "narrow the series", limit=limit), {"limit": limit}, code="too_many_points")


def _ints(values: Iterable[int]) -> str:
    """A comma-separated SQL list of integers. Queries inline only integers the service
    took from the database or computed itself (never request text), so one statement
    serves any number of series on both SQLite (no bound-parameter cap) and PostgreSQL."""
    return ",".join(str(int(v)) for v in values)


def _cursor(session: Session) -> Any:
    """A DB-API cursor of the session's connection (its transaction). On PostgreSQL a binary
    one: psycopg reads float8 and bigint columns from their binary form, the same values
    (float8 bit for bit) for ~40 % of the CPU of parsing their text, which over ~100,000
    rows is tens of milliseconds."""
    connection = session.connection().connection
    driver = connection.driver_connection
    if session.get_bind().dialect.name == "postgresql" and driver is not None:
        return driver.cursor(binary=True)
    return connection.cursor()


def _fetch(session: Session, sql: str) -> list[tuple]:
    """Rows of ``sql`` as plain tuples from the DB-API cursor of the session's connection
    (its transaction): no SQLAlchemy Row objects for row counts in the hundreds of thousands."""
    cursor = _cursor(session)
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())  # a list already (sqlite3, psycopg): a cheap copy of its pointers
    finally:
        cursor.close()


def _sample_series_rows(session: Session, ids: list[int], mint: int, maxt: int, limit: int,
                        short: bool = False) -> tuple[dict[int, list], int]:
    """``{series_id: [(ts, value), ...]}`` of the hot rows (``samples``) with ``mint <= ts
    <= maxt`` (Unix ms), time-ordered, and the number of rows read, at most ``limit + 1``.
    On SQLite one cached prepared statement per series, whose rows are the point tuples
    as they are (~30 % less CPU than one query re-split in Python), seeking the minutes
    (buckets, console/storage/hot_samples.py) stored in the range, found once for all
    series; elsewhere, and with ``short`` (a few rows per series: thousands of statements
    would cost more than their rows), one statement."""
    out: dict[int, list] = {}
    loaded = 0
    cursor = _cursor(session)
    try:
        if session.get_bind().dialect.name == "sqlite":
            buckets = present_buckets(cursor, mint, maxt)
            if not buckets:
                return ({} if short else {sid: [] for sid in ids}), 0
            within = f"bucket IN ({','.join('?' * len(buckets))}) AND "
            if not short:
                # ORDER BY bucket, ts is the key's order for one series (no sort), and time order.
                sql = (f"SELECT ts, value FROM samples WHERE {within}series_id = ? AND ts >= ? AND ts <= ? "
                       "ORDER BY bucket, ts LIMIT ?")
                for sid in ids:
                    cursor.execute(sql, (*buckets, sid, mint, maxt, limit - loaded + 1))
                    out[sid] = rows = list(cursor.fetchall())
                    loaded += len(rows)
                    if loaded > limit:
                        break
                return out, loaded
            params: tuple = (*buckets, mint, maxt)
            ph = "?"
        else:
            within, params, ph = "", (mint, maxt), "%s"
        cursor.execute(f"SELECT series_id, ts, value FROM samples WHERE {within}series_id IN ({_ints(ids)}) "
                       f"AND ts >= {ph} AND ts <= {ph} ORDER BY 1, 2 LIMIT {ph}", (*params, limit + 1))
        found = cursor.fetchall()
        loaded = len(found)
        for sid, part in itertools.groupby(found, _FIRST):
            out[sid] = [(a, b) for _, a, b in part]
    finally:
        cursor.close()
    return out, loaded


def _series_columns(session: Session, ids: list[int], stamp: str, value: str, table: str, lo: int, hi: int,
                    nulls: str, limit: int, grouped: bool = False, having: str = "") -> tuple[dict[int, Points], int]:
    """:func:`_series_rows` of the columns ``stamp`` (bigint) and ``value`` (float) with
    ``lo <= ts < hi`` (Unix ms, bound) as ``{series_id: Columns}`` and the rows read.
    ``stamp``, ``value``, ``nulls`` and ``having`` are fixed SQL fragments of the caller. On SQLite its statement per series. On PostgreSQL one
    statement that gives each series' stamps and values as two ``bytea``, their binary
    forms (``int8send``, ``float8send``: the bits as stored, a NULL value as NaN, written
    as ``null`` like None) joined in time order, read straight into numpy: ~100,000 rows
    as 500 pairs of byte strings, not as row objects the driver builds (a third of the wall
    time, a quarter of the CPU)."""
    out: dict[int, Points] = {}
    loaded = 0
    cursor = _cursor(session)
    if session.get_bind().dialect.name == "sqlite":
        # Each series' rows made columns at once: 8,000 series' 1.4 M row tuples alive
        # together would be walked again and again by the cyclic collector.
        sql = (f"SELECT {stamp}, {value} FROM {table} WHERE series_id = ? AND ts >= ? AND ts < ?{nulls}"
               f"{f' GROUP BY 1 {having}' if grouped else ''} ORDER BY 1 LIMIT ?")
        try:
            for sid in ids:
                cursor.execute(sql, (sid, lo, hi, limit - loaded + 1))
                rows = cursor.fetchall()
                loaded += len(rows)
                if loaded > limit:
                    break
                if rows:
                    out[sid] = Columns.of(rows)
        finally:
            cursor.close()
        return out, loaded
    group = f" GROUP BY 1, 2 {having}" if grouped else ""
    try:
        cursor.execute("SELECT series_id, string_agg(int8send(b), '' ORDER BY b), "
                       "string_agg(float8send(COALESCE(v, 'NaN')), '' ORDER BY b) "
                       f"FROM (SELECT series_id, {stamp} AS b, {value} AS v FROM {table} "
                       f"WHERE series_id = ANY(%s) AND ts >= %s AND ts < %s{nulls}{group}) x "
                       "GROUP BY series_id ORDER BY series_id",
                       (list(ids), lo, hi))
        found = cursor.fetchall()
    finally:
        cursor.close()
    for sid, stamps, values in found:
        out[sid] = Columns(np.frombuffer(stamps, ">i8").astype(np.int64), np.frombuffer(values, ">f8").astype(np.float64))
        loaded += len(out[sid])
    return out, loaded


def _encoded(results: Sequence[tuple[dict, Points]]) -> list[tuple[dict, list | orjson.Fragment]]:
    """Each series' points: columns as their JSON text written from the columns
    (console/query/columns.py), lists of pairs as they are."""
    columns = {i: points for i, (_, points) in enumerate(results) if isinstance(points, Columns)}
    texts = iter(points_json_many([(p.ts, p.values) for p in columns.values()]))
    return [(labels, orjson.Fragment(next(texts)) if isinstance(points, Columns) else points)
            for labels, points in results]


def sample_rows(session: Session, ids: Iterable[int], mint: int, maxt: int, limit: int,
                short: bool = False) -> tuple[dict[int, list], int]:
    """Raw samples of ``[mint, maxt]`` (Unix ms, inclusive) of the series ``ids``:
    ``{series_id: [(ts_ms, value), ...]}`` time-ordered, and the number read (past
    ``limit`` the answer is cut: callers refuse it). Hot rows (table ``samples``) and cold
    blocks (``sample_blocks``, console/storage/blocks.py) are combined; a timestamp in both
    (a replayed sample that arrived after its block was packed) keeps the block's value,
    as ingest keeps the first sample stored for a timestamp. ``short``: a window of minutes
    (read in one statement on SQLite too)."""
    ids = list(ids)
    out, loaded = _sample_series_rows(session, ids, int(mint), int(maxt), limit, short=short)
    if loaded > limit or not ids:
        return out, loaded
    # The ids inlined (as _sample_series_rows does), not bound one by one: SQLAlchemy's
    # expanding IN of one parameter per series cost more than the statement (the open
    # tail's read took 55-72 ms with it at 8,000 series, 19-27 ms without; BENCHMARKS.md).
    ph = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    cursor = _cursor(session)
    try:
        cursor.execute(f"SELECT series_id, data FROM sample_blocks WHERE series_id IN ({_ints(ids)}) "
                       f"AND start_ts <= {ph} AND end_ts >= {ph} ORDER BY series_id, start_ts", (int(maxt), int(mint)))
        cold = cursor.fetchall()
    finally:
        cursor.close()
    for sid, group in itertools.groupby(cold, _FIRST):
        packed: list[tuple[int, float]] = []
        for _, data in group:
            t, v = blocks.decode_arrays(bytes(data))
            lo, hi = np.searchsorted(t, mint, "left"), np.searchsorted(t, maxt, "right")
            packed.extend(zip(t[lo:hi].tolist(), v[lo:hi].tolist()))
        hot = out.get(sid)
        if hot and packed and hot[0][0] > packed[-1][0]:
            packed.extend(hot)  # the usual case: the hot window follows the blocks
        elif hot:
            merged = dict(hot)
            merged.update(packed)  # the block's value wins on a shared timestamp
            packed = sorted(merged.items())
        loaded += len(packed) - len(hot or ())
        out[sid] = packed
        if loaded > limit:
            break
    return out, loaded


def _too_many_points(limit: int) -> Unprocessable:
    return Unprocessable(tx("query returns more than {limit} points; shorten the range, "
                            "raise step or narrow the series", limit=limit), {"limit": limit}, code="too_many_points")


def _rollup_sql(session: Session, table: str, q: RangeQuery, selected: dict[int, _Series], ids: list[int],
                keys: list[tuple], lo: int, hi: int, step_ms: int, width: int, limit: int,
                beside: Beside | None = None) -> dict[int, Points]:
    """Points of the step buckets in ``[lo, hi)`` from rollup rows as :func:`_rows_sql`
    gives them; on the 1m tier the step buckets up to the end of the newest packed day
    (``rollup_1m_blocks``) are computed from blocks and rows together with numpy
    (:func:`_rollup_numpy`, the same expressions), the later ones in SQL, read on the
    helper thread of ``beside`` (a connection of its own) while the blocks are decoded
    (on SQLite only for a cross-series aggregate)."""
    if table != "rollup_1m" or hi <= lo or not ids:
        return _rows_sql(session, table, q, selected, ids, keys, lo, hi, step_ms, width, limit)
    top, cold = rollup_blocks.many_with_end(session, ids, lo, hi)
    if top is None:
        return _rows_sql(session, table, q, selected, ids, keys, lo, hi, step_ms, width, limit)
    split = min(hi, -(-top // step_ms) * step_ms)  # step buckets wholly before it may hold packed rows
    later = None
    # Per series on SQLite the later rows are read here, after the blocks: the driver gives
    # up and takes back the GIL for every row it steps, so thousands of small rows read
    # beside the blocks' decoding made both slower (24 h x 500 series: 130 ms against 107
    # read one after the other; BENCHMARKS.md). One aggregate statement holds the GIL little.
    sqlite_rows = q.group_by is None and session.get_bind().dialect.name == "sqlite"
    if split < hi and beside is not None and not sqlite_rows:
        later = beside.start(session, _rows_sql, table, q, selected, ids, keys, split, hi, step_ms, width, limit)
    found = rollup_blocks.load_each(session, ids, lo, split, cold, (_column_of(q.fn),))  # the one column read
    try:
        older = _rollup_numpy(found, q, selected, keys, step_ms, width, limit)
    except BaseException:
        if later is not None:
            later.discard()
        raise
    finally:
        found.close()
        if isinstance(cold, Generator):
            cold.close()  # a stream an error cut short holds its connection's lock: the rollback would wait forever
    if split >= hi:
        return older
    newer = (later.result() if later is not None
             else _rows_sql(session, table, q, selected, ids, keys, split, hi, step_ms, width, limit))
    out = older
    for k, points in newer.items():
        out[k] = concat(out.get(k, []), points)
    if sum(len(p) for p in out.values()) > limit:
        raise _too_many_points(limit)
    return out


def _column_of(fn: str) -> str:
    """The float column of a 1m rollup row that ``fn`` reads (``sum``, with ``count``, for
    averages)."""
    return {"raw": "sum", "avg": "sum", "min": "min", "max": "max"}.get(fn, "increase")


def _step_values(rows: rollup_blocks.Rows, fn: str, step_ms: int, whole: bool) -> tuple[np.ndarray, np.ndarray]:
    """One series' step points ``(stamps, values)`` from its 1m rows, as :func:`_rows_sql`
    computes them in SQL: bucket average ``SUM(sum) / SUM(count)``, ``MIN(min)``,
    ``MAX(max)`` or ``SUM(increase)`` (``* 1000 / step`` for rate) stamped at the bucket's
    end; rows with a NULL in the column read are left out, as SQL's aggregates do."""
    column = _column_of(fn)
    ok = getattr(rows, f"{column}_ok")
    if ok is not None:
        rows = rows.take(ok)
    if not len(rows):
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if whole:
        stamps = rows.ts
        values = rows.sum / rows.count if column == "sum" else getattr(rows, column)
    else:
        buckets = rows.ts // step_ms * step_ms
        starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        stamps = buckets[starts]
        if column == "sum":
            values = np.add.reduceat(rows.sum, starts) / np.add.reduceat(rows.count, starts)
        else:
            ufunc = {"min": np.minimum, "max": np.maximum}.get(column, np.add)
            values = ufunc.reduceat(getattr(rows, column), starts)
    if column == "increase":
        stamps = stamps + step_ms
        if fn == "rate":
            values = values * 1000 / step_ms
    return stamps, values


def _rollup_numpy(found: Iterable[tuple[int, rollup_blocks.Rows]], q: RangeQuery, selected: dict[int, _Series],
                  keys: list[tuple], step_ms: int, width: int, limit: int) -> dict[int, Points]:
    """:func:`_rows_sql`'s points computed from 1m rows read into memory (``found``:
    :func:`console.storage.rollup_blocks.load_each`, ids ascending): per series, or with ``group_by`` per group ``keys[i]`` the cross-series ``agg``
    over the series' values of each step bucket (the same values, summed in another order:
    within 1e-9 relative). Each series is reduced before the next is decoded, so a day of
    thousands of series is never in memory at once. Raises Unprocessable (422) beyond
    ``limit`` points."""
    whole = step_ms == width
    out: dict[int, Points] = {}
    if q.group_by is not None:
        across = _Across(q, selected, keys, step_ms)
        for sid, rows in found:
            across.add(sid, *_step_values(rows, q.fn, step_ms, whole))
        out = across.result()
        if sum(len(p) for p in out.values()) > limit:
            raise _too_many_points(limit)
        return out
    loaded = 0
    for sid, rows in found:
        stamps, values = _step_values(rows, q.fn, step_ms, whole)
        if len(stamps):
            out[sid] = Columns(stamps, values)
            loaded += len(stamps)
            if loaded > limit:
                raise _too_many_points(limit)
    return out


class _Across:
    """``q.agg`` of each step bucket over the step values of series added one at a time
    (:meth:`add`), per group ``keys[i]`` of their ``group_by`` labels: a running sum,
    minimum or maximum and a count per bucket, so a day of 8,000 series (11.5 M values) is
    never joined into one array. Values are added in the order the series come (ids
    ascending), as SQL's aggregate does in another order: within 1e-9 relative."""

    def __init__(self, q: RangeQuery, selected: dict[int, _Series], keys: list[tuple], step_ms: int) -> None:
        assert q.group_by is not None
        self._agg = q.agg
        self._labels = q.group_by
        self._selected = selected
        self._index = {key: i for i, key in enumerate(keys)}
        self._single = len(keys) == 1
        self._step = step_ms
        self._empty = {"min": np.inf, "max": -np.inf}.get(q.agg, 0.0)
        # group -> [stamp of bucket 0, value per bucket (sum, or running min or max), values per bucket]
        self._groups: dict[int, list] = {}

    def add(self, sid: int, stamps: np.ndarray, values: np.ndarray) -> None:
        """Add one series' step values (``stamps`` ascending, distinct, multiples of the step)."""
        n = len(stamps)
        if not n:
            return
        labels = self._selected[sid].labels
        group = 0 if self._single else self._index[tuple(labels.get(k, "") for k in self._labels)]
        first, last = int(stamps[0]), int(stamps[-1])
        start, acc, counts = self._reserve(group, first, last)
        a, b = (first - start) // self._step, (last - start) // self._step + 1
        if b - a == n:  # a bucket at every step from the first to the last: slices, no scatter
            counts[a:b] += 1
            if self._agg in ("sum", "avg"):
                acc[a:b] += values
            else:
                (np.minimum if self._agg == "min" else np.maximum)(acc[a:b], values, out=acc[a:b])
            return
        slot = (stamps - start) // self._step
        np.add.at(counts, slot, 1)
        {"min": np.minimum, "max": np.maximum}.get(self._agg, np.add).at(acc, slot, values)

    def _reserve(self, group: int, first: int, last: int) -> list:
        """The group's buckets, grown to hold the stamps ``first``..``last``."""
        entry = self._groups.get(group)
        if entry is None:
            size = (last - first) // self._step + 1
            entry = self._groups[group] = [first, np.full(size, self._empty), np.zeros(size, np.int64)]
            return entry
        start, acc, counts = entry
        before = max(0, (start - first) // self._step)
        after = max(0, (last - start) // self._step + 1 - len(acc))
        if before or after:
            entry[:] = [start - before * self._step,
                        np.concatenate([np.full(before, self._empty), acc, np.full(after, self._empty)]),
                        np.concatenate([np.zeros(before, np.int64), counts, np.zeros(after, np.int64)])]
        return entry

    def result(self) -> dict[int, Points]:
        """``{i: Columns}`` per group with values; a bucket without a value is left out."""
        out: dict[int, Points] = {}
        for group, (start, acc, counts) in sorted(self._groups.items()):
            held = np.flatnonzero(counts)
            if len(held):
                out[group] = Columns(held * self._step + start,
                                     acc[held] / counts[held] if self._agg == "avg" else acc[held])
        return out


def _rows_sql(session: Session, table: str, q: RangeQuery, selected: dict[int, _Series], ids: list[int],
              keys: list[tuple], lo: int, hi: int, step_ms: int, width: int, limit: int) -> dict[int, Points]:
    """Points of the step buckets in ``[lo, hi)`` computed in SQL from rollup rows.

    Without ``group_by``: ``{series_id: Columns}``. With it: ``{i: points}``
    for the group ``keys[i]``, the cross-series ``agg`` done in SQL over the per-series
    values (a VALUES list maps each series to its group). Values per series as in
    Python: bucket average ``SUM(sum)/SUM(count)``, ``MIN(min)``, ``MAX(max)``, or the
    sum of bucket increases (per second of the step for rate) stamped at the bucket's
    end. Raises Unprocessable (422) beyond ``limit`` points."""
    if hi <= lo or not ids:
        return {}
    whole = step_ms == width  # rollup rows are the step buckets: no per-series GROUP BY
    fn = q.fn
    if fn in ("raw", "avg"):
        value = "sum / count" if whole else "SUM(sum) / SUM(count)"
    elif fn in ("min", "max"):
        value = fn if whole else f"{fn.upper()}({fn})"
    else:
        value = "increase" if whole else "SUM(increase)"
        if fn == "rate":
            value = f"{value} * 1000 / {step_ms}"
    counting = fn in ("rate", "increase")
    # Rollup rows start on multiples of the tier's width: with a step of that width, ts is the bucket.
    b = ("ts" if whole else f"(ts / {step_ms}) * {step_ms}") + (f" + {step_ms}" if counting else "")
    where = f"ts >= {int(lo)} AND ts < {int(hi)}"
    if q.group_by is None:
        nulls = " AND increase IS NOT NULL" if counting and whole else ""
        having = "HAVING SUM(increase) IS NOT NULL" if counting else ""
        out, loaded = _series_columns(session, ids, b, value, table, int(lo), int(hi), nulls, limit, not whole, having)
        if loaded > limit:
            raise _too_many_points(limit)
        return out
    agg = {"sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX"}[q.agg]
    index = {key: i for i, key in enumerate(keys)}
    labels = q.group_by

    def statement(part: Sequence[int], aggregate: str) -> str:
        """The statement over the series ``part``; ``aggregate`` is the select list of the
        cross-series aggregate of a bucket, over the expression ``{v}``."""
        if len(keys) == 1:  # one group: no series -> group map, and one sort key fewer
            with_, source = "", f"{table} WHERE series_id IN ({_ints(part)}) AND "
            grp, grp_key, series = "0", "", "series_id"
        else:
            pairs = ",".join(f"({sid},{index[tuple(selected[sid].labels.get(k, '') for k in labels)]})"
                             for sid in part)
            with_ = f"WITH g(sid, grp) AS (VALUES {pairs}) "
            source = f"g JOIN {table} r ON r.series_id = g.sid WHERE "
            grp, grp_key, series = "g.grp", "g.grp, ", "r.series_id"
        if whole:  # one flat GROUP BY: a nested one costs SQLite twice the time
            return (f"{with_}SELECT {grp} AS grp, {b} AS b, {aggregate.format(v=value)} FROM {source}{where} "
                    + (f"AND {value} IS NOT NULL " if counting else "") + f"GROUP BY {grp_key}{b} ORDER BY {grp_key}b")
        return (f"{with_}SELECT grp, b, {aggregate.format(v='v')} FROM (SELECT {grp} AS grp, {b} AS b, {value} AS v "
                f"FROM {source}{where} GROUP BY {grp_key}{series}, {b}) x WHERE v IS NOT NULL "
                "GROUP BY grp, b ORDER BY grp, b")

    if session.get_bind().dialect.name == "sqlite" and len(ids) > _SQLITE_GROUP_SERIES:
        # SQLite has no hash aggregation: its GROUP BY sorts every row read (1-1.4 M at
        # 8,000 series). Series by series a few hundred at a time, each part's sort is of
        # a bounded size (work in proportion to the series); each part gives a bucket's
        # partial aggregate, which numpy combines.
        partial = ("MIN({v})" if q.agg == "min" else "MAX({v})" if q.agg == "max" else "SUM({v})") + ", COUNT({v})"
        found = [row for i in range(0, len(ids), _SQLITE_GROUP_SERIES)
                 for row in _fetch(session, statement(ids[i:i + _SQLITE_GROUP_SERIES], partial))]
        out = _combine(found, q.agg, step_ms)
    else:
        rows = _fetch(session, statement(ids, agg + "({v})") + f" LIMIT {limit + 1}")
        out = {grp: Columns.of([(ts, v) for _, ts, v in group]) for grp, group in itertools.groupby(rows, _FIRST)}
    if sum(len(p) for p in out.values()) > limit:
        raise _too_many_points(limit)
    return out


_SQLITE_GROUP_SERIES = 256  # series per statement of a cross-series aggregate on SQLite


def _combine(rows: list[tuple], agg: str, step_ms: int) -> dict[int, Points]:
    """``{group: Columns}`` from the partial aggregates ``(group, bucket, value, values)`` of
    parts of a group's series, one row per part with rows in the bucket (``value``: the
    SUM, MIN or MAX of the part's ``values`` non-NULL values there): ``agg`` over the parts, as SQL
    gives it over all the rows at once (NULL, here NaN, where a bucket's rows have no
    value; sums added part by part: within 1e-9 relative)."""
    out: dict[int, Points] = {}
    if not rows:
        return out
    group = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    stamps = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    values = np.array([r[2] for r in rows], np.float64)  # None (no value in the part) as NaN
    counts = np.fromiter((r[3] for r in rows), np.int64, len(rows))
    for g in np.unique(group).tolist():
        mine = group == g
        first = int(stamps[mine].min())
        slot = (stamps[mine] - first) // step_ms
        n = np.bincount(slot, weights=counts[mine])
        held = np.flatnonzero(np.bincount(slot))  # buckets with rows (a part's row is one)
        some = counts[mine] > 0
        if agg in ("sum", "avg"):
            total = np.bincount(slot[some], weights=values[mine][some], minlength=len(n))
            with np.errstate(invalid="ignore", divide="ignore"):
                reduced = total / n if agg == "avg" else total
        else:
            reduced = np.full(len(n), np.inf if agg == "min" else -np.inf)
            (np.minimum if agg == "min" else np.maximum).at(reduced, slot[some], values[mine][some])
        reduced = np.where(n > 0, reduced, np.nan)
        out[g] = Columns(held * step_ms + first, reduced[held])
    return out


def _closed_sql(session: Session, host_rows: bool, table: str, q: RangeQuery, selected: dict[int, _Series],
                ids: list[int], keys: list[tuple], lo: int, hi: int, step_ms: int, width: int,
                limit: int, beside: Beside | None = None) -> dict[int, Points]:
    """Points of the closed step buckets ``[lo, hi)`` as :func:`_rollup_sql` gives them; the
    buckets the cross-series rollups cover (``group_by=`` or ``group_by=host`` without label
    matchers, at a step of the 1m tier's width, from the ``1m_host`` watermark on, with
    ``host_rows``: the ``rollup_1m_host`` setting) are read from ``rollup_1m_host``: one
    row per host and minute instead of one per series."""
    if hi <= lo or not ids:
        return {}
    start = hi
    if host_rows and table == "rollup_1m" and step_ms == width and q.group_by in ((), ("host",)) and not q.matchers:
        mark = session.get(RollupWatermark, "1m_host")
        if mark is not None:
            start = min(max(lo, mark.done_until), hi)
    older = _rollup_sql(session, table, q, selected, ids, keys, lo, start, step_ms, width, limit, beside)
    if start >= hi:
        return older
    newer = _host_sql(session, q, keys, start, hi, step_ms, limit)
    return {k: concat(older.get(k, []), newer.get(k, [])) for k in older.keys() | newer.keys()}


def _host_sql(session: Session, q: RangeQuery, keys: list[tuple], lo: int, hi: int, step_ms: int,
              limit: int) -> dict[int, Points]:
    """``{i: points}`` for the group ``keys[i]`` (``group_by`` ``()`` or ``("host",)``) from
    ``rollup_1m_host`` over ``[lo, hi)``: each column pair holds, per host and minute, the
    sum, least and greatest of the series' values that :func:`_rollup_sql` would compute
    (``sum / count``, ``min``, ``max``, ``increase``), so ``agg`` over a group is their
    sum, the sum over the number of series, the least or the greatest (the same values,
    added in another order: within 1e-9 relative). Raises Unprocessable beyond ``limit``."""
    family = {"raw": "avg", "avg": "avg", "min": "min", "max": "max"}.get(q.fn, "inc")
    count = "counters" if family == "inc" else "series"
    value = {"sum": f"SUM(x.{family}_sum)", "avg": f"SUM(x.{family}_sum) / SUM(x.{count})",
             "min": f"MIN(x.{family}_min)", "max": f"MAX(x.{family}_max)"}[q.agg]
    if q.fn == "rate":
        value = f"{value} * 1000 / :step"
    stamp = "x.ts + :step" if family == "inc" else "x.ts"
    by_host = q.group_by == ("host",)
    group = "h.name" if by_host else "''"
    sql = (f"SELECT {group} AS g, {stamp} AS b, {value} FROM rollup_1m_host x JOIN hosts h ON h.id = x.host_id "
           "WHERE x.name = :metric AND x.ts >= :lo AND x.ts < :hi AND x." + count + " > 0"
           + (" AND h.name = :host" if q.host else "")
           + (" GROUP BY h.name, x.ts ORDER BY h.name, x.ts" if by_host else " GROUP BY x.ts ORDER BY x.ts")
           + " LIMIT :limit")
    params = {"metric": q.metric, "lo": int(lo), "hi": int(hi), "limit": limit + 1, "step": int(step_ms)}
    if q.host:
        params["host"] = q.host
    rows = session.execute(text(sql), params).all()
    if len(rows) > limit:
        raise _too_many_points(limit)
    index = {key: i for i, key in enumerate(keys)}
    out: dict[int, Points] = {}
    for g, part in itertools.groupby(rows, _FIRST):
        i = index.get((g,) if by_host else ())
        if i is not None:
            out[i] = Columns.of([(b, v) for _, b, v in part])
    return out


def _merge_rows(rows: list[tuple]) -> list[tuple]:
    """Join rows of one step bucket that came partly from a rollup and partly from raw."""
    merged: dict[int, list] = {}
    for b, mn, mx, sm, n, inc in rows:
        row = merged.get(b)
        if row is None:
            merged[b] = [b, mn, mx, sm, n, inc]
        else:
            row[1], row[2], row[3], row[4] = min(row[1], mn), max(row[2], mx), row[3] + sm, row[4] + n
            row[5] = None if row[5] is None or inc is None else row[5] + inc
    return [tuple(merged[b]) for b in sorted(merged)]


def auto_step(start: float, end: float) -> float:
    """A step giving about 300 points over the range, at least 10 s, in whole seconds."""
    return float(max(10, round((end - start) / 300)))
