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

Where the rollup job keeps cross-series rows (setting ``rollup_1m_host``: per metric, host
and minute, the increases and samples of the host's series added up), a ``sum`` on the 1m
tier whose groups each take whole hosts reads those instead, less the rows of the series
the selector leaves out (:func:`_host_sums`): the same additions, over fewer rows.

Steps whose window reaches past the tier's watermark (the newest minutes, not rolled up
yet) are evaluated on raw samples as usual and joined to the tier's steps.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from console.promql.ast import Aggregate, Call, Node, Selector
from console.promql.storage import Storage, StoredSeries
from console.promql.values import NAME, Labels, SeriesPoints, drop_name
from console.query.closed import ClosedCache

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


@dataclass
class _Closed:
    """The sums of the closed buckets ``[lo, hi)`` (Unix ms) of one query shape, read
    under the tier's watermark ``generation`` when it stood at ``done_until``: ``sums`` is
    [increases, samples] per output group and bucket, shape (2, groups, buckets); ``size``
    the group-buckets held."""

    generation: int
    done_until: int
    lo: int
    hi: int
    sums: np.ndarray
    size: int


class ClosedSumsCache(ClosedCache[_Closed]):
    """The bucket sums a range query read from a rollup tier (:func:`evaluate`), per
    query shape (the tier, the output groups and their series), so the same query again,
    or its window moved forward as a dashboard refreshes, reads from the database only the
    buckets closed since. Bounded by ``max_size`` group-buckets held in all (16 bytes of
    memory each; least recently used first out; 0: off). When an entry serves:
    console/query/closed.py; a series appearing or going changes the shape, so the entry
    is not used."""

    def sums(self, key: tuple, mark: tuple[int, int], width: int, lo: int, hi: int,
             read: Callable[[int, int], np.ndarray]) -> np.ndarray:
        """The sums of buckets ``[lo, hi)`` of shape ``key`` under the tier's ``mark``
        (done_until, generation): from the entry where it holds them, with ``read(a, b)``
        (the database, buckets ``[a, b)``) for those it does not."""
        done_until, generation = mark
        entry = self.get(key, generation, done_until, lo)
        if entry is None:
            sums, start = read(lo, hi), lo
        else:
            sums, start = entry.sums, entry.lo
            if hi > entry.hi:
                sums = np.concatenate((sums, read(entry.hi, hi)), axis=2)
        out = sums[:, :, (lo - start) // width:(hi - start) // width]
        if entry is None or hi > entry.hi or (hi == entry.hi and lo > entry.lo):  # never lose newer buckets
            self.put(key, _Closed(generation, done_until, lo, hi, np.ascontiguousarray(out), out[0].size))
        return out


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
    mint, maxt = start - sel.offset_ms - sel.range_ms, end - sel.offset_ms
    matched: list[StoredSeries] = storage.match(sel.matchers, mint, maxt)
    if any(s.id < 0 for s in matched):
        return None
    mark = storage.rollup_mark(p.tier)
    if mark is None:
        return None
    done_until = mark[0]
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
    k = sel.range_ms // p.width  # buckets per window
    stride = step // p.width
    steps = np.arange(start, last + 1, step, dtype=np.int64)
    ends = np.arange(len(steps), dtype=np.int64) * stride + k  # window of step i: buckets [ends - k, ends)
    scale = sel.range_ms / 1000 if p.function == "rate" else 1.0
    out: dict[Labels, SeriesPoints] = {}

    def read(a: int, b: int) -> np.ndarray:
        """[increases, samples] per group and bucket of [a, b), from the database."""
        n = (b - a) // p.width
        sums = _host_sums(storage, p, groups, mint, maxt, a, b, n, check) if p.aggregate else None
        if sums is None:
            sums = storage.rollup_sums(p.tier, list(groups.values()), a, b, p.width, check)
        return sums

    cache = storage.closed_sums
    if cache is None or cache.max_size == 0:
        sums = read(lo, hi)
    else:
        key = (p.tier, tuple((labels, tuple(ids)) for labels, ids in groups.items()))
        sums = cache.sums(key, mark, p.width, lo, hi, read)
    zero = np.zeros((2, len(groups), 1))  # cumulative sums from before the first bucket
    for labels, increase, samples in zip(groups, *np.concatenate((zero, np.cumsum(sums, axis=2)), axis=2)):
        if not samples[-1]:
            continue  # no bucket of the group's series in the range
        window = increase[ends] - increase[ends - k]
        present = (samples[ends] - samples[ends - k]) >= 2  # as Prometheus: a rate needs two samples
        if present.any():
            out[labels] = SeriesPoints(labels, steps[present].tolist(), (window[present] / scale).tolist())
    return out, last + step


def _table(rows: list[tuple], width: int) -> np.ndarray:
    """Database rows of ``width`` numbers as a float64 array, shape (rows, width); bucket
    starts (ms) and ids stay exact below 2**53. (``np.fromiter`` over the flattened rows
    takes half the time of ``np.array`` on a list of tuples.)"""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64,
                       count=len(rows) * width).reshape(-1, width)


def _host_sums(storage: Storage, p: Plan, groups: dict[Labels, list[int]], mint: int, maxt: int, lo: int,
               hi: int, nb: int, check: Callable[[], None]) -> np.ndarray | None:
    """``[increases, samples]`` per group (``groups``' order) and 1m bucket of ``[lo, hi)``
    (``nb`` of them), read from the cross-series rows (``rollup_1m_host``: per metric, host and
    minute, the increases and samples of all the host's series of the metric added up),
    less the rows of the host's series the selector leaves out; the same sums as the
    per-series rows give, read from fewer rows: for ``{mode!="idle"}`` over hosts of 16
    CPU series, one host row and two idle series' rows per minute instead of 14 rows.

    None when those rows cannot answer, and the per-series rows are read instead: no
    cross-series rows kept (setting ``rollup_1m_host``) from ``lo`` on; a 1h plan; no
    ``__name__=`` matcher; one host's selected series in two output groups; a series of
    the metric on a selected host that is not a counter (its samples are in the host rows,
    its increase is not); or not fewer rows to read than per series."""
    name = next((m.value for m in p.selector.matchers if m.name == NAME and m.op == "="), None)
    if p.tier != "1m" or name is None or not storage.host_rollups:
        return None
    complete_from = storage.rollup_done_until("1m_host")
    if complete_from is None or lo < complete_from:
        return None
    host_of = {sid: (host, kind) for sid, host, kind in storage.series_hosts(name, mint, maxt)}
    group_of_host: dict[int, int] = {}
    for i, ids in enumerate(groups.values()):
        for sid in ids:
            if sid not in host_of or group_of_host.setdefault(host_of[sid][0], i) != i:
                return None
    selected = {sid for ids in groups.values() for sid in ids}
    excluded: dict[int, list[int]] = {}  # group -> the series of its hosts the selector leaves out
    for sid, (host, kind) in host_of.items():
        if host in group_of_host:
            if kind != "counter":
                return None
            if sid not in selected:
                excluded.setdefault(group_of_host[host], []).append(sid)
    if len(group_of_host) + sum(len(v) for v in excluded.values()) >= len(selected):
        return None
    sums = np.zeros((2, len(groups), nb))
    check()
    rows = storage.host_increases(name, sorted(group_of_host), lo, hi)
    if rows:
        table = _table(rows, 4)
        lookup = np.zeros(max(group_of_host) + 1, dtype=np.int64)
        lookup[list(group_of_host)] = list(group_of_host.values())
        at = (lookup[table[:, 0].astype(np.int64)], (table[:, 1].astype(np.int64) - lo) // p.width)
        np.add.at(sums[0], at, table[:, 2])
        np.add.at(sums[1], at, table[:, 3])
    order = sorted(excluded)
    if order:
        sums[:, order] -= storage.rollup_sums("1m", [excluded[i] for i in order], lo, hi, p.width, check)
    return sums
