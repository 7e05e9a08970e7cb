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


def increases(points: Points) -> Points:
    """Increase between consecutive samples, stamped at the later one (resets as in ``rate``)."""
    return [(t1, v1 - v0 if v1 >= v0 else v1) for (t0, v0), (t1, v1) in zip(points, points[1:]) if t1 > t0]


def extrapolated(points: Points, range_start: int, range_end: int, is_rate: bool) -> float | None:
    """Prometheus' ``increase``/``rate`` of one window (promql/functions.go
    ``extrapolatedRate``, v2.42): ``points`` are the samples in ``[range_start, range_end]``
    (Unix ms, inclusive as in 2.x). The raw increase (resets corrected) is extrapolated to
    the window edges when the first/last sample is within 1.1 average intervals of them,
    else by half an interval, and never below the counter's zero point. None for fewer than
    two samples. A rate is per second of the window."""
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    prev = first_v
    for _, v in points[1:]:
        if v < prev:
            result += prev
        prev = v
    duration_to_start = (first_t - range_start) / 1000.0
    duration_to_end = (range_end - last_t) / 1000.0
    sampled = (last_t - first_t) / 1000.0
    if sampled <= 0:
        return None
    average = sampled / (len(points) - 1)
    if result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    threshold = average * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    result *= interval / sampled
    if is_rate:
        result /= (range_end - range_start) / 1000.0
    return result


def step_windows(points: Points, start_ms: int, end_ms: int, step_ms: int, is_rate: bool,
                 window_ms: int | None = None) -> Points:
    """``rate``/``increase`` at every multiple ``t`` of ``step_ms`` in ``[start_ms, end_ms]``
    over the window ``[t - window_ms, t]`` (default: one step), like Prometheus'
    ``rate(x[window])`` in a range query with that step. ``points`` sorted by time."""
    window_ms = window_ms or step_ms
    import bisect

    out: Points = []
    stamps = [ts for ts, _ in points]
    t = -(-start_ms // step_ms) * step_ms
    while t <= end_ms:
        lo = bisect.bisect_left(stamps, t - window_ms)
        hi = bisect.bisect_right(stamps, t)
        value = extrapolated(points[lo:hi], t - window_ms, t, is_rate)
        if value is not None:
            out.append((t, value))
        t += step_ms
    return out


def bucket_stats(points: Points, width_ms: int, prev: float | None = None) -> list[tuple]:
    """Rollup rows computed in memory, as the rollup job would: ``[(bucket_start, min, max,
    sum, count, increase)]``; ``prev`` is the sample before the first point, if known."""
    out: list[list] = []
    for ts, value in points:
        b = ts // width_ms * width_ms
        inc = 0.0 if prev is None else (value - prev if value >= prev else value)
        prev = value
        if out and out[-1][0] == b:
            row = out[-1]
            row[1] = min(row[1], value)
            row[2] = max(row[2], value)
            row[3] += value
            row[4] += 1
            row[5] += inc
        else:
            out.append([b, value, value, value, 1, inc])
    return [tuple(r) for r in out]
