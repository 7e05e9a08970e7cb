"""Range queries of counter rates answered from the rollup tiers instead of raw samples.

A rollup bucket (docs/metrics.md, "Rollups") holds a counter's ``increase`` over the
bucket: the growth from the sample before the bucket's first sample to its last sample,
resets handled. The buckets of a window therefore add up to the counter's exact growth
between the last sample before the window and the last sample inside it, and

    rate(x[r])      at t  =  sum of x's bucket increases in [t - r, t) / r (seconds)
    increase(x[r])  at t  =  sum of x's bucket increases in [t - r, t)

for every bucket-aligned window. Prometheus instead takes the samples inside
``[t - r, t]`` and extrapolates their growth to the window's edges; both estimate the same
growth, and they differ by how the rate varies between the window's edges and the
samples nearest them (docs/promql.md, "Deviations from Prometheus", gives the measured
size). ``sum``/``sum by``/``sum without`` of such a rate is added up per group and bucket
in SQL, so one row per group and bucket leaves the database.

The tier is used (:func:`plan`) only where it answers the same question as the raw
samples would, within that tolerance:

* the expression is ``rate`` or ``increase`` of a range selector (no ``@``), alone or
  under ``sum`` (``by``/``without`` or neither);
* the query covers at least :data:`MIN_RANGE_MS` (shorter ranges are cheap on raw
  samples and keep Prometheus' exact extrapolation), and its start, step, the selector's
  range and offset are whole multiples of the tier's bucket width (the coarsest that
  fits: 1h, else 1m);
* every selected series is a stored counter (gauges keep no increase, computed series
  have no rollups).

Steps whose window reaches past the tier's watermark (the newest minutes, not rolled up
yet) are evaluated on raw samples as usual and joined to the tier's steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from console.promql.ast import Aggregate, Call, Node, Selector
from console.promql.storage import Storage, StoredSeries
from console.promql.values import NAME, Labels, SeriesPoints, drop_name

MIN_RANGE_MS = 3 * 3_600_000  # query ranges from 3 h up read the rollup tiers
TIERS = (("1h", 3_600_000), ("1m", 60_000))  # (tier, bucket width in ms), coarsest first
FUNCTIONS = ("rate", "increase")


@dataclass(frozen=True)
class Plan:
    """How a range query reads a rollup tier: ``function`` (rate | increase) of
    ``selector``; ``grouping``/``without`` of the enclosing ``sum`` (``aggregate`` False:
    one output series per selected series); ``tier`` and its bucket ``width`` (ms)."""

    function: str
    selector: Selector
    aggregate: bool
    grouping: tuple[str, ...]
    without: bool
    tier: str
    width: int


def plan(root: Node, start: int, end: int, step: int) -> Plan | None:
    """The rollup plan of a range query of ``root`` over ``[start, end]`` every ``step``
    (Unix ms), or None when it must read raw samples (the rules in the module docstring
    that do not depend on the stored series)."""
    node, aggregate, without = root, False, False
    grouping: tuple[str, ...] = ()
    if isinstance(root, Aggregate):
        if root.op != "sum" or root.param is not None:
            return None
        node, aggregate, grouping, without = root.expr, True, root.grouping, root.without
    if not (isinstance(node, Call) and node.name in FUNCTIONS and len(node.args) == 1):
        return None
    selector = node.args[0]
    if not isinstance(selector, Selector) or selector.range_ms is None or selector.at is not None:
        return None
    if end - start < MIN_RANGE_MS:
        return None
    for tier, width in TIERS:
        if all(v % width == 0 for v in (start, step, selector.range_ms, selector.offset_ms)):
            return Plan(node.name, selector, aggregate, grouping, without, tier, width)
    return None


def _group_labels(p: Plan, labels: Labels) -> Labels:
    """The output label set a selected series adds to (rate drops the metric name)."""
    if not p.aggregate:
        return drop_name(labels)
    if p.without:
        drop = set(p.grouping) | {NAME}
        return tuple(kv for kv in labels if kv[0] not in drop)
    keep = set(p.grouping)
    return tuple(kv for kv in labels if kv[0] in keep)


def evaluate(storage: Storage, p: Plan, start: int, end: int, step: int,
             check: Callable[[], None]) -> tuple[dict, int] | None:
    """The steps of ``[start, end]`` the tier answers: ``(series, next_step)`` where
    ``series`` maps each output label set to its SeriesPoints and ``next_step`` is the
    first step left to the raw samples (> ``end`` when none); None when the stored series
    rule the tier out (a gauge or computed series selected, two series that would give the
    same output labels, no watermark yet). ``check`` is called between database reads (it
    raises past the query's deadline)."""
    sel = p.selector
    assert sel.range_ms is not None  # plan() takes range selectors only
    matched: list[StoredSeries] = storage.match(sel.matchers, start - sel.offset_ms - sel.range_ms,
                                                end - sel.offset_ms)
    if any(s.id < 0 for s in matched):
        return None
    done_until = storage.rollup_done_until(p.tier)
    if done_until is None:
        return None
    # The last step whose window [ref - range, ref) lies wholly below the watermark.
    last = min(end, start + (done_until + sel.offset_ms - start) // step * step)
    if last < start or not matched:
        return {}, start if last < start else end + 1
    groups: dict[Labels, list[int]] = {}
    for s in matched:
        groups.setdefault(_group_labels(p, s.labels), []).append(s.id)
    if not p.aggregate and len(groups) != len(matched):
        return None  # the raw path refuses duplicate label sets as Prometheus does
    if not storage.all_counters([s.id for s in matched]):
        return None
    lo = start - sel.offset_ms - sel.range_ms  # the first bucket any window holds
    hi = last - sel.offset_ms  # buckets start before this
    nb = (hi - lo) // p.width
    k = sel.range_ms // p.width  # buckets per window
    stride = step // p.width
    steps = np.arange(start, last + 1, step, dtype=np.int64)
    ends = np.arange(len(steps), dtype=np.int64) * stride + k  # window of step i: buckets [ends - k, ends)
    scale = sel.range_ms / 1000 if p.function == "rate" else 1.0
    out: dict[Labels, SeriesPoints] = {}
    sums = storage.rollup_increases(p.tier, list(groups.values()), lo, hi, check)
    for labels, rows in zip(groups, sums):
        if not rows:
            continue
        table = np.array(rows, dtype=np.float64)  # bucket starts (ms) stay exact below 2**53
        at = (table[:, 0].astype(np.int64) - lo) // p.width + 1  # one row per bucket (GROUP BY ts)
        increase, samples = np.zeros(nb + 1), np.zeros(nb + 1)
        increase[at], samples[at] = table[:, 1], table[:, 2]
        increase, samples = np.cumsum(increase), np.cumsum(samples)
        window = increase[ends] - increase[ends - k]
        present = (samples[ends] - samples[ends - k]) >= 2  # as Prometheus: a rate needs two samples
        if present.any():
            out[labels] = SeriesPoints(labels, steps[present].tolist(), (window[present] / scale).tolist())
    return out, last + step
