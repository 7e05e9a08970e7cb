"""Query service: hosts and their summary, metric names, and range queries.

Methods take a SQLAlchemy session and run on a database reader thread.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson
from sqlalchemy import desc, select
from sqlalchemy.orm import Session

from console.config import ConsoleConfig
from console.errors import ApiError
from console.query import series_math
from console.query.agent_health import agent_health
from console.storage.models import Host, Sample, Series

FUNCTIONS = ("raw", "rate")
MAX_STEPS = 11_000  # like Prometheus: a query may not ask for more points per series
SUMMARY_METRICS = ("node_cpu_seconds_total", "node_memory_MemTotal_bytes",
                   "node_memory_MemAvailable_bytes", "node_filesystem_size_bytes",
                   "node_filesystem_avail_bytes", "node_load1")


@dataclass(frozen=True)
class Matcher:
    """A label matcher: ``op`` is ``=``, ``!=``, ``=~`` or ``!~`` (regex fully anchored)."""

    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
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


@dataclass
class _Series:
    labels: dict[str, str]
    points: list = field(default_factory=list)


class QueryService:
    def __init__(self, config: ConsoleConfig, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock

    # -- hosts -------------------------------------------------------------------------
    def hosts(self, session: Session) -> list[dict]:
        """Every known host: ``{"host", "up", "last_seen" (Unix s), "agent_version",
        "interval" (s), "labels", "summary": {"cpu_ratio", "memory_ratio",
        "disk_max_ratio", "load1"}, "agent_health": {...}}``, ratios in 0..1 or None when not
        reported; ``agent_health`` as in :func:`console.query.agent_health.agent_health`."""
        now = self._clock()
        out = []
        for host in session.execute(select(Host).order_by(Host.name)).scalars():
            interval = host.interval_s or self._config.default_interval
            up = host.last_seen is not None and now - host.last_seen <= interval * self._config.down_after_intervals
            out.append({"host": host.name, "up": up, "last_seen": host.last_seen,
                        "agent_version": host.agent_version, "interval": interval,
                        "labels": orjson.loads(host.labels or "{}"),
                        "summary": self._summary(session, host.id),
                        "agent_health": agent_health(session, host.id)})
        return out

    def _summary(self, session: Session, host_id: int) -> dict:
        rows = session.execute(select(Series.id, Series.name, Series.labels).where(
            Series.host_id == host_id, Series.name.in_(SUMMARY_METRICS))).all()
        latest: dict[str, list[tuple[dict, list]]] = {}
        for sid, name, labels_json in rows:
            labels = orjson.loads(labels_json)
            if name == "node_cpu_seconds_total" and labels.get("mode") != "idle":
                continue
            points = session.execute(select(Sample.ts, Sample.value).where(Sample.series_id == sid)
                                     .order_by(desc(Sample.ts)).limit(2)).all()
            if points:
                latest.setdefault(name, []).append((labels, list(reversed(points))))

        def last(name: str) -> float | None:
            values = latest.get(name)
            return values[0][1][-1][1] if values else None

        idle_rates = [series_math.rate(points)[-1][1] for _, points in latest.get("node_cpu_seconds_total", [])
                      if len(points) == 2 and series_math.rate(points)]
        cpu = min(1.0, max(0.0, 1.0 - sum(idle_rates) / len(idle_rates))) if idle_rates else None
        total, available = last("node_memory_MemTotal_bytes"), last("node_memory_MemAvailable_bytes")
        memory = 1.0 - available / total if total and available is not None else None
        sizes = {labels.get("mountpoint"): points[-1][1] for labels, points in latest.get("node_filesystem_size_bytes", [])}
        disk = [1.0 - points[-1][1] / sizes[labels.get("mountpoint")]
                for labels, points in latest.get("node_filesystem_avail_bytes", [])
                if sizes.get(labels.get("mountpoint"))]
        return {"cpu_ratio": cpu, "memory_ratio": memory,
                "disk_max_ratio": max(disk) if disk else None, "load1": last("node_load1")}

    # -- metrics -----------------------------------------------------------------------
    def metric_names(self, session: Session, host: str | None) -> list[str]:
        stmt = select(Series.name).distinct().order_by(Series.name)
        if host:
            stmt = stmt.join(Host, Host.id == Series.host_id).where(Host.name == host)
        return list(session.execute(stmt).scalars())

    def range(self, session: Session, q: RangeQuery) -> dict:
        """Run a range query -> ``{"metric", "step", "resolution", "series": [{"labels",
        "points": [[ts_ms, value], ...]}]}``. Raises ApiError 422 when the query would
        exceed the configured series or point limits."""
        step = q.step
        if step is None and q.group_by is not None:
            step = auto_step(q.start, q.end)
        if step is not None and (q.end - q.start) / step > MAX_STEPS:
            raise ApiError(422, "too_many_steps",
                           f"range/step asks for more than {MAX_STEPS} points per series; raise step",
                           {"limit": MAX_STEPS})
        selected = self._select_series(session, q)
        step_ms = int(step * 1000) if step else None
        start_ms, end_ms = int(q.start * 1000), int(q.end * 1000)
        # A rate needs the sample before the window; look back one step (or 5 minutes raw).
        lookback = (step_ms or 0) + 300_000 if q.fn == "rate" else 0
        self._load_points(session, selected, start_ms - lookback, end_ms)
        results = []
        for series in selected.values():
            points = series.points
            if step_ms:
                points = series_math.align_last(points, step_ms)
            if q.fn == "rate":
                points = series_math.rate(points)
            points = [(ts, v) for ts, v in points if ts >= start_ms]
            if step_ms:
                points = series_math.bucket_start(points, step_ms)
            results.append((series.labels, points))
        if q.group_by is not None:
            grouped = series_math.aggregate(
                ((tuple(labels.get(k, "") for k in q.group_by), points) for labels, points in results), q.agg)
            results = [(dict(zip(q.group_by, key)), points) for key, points in sorted(grouped.items())]
        return {"metric": q.metric, "step": step, "fn": q.fn, "resolution": "raw",
                "series": [{"labels": labels, "points": [[ts, v] for ts, v in points]}
                           for labels, points in results]}

    def _select_series(self, session: Session, q: RangeQuery) -> dict[int, _Series]:
        stmt = (select(Series.id, Series.labels, Host.name).join(Host, Host.id == Series.host_id)
                .where(Series.name == q.metric))
        if q.host:
            stmt = stmt.where(Host.name == q.host)
        selected: dict[int, _Series] = {}
        for sid, labels_json, host_name in session.execute(stmt):
            labels = orjson.loads(labels_json)
            labels["host"] = host_name
            if all(m.matches(labels) for m in q.matchers):
                selected[sid] = _Series(labels)
        limit = self._config.max_series_per_query
        if len(selected) > limit:
            raise ApiError(422, "too_many_series",
                           f"query matches {len(selected)} series, more than the limit of {limit}; "
                           "narrow it with host= or label matchers", {"limit": limit})
        return selected

    def _load_points(self, session: Session, selected: dict[int, _Series], start_ms: int, end_ms: int) -> None:
        limit = self._config.max_points_per_query
        ids = sorted(selected)
        loaded = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = session.execute(
                select(Sample.series_id, Sample.ts, Sample.value)
                .where(Sample.series_id.in_(chunk), Sample.ts >= start_ms, Sample.ts <= end_ms)
                .order_by(Sample.series_id, Sample.ts).limit(limit - loaded + 1))
            for sid, ts, value in rows:
                loaded += 1
                if loaded > limit:
                    raise ApiError(422, "too_many_points",
                                   f"query reads more than {limit} samples; shorten the range or "
                                   "narrow the series", {"limit": limit})
                selected[sid].points.append((ts, value))


def auto_step(start: float, end: float) -> float:
    """A step giving about 300 points over the range, at least 10 s, in whole seconds."""
    return float(max(10, round((end - start) / 300)))
