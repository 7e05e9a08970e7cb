"""Pure functions over sample lists: step alignment, counter rates, cross-series aggregation.

A point list is ``[(ts_ms, value), ...]`` sorted by time. Rates are per second.
Counter resets follow Prometheus: a value lower than its predecessor means the counter
restarted from zero, so the increase over that gap is the new value itself.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Callable, Iterable

Points = list[tuple[int, float]]

AGGREGATORS: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "avg": statistics.fmean,
    "min": min,
    "max": max,
}


def align_last(points: Points, step_ms: int) -> Points:
    """The last sample of each step bucket, keeping that sample's own timestamp.
    Buckets are ``[k*step, (k+1)*step)``; ``step_ms`` > 0."""
    out: Points = []
    last_bucket = None
    for ts, value in points:
        bucket = ts // step_ms
        if bucket == last_bucket:
            out[-1] = (ts, value)
        else:
            out.append((ts, value))
            last_bucket = bucket
    return out


def bucket_start(points: Points, step_ms: int) -> Points:
    """Re-stamp each point at the start of its step bucket."""
    return [(ts // step_ms * step_ms, value) for ts, value in points]


def rate(points: Points) -> Points:
    """Per-second rate between consecutive samples, stamped at the later sample.
    Handles counter resets; samples with equal timestamps are skipped."""
    out: Points = []
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if t1 <= t0:
            continue
        increase = v1 - v0 if v1 >= v0 else v1
        out.append((t1, increase * 1000.0 / (t1 - t0)))
    return out


def aggregate(groups: Iterable[tuple[tuple, Points]], agg: str) -> dict[tuple, Points]:
    """Aggregate point lists that share a group key, point-wise on equal timestamps.
    ``groups`` yields ``(key, points)``; returns ``{key: points}`` sorted by time.
    Raises KeyError for an unknown ``agg``."""
    fn = AGGREGATORS[agg]
    by_key: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for key, points in groups:
        slots = by_key[key]
        for ts, value in points:
            slots[ts].append(value)
    return {key: [(ts, fn(values)) for ts, values in sorted(slots.items())]
            for key, slots in by_key.items()}
