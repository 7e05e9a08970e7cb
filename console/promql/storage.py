"""Reads the series and raw samples a selector needs from the metric store.

The PromQL label set of a stored series (see docs/promql.md, "Label model") is
``{"host": <host name>, "instance": <host name>, "job": "node"}`` overlaid with the series'
stored labels (stored labels win), plus ``__name__`` = the series name; the series of
recording rules (stored under the host row ``RULES_HOST``) have exactly their stored
labels, as Prometheus gives a rule's output. Label matchers
apply to that set; regex matchers are RE2 (``google-re2``), fully anchored as in
Prometheus.

Selectors read raw samples (hot rows and cold blocks alike): rollup buckets cannot give the
exact first/last samples of an arbitrary window that ``rate`` and the ``*_over_time``
functions need. Counter rates over long ranges read bucket increases instead
(:meth:`Storage.rollup_sums`, console/promql/rollups.py).
"""
from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import orjson
from console.regex import RegexError, compile_re2
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from console.promql.ast import LabelMatcher
from console.promql.values import NAME, Labels, make_labels
from console.query.service import sample_rows
from console.storage import rollup_blocks
from console.storage.hot_samples import hot_clause, hot_params
from console.storage.models import RULES_HOST, Host, RollupWatermark, Series

if TYPE_CHECKING:
    from console.promql.rollups import ClosedSumsCache

# Bucket increases and sample counts of a group of series, added up per bucket: by
# (dialect, tier); parameters: the series ids (SQLite: a JSON array, PostgreSQL: an int
# array), the first bucket, the end (exclusive), Unix ms.
ROLLUP_SUMS = {
    ("sqlite", "1m"): "SELECT ts, SUM(increase), SUM(count) FROM rollup_1m WHERE series_id IN "
                      "(SELECT value FROM json_each(?)) AND ts >= ? AND ts < ? AND increase IS NOT NULL GROUP BY ts",
    ("sqlite", "1h"): "SELECT ts, SUM(increase), SUM(count) FROM rollup_1h WHERE series_id IN "
                      "(SELECT value FROM json_each(?)) AND ts >= ? AND ts < ? AND increase IS NOT NULL GROUP BY ts",
    ("postgresql", "1m"): "SELECT ts, SUM(increase), SUM(count) FROM rollup_1m WHERE series_id = ANY(%s) "
                          "AND ts >= %s AND ts < %s AND increase IS NOT NULL GROUP BY ts",
    ("postgresql", "1h"): "SELECT ts, SUM(increase), SUM(count) FROM rollup_1h WHERE series_id = ANY(%s) "
                          "AND ts >= %s AND ts < %s AND increase IS NOT NULL GROUP BY ts",
}
# Cross-series 1m rows (rollup_1m_host) of one metric on some hosts: (host id, bucket start,
# increase summed over the host's series, their samples) for the buckets in [lo, hi).
# Parameters: the metric name, lo, hi (Unix ms), the host ids (as ROLLUP_SUMS' series ids).
HOST_SUMS = {
    "sqlite": "SELECT host_id, ts, COALESCE(inc_sum, 0), samples FROM rollup_1m_host WHERE name = ? "
              "AND ts >= ? AND ts < ? AND host_id IN (SELECT value FROM json_each(?))",
    "postgresql": "SELECT host_id, ts, COALESCE(inc_sum, 0), samples FROM rollup_1m_host WHERE name = %s "
                  "AND ts >= %s AND ts < %s AND host_id = ANY(%s)",
}
# The 1m rows of some series over [lo, hi) (Unix ms) with their increase and samples;
# parameters as ROLLUP_SUMS'.
ROW_INCREASES = {
    "sqlite": "SELECT series_id, ts, increase, count FROM rollup_1m WHERE series_id IN "
              "(SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?",
    "postgresql": "SELECT series_id, ts, increase, count FROM rollup_1m WHERE series_id = ANY(%s) "
                  "AND ts >= %s AND ts < %s",
}
# One of some series (parameter as ROLLUP_SUMS') that is not a counter.
NOT_COUNTERS = {
    "sqlite": "SELECT id FROM series WHERE id IN (SELECT value FROM json_each(?)) AND type != 'counter' LIMIT 1",
    "postgresql": "SELECT id FROM series WHERE id = ANY(%s) AND type != 'counter' LIMIT 1",
}
DEFAULT_JOB = "node"  # the job of series the host collector sends
TIME_BOUND_MS = 2**62  # windows are clipped to this, so SQL compares 64-bit integers


def _add_cells(sums: np.ndarray, samples: np.ndarray, occupied: np.ndarray, keys: np.ndarray,
               increase: np.ndarray, count: np.ndarray) -> None:
    """Add ``increase`` and ``count`` into the cells ``keys`` of ``sums`` and ``samples``
    (flat, by group and bucket), marking them ``occupied``; counted over the keys' own span
    only, so a chunk's counts stay small."""
    if not len(keys):
        return
    lo = int(keys.min())
    span = int(keys.max()) - lo + 1
    keys = keys - lo
    cells = slice(lo, lo + span)
    occupied[cells] |= np.bincount(keys, minlength=span) > 0
    sums[cells] += np.bincount(keys, weights=increase, minlength=span)
    samples[cells] += np.bincount(keys, weights=count, minlength=span)


class TooManySamples(Exception):
    """More samples than the query's budget (Prometheus' ``max_samples``)."""


class BadRegex(ValueError):
    """A pattern RE2 refuses (answered 400 bad_data in a selector)."""


@dataclass
class StoredSeries:
    """One series' labels and its samples, time-ordered: Unix ms in ``ts``, floats in ``values``."""

    id: int
    labels: Labels
    ts: list = field(default_factory=list)
    values: list = field(default_factory=list)
    _resets: list | None = field(default=None, repr=False)
    stale_from: int | None = None  # Unix ms from which instant lookups see no sample (a computed series that ended)

    @property
    def resets(self) -> list[int]:
        """Indices ``j`` where ``values[j] < values[j - 1]`` (counter resets), ascending."""
        if self._resets is None:
            vs = self.values
            self._resets = [j for j in range(1, len(vs)) if vs[j] < vs[j - 1]]
        return self._resets


def series_labels(name: str, stored_json: str, host: str) -> Labels:
    """The PromQL label set of one stored series (the label model above)."""
    labels = {"host": host, "instance": host, "job": DEFAULT_JOB} if host != RULES_HOST else {}
    labels.update(orjson.loads(stored_json))
    labels[NAME] = name
    return make_labels(labels)


def compile_regex(pattern: str):  # noqa: ANN201 - a re2 pattern object
    """``pattern`` compiled by RE2 (linear time), errors not logged by the library; raises
    BadRegex with RE2's message."""
    try:
        return compile_re2(pattern)
    except RegexError as exc:
        raise BadRegex(str(exc)) from None


def compile_matcher(m: LabelMatcher) -> Callable[[str], bool]:
    """A predicate on a label value (``""`` when the label is absent), as Prometheus'
    ``labels.Matcher``. Raises BadRegex for a pattern RE2 refuses."""
    want = m.value
    if m.op == "=":
        return lambda v: v == want
    if m.op == "!=":
        return lambda v: v != want
    rx = compile_regex(m.value)
    if m.op == "=~":
        return lambda v: rx.fullmatch(v) is not None
    return lambda v: rx.fullmatch(v) is None


@dataclass
class VirtualSeries:
    """A series computed rather than stored (``up``, ``ALERTS``: console/alerting).
    ``samples(mint, maxt)`` -> (Unix ms list, value list) inside ``[mint, maxt]``."""

    labels: Labels
    samples: Callable[[int, int], tuple[list, list]]
    stale_from: int | None = None  # as Prometheus' staleness marker: the series ended here (Unix ms)


class VirtualSource:
    """Hook for computed series: ``names`` are the metric names it can produce;
    ``series(session, name)`` lists those named ``name``, or all of them when ``name`` is
    None (called at most once per name per storage, and only when a selector may match
    one of ``names``)."""

    @property
    def names(self) -> frozenset:
        return frozenset()

    def series(self, session: Session, name: str | None = None) -> list[VirtualSeries]:
        return []


class Storage:
    """Series lookups and sample loading inside one read transaction. ``max_samples``
    caps the samples loaded over the whole query (TooManySamples beyond it). ``virtual``
    adds computed series (ids below 0) to what selectors match. ``pending``: samples
    (labels -> (Unix ms, value)) recorded by recording rules earlier in this evaluation round
    and not stored yet, answered as if stored: appended to the stored series of the same
    labels, or as a series of their own."""

    def __init__(self, session: Session, max_samples: int, virtual: VirtualSource | None = None,
                 pending: dict[Labels, tuple[int, float]] | None = None, rollups: bool = True,
                 host_rollups: bool = True, closed_sums: ClosedSumsCache | None = None) -> None:
        self.session = session
        self.closed_sums = closed_sums  # bucket sums kept across queries (console/promql/rollups.py)
        # whether those may read the cross-series rows (rollup_1m_host) where the rollup job keeps them
        self.host_rollups = host_rollups
        self._pending = pending or {}
        self._pending_ids: dict[int, tuple[int, float]] = {}  # stored series id -> its pending sample
        self.rollups = rollups  # whether range queries may read the rollup tiers (engine.rollup_plan)
        self.max_samples = max_samples
        self.loaded = 0
        self._series_cache: dict[tuple, list[StoredSeries]] = {}
        # Stored samples already read, per selector: (mint, maxt, series with their samples
        # in [mint, maxt]). Rules evaluated at one time share selectors and windows (an
        # alerting group round), so a later load inside a range already read is served from
        # here instead of the database; the storage lives inside one read transaction.
        self._samples_cache: dict[tuple, tuple[int, int, dict[int, StoredSeries]]] = {}
        self._virtual_source = virtual
        # Computed series listed so far; series id -(i + 1) is self._virtual[i]. Listed per
        # metric name (None: all names), as building every one (ALERTS of every active
        # alert) for a selector that reads only ``up`` costs seconds with many alerts.
        self._virtual: list[VirtualSeries] = []
        self._virtual_ids: dict[str | None, range] = {}

    @property
    def computed_read(self) -> bool:
        """Whether this storage has listed computed series (they are then fixed for its
        lifetime: a caller that changes them needs a new Storage)."""
        return bool(self._virtual_ids)

    def _virtual_matches(self, names: list[str], tests: list) -> list[StoredSeries]:
        source = self._virtual_source
        if source is None or (names and names[0] not in source.names):
            return []
        name = names[0] if names else None
        ids = self._virtual_ids.get(name)
        if ids is None:
            first = len(self._virtual)
            self._virtual.extend(source.series(self.session, name))
            self._virtual_ids[name] = ids = range(first, len(self._virtual))
        out = []
        for i in ids:
            v = self._virtual[i]
            as_dict = dict(v.labels)
            if all(test(as_dict.get(label, "")) for label, test in tests):
                out.append(StoredSeries(-(i + 1), v.labels))
        return out

    def match(self, matchers: tuple[LabelMatcher, ...], mint: int | None = None,
              maxt: int | None = None) -> list[StoredSeries]:
        """Series (without samples) whose label set satisfies every matcher, sorted by labels;
        with ``mint``/``maxt`` (Unix ms), only stored series with data in that window (by
        their first and last sample time; computed series are all listed)."""
        key = (tuple((m.name, m.op, m.value) for m in matchers), mint, maxt)
        if key in self._series_cache:
            return self._series_cache[key]
        stmt = select(Series.id, Series.name, Series.labels, Host.name).join(Host, Host.id == Series.host_id)
        if mint is not None:
            stmt = stmt.where(Series.last_ts >= mint)
        if maxt is not None:
            stmt = stmt.where(Series.first_ts <= maxt)
        names = [m.value for m in matchers if m.name == NAME and m.op == "="]
        if names:
            stmt = stmt.where(Series.name == names[0])
        tests = [(m.name, compile_matcher(m)) for m in matchers]
        out = []
        for sid, name, stored, host in self.session.connection().execute(stmt):
            labels = series_labels(name, stored, host)
            as_dict = dict(labels)
            if all(test(as_dict.get(label, "")) for label, test in tests):
                out.append(StoredSeries(sid, labels))
                if labels in self._pending:
                    self._pending_ids[sid] = self._pending[labels]
        if self._pending:
            out.extend(self._pending_matches(out, names, tests, mint, maxt))
        out.extend(self._virtual_matches(names, tests))
        out.sort(key=lambda s: s.labels)
        self._series_cache[key] = out
        return out

    def _pending_matches(self, stored: list[StoredSeries], names: list[str], tests: list, mint: int | None,
                         maxt: int | None) -> list[StoredSeries]:
        """Pending samples whose series ``stored`` does not hold, as series of their own."""
        have = {s.labels for s in stored}
        out = []
        for labels, (t, v) in self._pending.items():
            if labels in have or (names and dict(labels).get(NAME) != names[0]):
                continue
            if (mint is not None and t < mint) or (maxt is not None and t > maxt):
                continue
            as_dict = dict(labels)
            if all(test(as_dict.get(label, "")) for label, test in tests):
                def points(lo: int, hi: int, t: int = t, v: float = v) -> tuple[list, list]:
                    return ([t], [v]) if lo <= t <= hi else ([], [])
                self._virtual.append(VirtualSeries(labels, points))
                out.append(StoredSeries(-len(self._virtual), labels))
        return out

    def load(self, matchers: tuple[LabelMatcher, ...], mint: int, maxt: int) -> list[StoredSeries]:
        """Matching series with their raw samples in ``[mint, maxt]`` (Unix ms). Samples of
        stored series come from an earlier load of the same selector whose range covers
        ``[mint, maxt]`` when there is one (the same samples, counted against
        ``max_samples`` again), else from the database. Raises TooManySamples."""
        mint, maxt = max(mint, -TIME_BOUND_MS), min(maxt, TIME_BOUND_MS)  # huge offsets stay 64-bit
        matched = self.match(matchers, int(mint), int(maxt))
        if not matched or maxt < mint:
            return [StoredSeries(s.id, s.labels) for s in matched]
        key = tuple((m.name, m.op, m.value) for m in matchers)
        stored = self._stored_samples(key, [s for s in matched if s.id >= 0], int(mint), int(maxt))
        series = []
        for s in matched:
            if s.id >= 0:
                found = stored[s.id]
                pending = self._pending_ids.get(s.id)
                if pending is not None and mint <= pending[0] <= maxt and (not found.ts or found.ts[-1] < pending[0]):
                    found = StoredSeries(s.id, s.labels, [*found.ts, pending[0]], [*found.values, pending[1]])
                    self.loaded += 1
                series.append(found)
                continue
            virtual = self._virtual[-s.id - 1]
            out = StoredSeries(s.id, s.labels, stale_from=virtual.stale_from)
            out.ts, out.values = virtual.samples(int(mint), int(maxt))
            self.loaded += len(out.ts)
            series.append(out)
        if self.loaded > self.max_samples:
            raise TooManySamples()
        return series

    def _stored_samples(self, key: tuple, matched: list[StoredSeries], mint: int,
                        maxt: int) -> dict[int, StoredSeries]:
        """``{series id: StoredSeries with its samples in [mint, maxt]}`` for the stored
        series ``matched`` by selector ``key``, adding their count to ``loaded``."""
        cached = self._samples_cache.get(key)
        if cached is not None and cached[0] <= mint and maxt <= cached[1]:
            if (cached[0], cached[1]) == (mint, maxt):
                out = cached[2]  # the same window: share the series (and their counter resets)
            else:
                out = {}
                for sid, s in cached[2].items():
                    lo, hi = bisect_left(s.ts, mint), bisect_right(s.ts, maxt)
                    out[sid] = StoredSeries(sid, s.labels, s.ts[lo:hi], s.values[lo:hi])
            self.loaded += sum(len(s.ts) for s in out.values())
            if self.loaded > self.max_samples:
                raise TooManySamples()
            return out
        budget = self.max_samples - self.loaded
        rows, loaded = sample_rows(self.session, [s.id for s in matched], mint, maxt,
                                   max(budget, 0)) if matched else ({}, 0)
        self.loaded += loaded
        if self.loaded > self.max_samples:
            raise TooManySamples()  # rows cut at the budget: nothing to keep
        out = {}
        for s in matched:
            points = rows.get(s.id, ())
            out[s.id] = StoredSeries(s.id, s.labels, [p[0] for p in points], [p[1] for p in points])
        self._samples_cache[key] = (mint, maxt, out)  # not covered by the previous entry: replaces it
        return out

    def has_samples(self, series_id: int, mint: int, maxt: int) -> bool:
        pending = self._pending_ids.get(series_id)
        if pending is not None and mint <= pending[0] <= maxt:
            return True
        if series_id < 0:
            return bool(self._virtual[-series_id - 1].samples(mint, maxt)[0])
        hot = hot_clause(self.session.get_bind().dialect.name)
        if self.session.execute(text(f"SELECT 1 FROM samples WHERE {hot}series_id = :sid AND ts >= :lo AND ts <= :hi "
                                     "LIMIT 1"), {"sid": series_id, "lo": mint, "hi": maxt,
                                                  **hot_params(mint, maxt)}).first() is not None:
            return True
        return bool(sample_rows(self.session, [series_id], mint, maxt, 0)[0].get(series_id))

    # -- rollup tiers (console/promql/rollups.py) ------------------------------------------
    def rollup_done_until(self, tier: str) -> int | None:
        """Unix ms before which every bucket of ``tier`` ("1m" | "1h") is rolled up (None:
        the tier has not started)."""
        mark = self.rollup_mark(tier)
        return None if mark is None else mark[0]

    def rollup_mark(self, tier: str) -> tuple[int, int] | None:
        """``(done_until, generation)`` of ``tier``'s watermark (console/storage/models.py
        RollupWatermark); None: the tier has not started."""
        row = self.session.execute(select(RollupWatermark.done_until, RollupWatermark.generation)
                                   .where(RollupWatermark.tier == tier)).first()
        return None if row is None else (int(row[0]), int(row[1]))

    def all_counters(self, series_ids: list[int]) -> bool:
        """Whether every one of ``series_ids`` is stored as a counter (its rollups keep the increase)."""
        conn = self.session.connection()
        sqlite = conn.dialect.name == "sqlite"
        cursor = conn.connection.cursor()  # one parameter for the ids, not one placeholder per id
        try:
            cursor.execute(NOT_COUNTERS[conn.dialect.name],
                           (orjson.dumps(series_ids).decode() if sqlite else list(series_ids),))
            return cursor.fetchone() is None
        finally:
            cursor.close()

    def rollup_sums(self, tier: str, groups: list[list[int]], lo: int, hi: int, width: int,
                    check: Callable[[], None] = lambda: None) -> np.ndarray:
        """``[increases, samples]`` per group of series ids (``groups``' order) and bucket of
        ``tier`` ("1m" | "1h", buckets of ``width`` ms) starting in ``[lo, hi)`` (Unix ms;
        ``lo`` a multiple of ``width``): shape (2, groups, (hi - lo) // width), the series'
        bucket increases and sample counts added up, buckets without an increase (not a
        counter's) left out. Every group and bucket with a bucket in it counts against
        ``max_samples``; raises TooManySamples beyond it. ``check`` runs before each
        database read (the caller's deadline).

        On the 1m tier the buckets up to the end of each group's newest packed day
        (``rollup_1m_blocks``) are read from blocks, every group's in one statement,
        decoded into flat columns and added up for all groups at once
        (:meth:`_packed_sums`); the later buckets (the hot rows) are added up in SQL, one
        statement per group: its rows are few enough to sort in memory, where SQLite (no
        hash aggregation) would sort one GROUP BY over every group in a temporary B-tree."""
        nb = (hi - lo) // width
        out = np.zeros((2, len(groups), nb))
        if not groups or nb <= 0:
            return out
        tops = np.full(len(groups), lo, np.int64)  # per group: the first bucket read in SQL
        if tier == "1m":
            tops = self._packed_sums(groups, lo, hi, width, out, check)
        conn = self.session.connection()
        sql = ROLLUP_SUMS[(conn.dialect.name, tier)]
        sqlite = conn.dialect.name == "sqlite"
        cursor = conn.connection.cursor()  # plain tuples from the DB-API cursor: no SQLAlchemy Row per row
        try:
            for i, ids in enumerate(groups):
                start = int(tops[i])
                if start >= hi:
                    continue
                check()
                cursor.execute(sql, (orjson.dumps(ids).decode() if sqlite else ids, start, hi))
                rows = cursor.fetchall()
                self.loaded += len(rows)
                if self.loaded > self.max_samples:
                    raise TooManySamples()
                if rows:
                    table = np.array(rows, np.float64).reshape(-1, 3)
                    at = (table[:, 0].astype(np.int64) - lo) // width
                    out[0, i, at] += table[:, 1]
                    out[1, i, at] += table[:, 2]
        finally:
            cursor.close()
        return out

    def _packed_sums(self, groups: list[list[int]], lo: int, hi: int, width: int, out: np.ndarray,
                     check: Callable[[], None]) -> np.ndarray:
        """Add to ``out`` (as :meth:`rollup_sums` returns it) the 1m buckets in ``[lo, hi)``
        the blocks hold, up to the end of each group's newest block, a ``rollup_1m`` row
        taking over its block's bucket (recomputed after a late sample, not packed yet);
        return, per group, where those end (``lo`` for a group without blocks). One
        statement reads every group's blocks and one the rows over them."""
        ids = np.fromiter(itertools.chain.from_iterable(groups), np.int64)
        group_of = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
        order = np.argsort(ids, kind="stable")
        ids, group_of = ids[order], group_of[order]
        tops = np.full(len(groups), lo, np.int64)
        check()
        cold = rollup_blocks.read_many(self.session, ids.tolist(), lo, hi)
        if not cold:
            return tops
        series = np.fromiter((sid for sid, _, _, _ in cold), np.int64, len(cold))
        block_group = group_of[np.searchsorted(ids, series)]
        np.maximum.at(tops, block_group, np.fromiter((end for _, _, end, _ in cold), np.int64, len(cold)) + 60_000)
        np.minimum(tops, hi, out=tops)  # a block's buckets end before its group's top: only [lo, hi) to keep
        nb = out.shape[2]
        check()
        conn = self.session.connection()
        cursor = conn.connection.cursor()
        try:
            cursor.execute(ROW_INCREASES[conn.dialect.name], (
                orjson.dumps(ids.tolist()).decode() if conn.dialect.name == "sqlite" else ids.tolist(), lo,
                int(tops.max())))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        # Rows recomputed after a late sample (few): each takes over its block's bucket,
        # its increase NULL or not; those before the group's top are added here, the later
        # ones read in SQL (rollup_sums).
        r_sid = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        r_bucket = (np.fromiter((r[1] for r in rows), np.int64, len(rows)) - lo) // width
        r_group = group_of[np.searchsorted(ids, r_sid)]
        packed = r_bucket < (tops[r_group] - lo) // width
        taken = np.sort(r_sid[packed] * nb + r_bucket[packed])  # (series, bucket); np.unique would import numpy.ma
        adds = packed & np.fromiter((r[2] is not None for r in rows), bool, len(rows))
        cells = len(groups) * nb
        sums, samples = out[0].reshape(cells), out[1].reshape(cells)  # views: added to in place
        occupied = np.zeros(cells, bool)
        base = block_group * nb
        for part in rollup_blocks.increases(cold):
            bucket = part.ts  # in place: the chunk's arrays are the reader's to reuse
            bucket -= lo
            bucket //= width
            keep = bucket >= 0
            keep &= bucket < nb
            blocks = slice(part.first, part.first + len(part.sizes))
            keys = np.repeat(base[blocks], part.sizes)
            keys += bucket
            if len(taken):
                own = np.repeat(series[blocks] * nb, part.sizes) + bucket
                keep &= taken[np.minimum(np.searchsorted(taken, own), len(taken) - 1)] != own
            if keep.all():
                _add_cells(sums, samples, occupied, keys, part.increase, part.count)
            else:
                _add_cells(sums, samples, occupied, keys[keep], part.increase[keep], part.count[keep])
        if adds.any():
            _add_cells(sums, samples, occupied, r_group[adds] * nb + r_bucket[adds],
                       np.array([r[2] for r, a in zip(rows, adds) if a], np.float64),
                       np.array([r[3] for r, a in zip(rows, adds) if a], np.float64))
        self.loaded += int(np.count_nonzero(occupied))
        if self.loaded > self.max_samples:
            raise TooManySamples()
        return tops

    def series_hosts(self, name: str, mint: int, maxt: int) -> list[tuple[int, int, str]]:
        """``[(series id, host id, type), ...]`` of every stored series named ``name`` with
        data in ``[mint, maxt]`` (Unix ms; by first and last sample time, as :meth:`match`)."""
        return [(int(sid), int(host), str(kind)) for sid, host, kind in self.session.execute(
            select(Series.id, Series.host_id, Series.type).where(
                Series.name == name, Series.last_ts >= mint, Series.first_ts <= maxt))]

    def host_increases(self, name: str, host_ids: list[int], lo: int, hi: int) -> list[tuple]:
        """``[(host id, bucket start, increase, samples), ...]`` from ``rollup_1m_host``: per
        host of ``host_ids`` and 1m bucket starting in ``[lo, hi)`` (Unix ms), the bucket
        increases of the host's series named ``name`` added up (counters; 0 where none) and
        their samples. Rows count against ``max_samples``; raises TooManySamples beyond it."""
        conn = self.session.connection()
        sqlite = conn.dialect.name == "sqlite"
        cursor = conn.connection.cursor()
        try:
            cursor.execute(HOST_SUMS[conn.dialect.name],
                           (name, lo, hi, orjson.dumps(host_ids).decode() if sqlite else host_ids))
            rows = list(cursor.fetchall())
        finally:
            cursor.close()
        self.loaded += len(rows)
        if self.loaded > self.max_samples:
            raise TooManySamples()
        return rows
