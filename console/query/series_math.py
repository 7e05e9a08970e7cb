"""Pure functions over sample lists: step alignment, counter rates, cross-series aggregation.

A point list is ``[(ts_ms, value), ...]`` sorted by time. Rates are per second.
Counter resets follow Prometheus: a value lower than its predecessor means the counter
restarted from zero, so the increase over that gap is the new value itself.
"""
from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Callable, Iterable, Literal

Points = list[tuple[int, float]]

Aggregator = Literal["sum", "avg", "min", "max"]  # the keys of AGGREGATORS
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


def extrapolated_rate(ts: list, vs: list, lo: int, hi: int, range_start: int, range_end: int, is_counter: bool,
                      is_rate: bool, range_ms: int, resets: list[int] | None = None) -> float | None:
    """``rate``/``increase``/``delta`` of the samples ``lo:hi`` of ``(ts, vs)`` in a window:
    the difference (counter resets added back: ``resets`` lists the indices where a value
    drops, or None to scan), extrapolated to the window's edges where the samples stop
    short of them by less than 1.1 average intervals (else by half an interval), and not
    below zero for a counter (Prometheus 2.42's ``extrapolatedRate``, promql/functions.go).
    Times are Unix ms; a rate is per second of ``range_ms``."""
    n = hi - lo
    if n < 2:
        return None
    first, last = vs[lo], vs[hi - 1]
    result = last - first
    if is_counter:
        if resets is None:
            prev = 0.0
            for k in range(lo, hi):
                v = vs[k]
                if v < prev:
                    result += prev
                prev = v
        elif resets:
            for j in resets[bisect_right(resets, lo):bisect_left(resets, hi)]:
                result += vs[j - 1]
    t_first, t_last = ts[lo], ts[hi - 1]
    to_start = (t_first - range_start) / 1000
    to_end = (range_end - t_last) / 1000
    sampled = (t_last - t_first) / 1000
    if sampled <= 0:
        return None
    average = sampled / (n - 1)
    if is_counter and result > 0 and first >= 0:
        to_zero = sampled * (first / result)
        if to_zero < to_start:
            to_start = to_zero
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result = result * (interval / sampled)
    if is_rate:
        result = result / (range_ms / 1000)
    return result


def extrapolated(points: Points, range_start: int, range_end: int, is_rate: bool) -> float | None:
    """:func:`extrapolated_rate` of a counter's ``points`` in ``[range_start, range_end]``
    (Unix ms, inclusive as in Prometheus 2.x); a rate is per second of the window."""
    return extrapolated_rate([t for t, _ in points], [v for _, v in points], 0, len(points), range_start,
                             range_end, True, is_rate, range_end - range_start)


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
