"""Cold 1m rollup blocks: the 1m rollup rows of one series over one block window in one row
(table ``rollup_1m_blocks``, docs/metrics.md "Cold blocks").

A block's ``data`` is:

- 1 byte: format version (1);
- 4 bytes: row count ``n`` (little-endian unsigned);
- 6 × 4 bytes: the length of each column part (little-endian unsigned), in the order below;
- the parts: ``ts`` (bucket starts, Unix ms, int64, strictly increasing), ``min``, ``max``,
  ``sum`` (float64), ``count`` (int64) and ``increase`` (float64), each pcodec-compressed.

A float column part starts with one marker byte: ``0`` every row NULL (no more bytes: a
gauge's ``increase``), ``1`` no row NULL (the pcodec bytes follow), ``2`` some rows NULL (a
``ceil(n / 8)``-byte presence bitmap, ``numpy.packbits`` order, then the pcodec bytes of the
present values). Floats round-trip bit for bit: NaN payloads such as Prometheus' stale
marker ``0x7ff0000000000002``, -0.0 and ±Inf come back as they went in.

pcodec (https://github.com/pcodec/pcodec, the codec of console/storage/blocks.py) picks
delta orders and float modes per column: bucket starts one minute apart cost well under a
byte, counts a few bits, slowly changing host metrics a few bits per value (bench/rollup_codec.py,
BENCHMARKS.md "Cold blocks"). An empty block is the 29-byte header alone.
"""
from __future__ import annotations

import itertools
import operator
import struct
from dataclasses import dataclass
from typing import Any, Generator, Iterable, Iterator, Sequence

import numpy as np
import orjson
import pcodec
from pcodec import standalone
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from console.storage.partitions import BLOCK_1M_MS

VERSION = 1
COLUMNS = ("ts", "min", "max", "sum", "count", "increase")
_HEADER = struct.Struct("<BI6I")
_CONFIG = pcodec.ChunkConfig()  # default level 8, as the raw sample blocks
_ALL_NULL, _NO_NULL, _SOME_NULL = 0, 1, 2


class RollupBlockError(ValueError):
    """Rows a block cannot hold (bucket starts not strictly increasing, column lengths
    differ), or bytes that are not a rollup block of a known version."""


@dataclass
class Rows:
    """1m rollup rows of one series as columns, time-ordered: ``ts`` int64 (bucket start,
    Unix ms), ``min``/``max``/``sum`` float64, ``count`` int64, ``increase`` float64; each
    float column has a presence mask (``None``: every row present) for SQL NULLs."""

    ts: np.ndarray
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    count: np.ndarray
    increase: np.ndarray
    min_ok: np.ndarray | None = None
    max_ok: np.ndarray | None = None
    sum_ok: np.ndarray | None = None
    increase_ok: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray | slice) -> "Rows":
        """The rows at ``index`` (a slice, a boolean mask or positions)."""
        def part(mask: np.ndarray | None) -> np.ndarray | None:
            return None if mask is None else mask[index]
        return Rows(self.ts[index], self.min[index], self.max[index], self.sum[index], self.count[index],
                    self.increase[index], part(self.min_ok), part(self.max_ok), part(self.sum_ok),
                    part(self.increase_ok))

    def present(self, name: str) -> np.ndarray:
        """The presence mask of float column ``name`` (all True when it has none)."""
        mask = getattr(self, f"{name}_ok")
        return np.ones(len(self.ts), bool) if mask is None else mask

    def tuples(self) -> list[tuple]:
        """``[(ts, min, max, sum, count, increase), ...]`` with None for NULLs, as SQL gives them."""
        cols: list[list] = [self.ts.tolist()]
        for name in ("min", "max", "sum"):
            cols.append(_nullable(getattr(self, name), getattr(self, f"{name}_ok")))
        cols.append(self.count.tolist())
        cols.append(_nullable(self.increase, self.increase_ok))
        return list(zip(*cols))


def _nullable(values: np.ndarray, mask: np.ndarray | None) -> list:
    out = values.tolist()
    if mask is not None:
        for i in np.flatnonzero(~mask).tolist():
            out[i] = None
    return out


def _float_column(values: Sequence) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 values (NULLs as 0.0) and their presence mask (None: all present)."""
    mask = np.fromiter((v is not None for v in values), bool, len(values))
    if mask.all():
        return np.asarray(values, np.float64), None
    return np.asarray([0.0 if v is None else v for v in values], np.float64), mask


def from_tuples(rows: Iterable[Sequence]) -> Rows:
    """Rows from ``(ts, min, max, sum, count, increase)`` tuples (None for a NULL), in the
    order given."""
    rows = list(rows)
    cols = list(zip(*rows)) if rows else [()] * 6
    mn, mn_ok = _float_column(cols[1])
    mx, mx_ok = _float_column(cols[2])
    sm, sm_ok = _float_column(cols[3])
    inc, inc_ok = _float_column(cols[5])
    return Rows(np.asarray(cols[0], np.int64), mn, mx, sm, np.asarray(cols[4], np.int64), inc,
                mn_ok, mx_ok, sm_ok, inc_ok)


def empty() -> Rows:
    return from_tuples(())


def concat(parts: Sequence[Rows]) -> Rows:
    """The rows of ``parts`` one after the other (ordering is the caller's)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return empty()
    cat = np.concatenate

    def mask(masks: list[np.ndarray | None]) -> np.ndarray | None:
        if all(m is None for m in masks):
            return None
        return cat([np.ones(len(p.ts), bool) if m is None else m for p, m in zip(parts, masks)])
    return Rows(cat([p.ts for p in parts]), cat([p.min for p in parts]), cat([p.max for p in parts]),
                cat([p.sum for p in parts]), cat([p.count for p in parts]), cat([p.increase for p in parts]),
                mask([p.min_ok for p in parts]), mask([p.max_ok for p in parts]), mask([p.sum_ok for p in parts]),
                mask([p.increase_ok for p in parts]))


def merge(older: Rows, newer: Rows) -> Rows:
    """``older`` and ``newer`` together, time-ordered; on a shared bucket start the row of
    ``newer`` wins (a 1m bucket recomputed after a late sample replaces its packed value)."""
    if not len(newer):
        return older
    if not len(older) or older.ts[-1] < newer.ts[0]:
        return concat([older, newer])
    kept = older.take(~np.isin(older.ts, newer.ts))
    both = concat([kept, newer])
    return both.take(np.argsort(both.ts, kind="stable"))


def _encode_floats(values: np.ndarray, mask: np.ndarray | None) -> bytes:
    if mask is None:
        return bytes([_NO_NULL]) + standalone.simple_compress(np.ascontiguousarray(values, np.float64), _CONFIG)
    if not mask.any():
        return bytes([_ALL_NULL])
    present = np.ascontiguousarray(values[mask], np.float64)
    return bytes([_SOME_NULL]) + np.packbits(mask).tobytes() + standalone.simple_compress(present, _CONFIG)


def encode(rows: Rows) -> bytes:
    """``data`` for ``rows``. Raises RollupBlockError when the columns' lengths differ or a
    bucket start is not greater than the one before it."""
    n = len(rows.ts)
    for name in COLUMNS:
        if len(getattr(rows, name)) != n:
            raise RollupBlockError(f"{n} bucket starts but {len(getattr(rows, name))} values of {name}")
    if not n:
        return _HEADER.pack(VERSION, 0, *([0] * 6))
    ts = np.asarray(rows.ts, np.int64)
    if n > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        raise RollupBlockError("bucket starts must be strictly increasing")
    parts = [standalone.simple_compress(np.ascontiguousarray(ts), _CONFIG),
             _encode_floats(rows.min, rows.min_ok), _encode_floats(rows.max, rows.max_ok),
             _encode_floats(rows.sum, rows.sum_ok),
             standalone.simple_compress(np.ascontiguousarray(rows.count, np.int64), _CONFIG),
             _encode_floats(rows.increase, rows.increase_ok)]
    return _HEADER.pack(VERSION, n, *(len(p) for p in parts)) + b"".join(parts)


def _decompress(part: bytes, n: int, dtype: type) -> np.ndarray:
    try:
        out = standalone.simple_decompress(part)
    except RuntimeError as exc:  # pcodec's error for bytes that are not Pco
        raise RollupBlockError(f"corrupt rollup block: {exc}") from None
    if out is None or len(out) != n or out.dtype != dtype:
        raise RollupBlockError("rollup block holds a different number of rows than its header says")
    return out


def _absent(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A float column not decoded: zeros, every row NULL."""
    return np.zeros(n, np.float64), np.zeros(n, bool)


def _decode_floats(part: bytes, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    if not part:
        raise RollupBlockError("rollup block column without its marker")
    marker = part[0]
    if marker == _ALL_NULL:
        return np.zeros(n, np.float64), np.zeros(n, bool)
    if marker == _NO_NULL:
        return _decompress(part[1:], n, np.float64), None
    if marker != _SOME_NULL:
        raise RollupBlockError(f"unknown column marker {marker}")
    size = (n + 7) // 8
    mask = np.unpackbits(np.frombuffer(part, np.uint8, size, 1), count=n).astype(bool)
    present = _decompress(part[1 + size:], int(mask.sum()), np.float64)
    values = np.zeros(n, np.float64)
    values[mask] = present
    return values, mask


FLOATS = ("min", "max", "sum", "increase")


def decode(data: bytes, floats: Sequence[str] = FLOATS, start: int | None = None, end: int | None = None) -> Rows:
    """The rows of a block, with the float columns ``floats`` (of min, max, sum, increase)
    decoded: a float column left out comes back all NULL (its mask all False), and its
    bytes are not even copied, so a reader that wants one value of a bucket decodes a
    third of the bytes. With the block's ``start``/``end`` (``start_ts``, ``end_ts``), a
    block of a bucket every minute from ``start`` to ``end`` has its bucket starts
    computed, not decoded (as :func:`increases`). Raises RollupBlockError for bytes that
    are not a version-1 rollup block."""
    if len(data) < _HEADER.size:
        raise RollupBlockError("rollup block shorter than its header")
    version, n, *sizes = _HEADER.unpack_from(data)
    if version != VERSION:
        raise RollupBlockError(f"unknown rollup block format version {version}")
    if n == 0:
        return empty()
    if _HEADER.size + sum(sizes) != len(data):
        raise RollupBlockError("rollup block length differs from its header's")
    at = list(itertools.accumulate(sizes, initial=_HEADER.size))  # part i: data[at[i]:at[i + 1]]

    def part(i: int) -> bytes:
        return bytes(data[at[i]:at[i + 1]])
    mn, mn_ok = _decode_floats(part(1), n) if "min" in floats else _absent(n)
    mx, mx_ok = _decode_floats(part(2), n) if "max" in floats else _absent(n)
    sm, sm_ok = _decode_floats(part(3), n) if "sum" in floats else _absent(n)
    inc, inc_ok = _decode_floats(part(5), n) if "increase" in floats else _absent(n)
    if start is not None and end is not None and (end - start) % 60_000 == 0 and (end - start) // 60_000 + 1 == n:
        ts = np.arange(start, start + n * 60_000, 60_000, dtype=np.int64)
    else:
        ts = _decompress(part(0), n, np.int64)
    return Rows(ts, mn, mx, sm, _decompress(part(4), n, np.int64), inc, mn_ok, mx_ok, sm_ok, inc_ok)


def decode_joined(parts: Sequence[tuple[int, int, bytes]], floats: Sequence[str] = FLOATS) -> Rows:
    """:func:`concat` of :func:`decode` of each ``(start_ts, end_ts, data)`` of ``parts`` (one
    series' blocks, in time order), decoded straight into one array per column: no array per
    block to join afterwards, and the float columns not in ``floats`` are one shared array of
    zeros (every row NULL), not one per block and column. Raises RollupBlockError as
    :func:`decode`."""
    heads = []
    for start, end, data in parts:
        if len(data) < _HEADER.size:
            raise RollupBlockError("rollup block shorter than its header")
        version, n, *sizes = _HEADER.unpack_from(data)
        if version != VERSION:
            raise RollupBlockError(f"unknown rollup block format version {version}")
        if n and _HEADER.size + sum(sizes) != len(data):
            raise RollupBlockError("rollup block length differs from its header's")
        heads.append((n, sizes, start, end, data))
    total = sum(h[0] for h in heads)
    ts, count = np.empty(total, np.int64), np.empty(total, np.int64)
    values = {name: np.empty(total, np.float64) for name in floats}
    masks: dict[str, np.ndarray] = {}  # only for columns with a NULL
    at = 0
    for n, sizes, start, end, data in heads:
        if not n:
            continue
        raw = bytes(data)
        ends = list(itertools.accumulate(sizes, initial=_HEADER.size))  # part i: raw[ends[i]:ends[i + 1]]
        stop = at + n
        if (end - start) % 60_000 == 0 and (end - start) // 60_000 + 1 == n:  # a bucket every minute
            ts[at:stop] = np.arange(start, start + n * 60_000, 60_000, dtype=np.int64)
        else:
            _decompress_into(raw[ends[0]:ends[1]], ts[at:stop])
        _decompress_into(raw[ends[_COUNT_PART]:ends[_COUNT_PART + 1]], count[at:stop])
        for name in floats:
            i = COLUMNS.index(name)
            part = raw[ends[i]:ends[i + 1]]
            into = values[name][at:stop]
            marker = part[0] if part else -1
            if marker == _NO_NULL:
                _decompress_into(part[1:], into)
                continue
            if marker == _ALL_NULL:
                ok = np.zeros(n, bool)
                into[:] = 0.0
            elif marker == _SOME_NULL:
                size = (n + 7) // 8
                ok = np.unpackbits(np.frombuffer(part, np.uint8, size, 1), count=n).astype(bool)
                present = np.empty(int(ok.sum()), np.float64)
                _decompress_into(part[1 + size:], present)
                into[:] = 0.0
                into[ok] = present
            else:
                raise RollupBlockError("rollup block column without its marker" if marker < 0
                                       else f"unknown column marker {marker}")
            if name not in masks:
                masks[name] = np.ones(total, bool)
            masks[name][at:stop] = ok
        at = stop
    zeros, none = np.zeros(total, np.float64), np.zeros(total, bool)

    def column(name: str) -> tuple[np.ndarray, np.ndarray | None]:
        return (values[name], masks.get(name)) if name in values else (zeros, none)
    (mn, mn_ok), (mx, mx_ok), (sm, sm_ok), (inc, inc_ok) = (column(name) for name in FLOATS)
    return Rows(ts, mn, mx, sm, count, inc, mn_ok, mx_ok, sm_ok, inc_ok)


# -- reading the 1m tier: blocks and rows together ---------------------------------------------

# A block's buckets lie within a day of its start, so ``start_ts > lo - day`` bounds the
# index range (and prunes PostgreSQL's partitions) for blocks reaching ``lo``.
_BLOCKS = text("SELECT series_id, start_ts, end_ts, data FROM rollup_1m_blocks WHERE series_id IN :ids "
               "AND start_ts < :hi AND start_ts > :reach AND end_ts >= :lo ORDER BY series_id, start_ts"
               ).bindparams(bindparam("ids", expanding=True))


def read_blocks(session: Session, ids: Sequence[int], lo: int, hi: int) -> list[tuple[int, int, int, bytes]]:
    """``[(series_id, start_ts, end_ts, data), ...]`` of the 1m blocks of ``ids`` holding
    buckets in ``[lo, hi)`` (Unix ms), ordered by series and start."""
    if not ids or hi <= lo:
        return []
    return [tuple(r) for r in session.execute(_BLOCKS, {"ids": [int(i) for i in ids], "lo": int(lo), "hi": int(hi),
                                                         "reach": int(lo) - BLOCK_1M_MS})]


def load(session: Session, ids: Sequence[int], lo: int, hi: int,
         cold: Iterable[tuple[int, int, int, bytes]] | None = None, floats: Sequence[str] = FLOATS) -> dict[int, Rows]:
    """The 1m rollup rows of ``ids`` with buckets in ``[lo, hi)`` (Unix ms), from blocks
    (``cold``: as :func:`read_blocks` gave them for this window, read here when None) and
    ``rollup_1m`` rows together, time-ordered: ``{series_id: Rows}`` for series with any. A
    bucket both in a block and a row takes the row's values (recomputed after a late
    sample, not packed yet). Blocks decode only the float columns ``floats`` (:func:`decode`);
    rows give every column."""
    return dict(load_each(session, ids, lo, hi, cold, floats))


def load_each(session: Session, ids: Sequence[int], lo: int, hi: int,
              cold: Iterable[tuple[int, int, int, bytes]] | None = None,
              floats: Sequence[str] = FLOATS) -> Generator[tuple[int, Rows], None, None]:
    """:func:`load`'s ``(series_id, Rows)`` one series at a time, in ascending id order
    (``cold`` ordered by series, as :func:`read_blocks` and :func:`read_many` give it), each
    decoded only when asked for: a caller that reduces each series before the next holds one
    series' rows, not a day of thousands (at 8,000 series 24 B x 11.5 M rows, read back
    from memory rather than from the CPU's caches). The ``rollup_1m`` rows are read first,
    in one statement: on PostgreSQL ``cold`` may be a stream that keeps the connection busy
    until its end."""
    if not ids or hi <= lo:
        return
    if cold is None:
        cold = read_blocks(session, ids, lo, hi)
    hot = _rows_of(session, ids, lo, hi)
    waiting = iter(sorted(hot))  # series with rows: those without blocks are given in id order too
    nxt = next(waiting, None)
    for sid, group in itertools.groupby(cold, operator.itemgetter(0)):
        while nxt is not None and nxt < sid:
            yield nxt, hot.pop(nxt)
            nxt = next(waiting, None)
        # Joined first, then cut to the window once: one slice per series, not per block.
        rows = decode_joined([(start, end, data) for _, start, end, data in group], floats)
        a, b = int(np.searchsorted(rows.ts, lo, "left")), int(np.searchsorted(rows.ts, hi, "left"))
        rows = rows if (a, b) == (0, len(rows)) else rows.take(slice(a, b))
        if nxt == sid:
            rows = merge(rows, hot.pop(sid))
            nxt = next(waiting, None)
        yield sid, rows
    while nxt is not None:
        yield nxt, hot.pop(nxt)
        nxt = next(waiting, None)


def _rows_of(session: Session, ids: Sequence[int], lo: int, hi: int) -> dict[int, Rows]:
    """``{series_id: Rows}`` of the ``rollup_1m`` rows of ``ids`` in ``[lo, hi)``, one
    statement with one parameter for the ids (as :data:`_MANY_BLOCKS`)."""
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    # psycopg: a binary cursor, float8 and int8 read from their binary form (as read_many)
    driver: Any = conn.connection.driver_connection
    cursor = conn.connection.cursor() if sqlite else driver.cursor(binary=True)
    try:
        cursor.execute(_MANY_ROWS[conn.dialect.name], (_many_params(sqlite, ids, lo, hi)[0], int(hi), int(lo)))
        found = cursor.fetchall()
    finally:
        cursor.close()
    return {sid: from_tuples(r[1:] for r in group) for sid, group in itertools.groupby(found, operator.itemgetter(0))}


def stored_rows(session: Session, ids: Sequence[int], lo: int, hi: int) -> dict[int, list[tuple]]:
    """:func:`load` as ``{series_id: [(ts, min, max, sum, count, increase), ...]}`` (None
    for NULL), the shape of ``SELECT ... FROM rollup_1m``."""
    return {sid: rows.tuples() for sid, rows in load(session, ids, lo, hi).items()}


def _segments(rows: Rows, width_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket starts (``ts`` floored to ``width_ms``) of the time-ordered ``rows`` and the
    index where each bucket's rows begin."""
    buckets = rows.ts // width_ms * width_ms
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    return buckets[starts], starts


def _reduce(ufunc: np.ufunc, values: np.ndarray, mask: np.ndarray | None, starts: np.ndarray,
            neutral: float) -> list:
    """``ufunc`` over each segment's values, SQL-style: NULLs (``~mask``) left out, None
    for a segment of NULLs only."""
    if mask is None:
        return ufunc.reduceat(values, starts).tolist()
    out = ufunc.reduceat(np.where(mask, values, neutral), starts).tolist()
    for i in np.flatnonzero(np.add.reduceat(mask.astype(np.int64), starts) == 0).tolist():
        out[i] = None
    return out


def bucket_rows(rows: Rows, width_ms: int) -> list[tuple]:
    """``rows`` (time-ordered) grouped into buckets of ``width_ms``, as the SQL ``GROUP BY
    (ts / w) * w`` with ``MIN(min), MAX(max), SUM(sum), SUM(count), SUM(increase)``:
    ``[(bucket, min, max, sum, count, increase), ...]``, NULLs left out of each aggregate
    (None where a bucket has only NULLs)."""
    if not len(rows):
        return []
    buckets, starts = _segments(rows, width_ms)
    return list(zip(buckets.tolist(), _reduce(np.minimum, rows.min, rows.min_ok, starts, np.inf),
                    _reduce(np.maximum, rows.max, rows.max_ok, starts, -np.inf),
                    _reduce(np.add, rows.sum, rows.sum_ok, starts, 0.0),
                    np.add.reduceat(rows.count, starts).tolist(),
                    _reduce(np.add, rows.increase, rows.increase_ok, starts, 0.0)))


# -- the counter columns of many blocks at once (PromQL's bucket sums) ---------------------------

# The count and increase parts' places among a block's six (COLUMNS).
_COUNT_PART, _INCREASE_PART = 4, 5


def _decompress_into(part: bytes, into: np.ndarray) -> None:
    """Decode pcodec bytes ``part`` into ``into`` (1-D, contiguous, its dtype the part's)."""
    try:
        progress = standalone.simple_decompress_into(part, into)
    except (RuntimeError, TypeError) as exc:  # not Pco, or numbers of another type
        raise RollupBlockError(f"corrupt rollup block: {exc}") from None
    if progress.n_processed != len(into) or not progress.finished:
        raise RollupBlockError("rollup block holds a different number of rows than its header says")


# The blocks of many series (read_blocks' rows and window) with one parameter for the ids (SQLite:
# a JSON array, PostgreSQL: an int array) instead of one per id: with 1,400 ids, psycopg's
# conversion of a statement of 1,400 placeholders costs more than the statement itself.
_MANY_BLOCKS = {
    "sqlite": "SELECT series_id, start_ts, end_ts, data FROM rollup_1m_blocks WHERE series_id IN "
              "(SELECT value FROM json_each(?)) AND start_ts < ? AND start_ts > ? AND end_ts >= ? "
              "ORDER BY series_id, start_ts",
    "postgresql": "SELECT series_id, start_ts, end_ts, data FROM rollup_1m_blocks WHERE series_id = ANY(%s) "
                  "AND start_ts < %s AND start_ts > %s AND end_ts >= %s ORDER BY series_id, start_ts",
}
# rollup_1m's rows of ids (one parameter, as above) with lo <= ts < hi.
_MANY_ROWS = {
    "sqlite": "SELECT series_id, ts, min, max, sum, count, increase FROM rollup_1m WHERE series_id IN "
              "(SELECT value FROM json_each(?)) AND ts < ? AND ts >= ? ORDER BY series_id, ts",
    "postgresql": "SELECT series_id, ts, min, max, sum, count, increase FROM rollup_1m WHERE series_id = ANY(%s) "
                  "AND ts < %s AND ts >= %s ORDER BY series_id, ts",
}
# The newest bucket's end among the same rows (PostgreSQL: asked for before they stream).
_NEWEST_END_PG = ("SELECT max(end_ts) FROM rollup_1m_blocks WHERE series_id = ANY(%s) "
                  "AND start_ts < %s AND start_ts > %s AND end_ts >= %s")


@dataclass
class Increases:
    """The 1m rows that hold an increase (counters) of consecutive blocks, as flat columns:
    ``ts`` (bucket start, Unix ms), ``count`` (samples) int64 and ``increase`` float64, in
    the blocks' order, each block's rows time-ordered; ``first`` is the index of the first
    of these blocks among those read and ``sizes`` the rows of each."""

    first: int
    sizes: np.ndarray
    ts: np.ndarray
    count: np.ndarray
    increase: np.ndarray


def read_many(session: Session, ids: Sequence[int], lo: int, hi: int) -> list[tuple[int, int, int, bytes]]:
    """``[(series_id, start_ts, end_ts, data), ...]`` of the 1m blocks of ``ids`` holding buckets in
    ``[lo, hi)`` (Unix ms), ordered by series and start: :func:`read_blocks` in one
    statement of one parameter for the ids, as the driver gives the rows."""
    if not ids or hi <= lo:
        return []
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    # psycopg: a binary cursor, the bytes sent as they are, not as hex text (half the wall time)
    driver: Any = conn.connection.driver_connection
    cursor = conn.connection.cursor() if sqlite else driver.cursor(binary=True)
    try:
        cursor.execute(_MANY_BLOCKS[conn.dialect.name], _many_params(sqlite, ids, lo, hi))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _many_params(sqlite: bool, ids: Sequence[int], lo: int, hi: int) -> tuple:
    return (orjson.dumps([int(i) for i in ids]).decode() if sqlite else [int(i) for i in ids],
            int(hi), int(lo) - BLOCK_1M_MS, int(lo))


def many_with_end(session: Session, ids: Sequence[int], lo: int, hi: int
                  ) -> tuple[int | None, Iterable[tuple[int, int, int, bytes]]]:
    """The end (Unix ms, exclusive) of the newest bucket in the 1m blocks of ``ids`` holding
    buckets in ``[lo, hi)`` (None for none), and those blocks as :func:`read_many` gives
    them. On PostgreSQL the end is asked for first (one row, from the index) and the blocks
    come one at a time as the server sends them (psycopg's single-row mode): each is decoded
    while the server sends the next ones, and its bytes are freed once decoded. At 8,000
    series of random values (227 MB of blocks) reading and decoding a day took 581 ms that
    way against 672 ms for the whole list first, and 33 against 37 ms at 500
    (bench/block_stream.py, BENCHMARKS.md). The session's connection is busy until the
    blocks are all read or the iterator closed (closed early, psycopg cancels the rest).
    SQLite, in this process, has nothing to overlap: the list, read at once."""
    if not ids or hi <= lo:
        return None, []
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        cold = read_many(session, ids, lo, hi)
        return (max(end for _, _, end, _ in cold) + 60_000 if cold else None), cold
    params = _many_params(False, ids, lo, hi)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_NEWEST_END_PG, params)
        (newest,) = cursor.fetchone() or (None,)  # an aggregate: always one row
    finally:
        cursor.close()
    if newest is None:
        return None, []
    return int(newest) + 60_000, _stream_many(conn.connection.driver_connection, params)


def _stream_many(driver: Any, params: tuple) -> Iterator[tuple[int, int, int, bytes]]:
    with driver.cursor(binary=True) as cursor:  # bytea as stored, not as hex text
        yield from cursor.stream(_MANY_BLOCKS["postgresql"], params)


def increases(cold: Sequence[tuple[int, int, int, bytes]], chunk: int = 1 << 16) -> Iterator[Increases]:
    """The bucket starts, counts and increases of the blocks ``cold`` (as :func:`read_many`
    gives them, whole: rows outside the window too), decoded straight into arrays (the
    min/max/sum columns are not touched), a chunk of whole blocks at a time (up to
    ``chunk`` rows, or one block): each chunk is in arrays the next one reuses, so a reader
    of two million rows keeps a few hundred kilobytes in the CPU's caches instead of
    faulting in and going through tens of megabytes. Rows whose increase is NULL are left
    out. The same values as :func:`decode` gives, block by block. A block of a bucket every
    minute from its start to its end (``n`` = the minutes from ``start_ts`` to ``end_ts``:
    its ``n`` distinct minutes within them are all of them) has its bucket starts computed,
    not decoded: a third of the decoding of a day of a series that kept reporting. Raises
    RollupBlockError for bytes that are not a version-1 rollup block."""
    heads = []
    for _, start, last, data in cold:
        if len(data) < _HEADER.size:
            raise RollupBlockError("rollup block shorter than its header")
        version, n, *sizes = _HEADER.unpack_from(data)
        if version != VERSION:
            raise RollupBlockError(f"unknown rollup block format version {version}")
        if _HEADER.size + sum(sizes) != len(data) and n:
            raise RollupBlockError("rollup block length differs from its header's")
        heads.append((n, sizes, data, start if (last - start) % 60_000 == 0 and (last - start) // 60_000 + 1 == n
                      else None))
    room = max([chunk, *(n for n, _, _, _ in heads)])
    ts, count = np.empty(room, np.int64), np.empty(room, np.int64)
    increase, ok = np.empty(room, np.float64), np.ones(room, bool)
    lengths: list[int] = []  # rows of each block of the chunk
    first, at, nulls = 0, 0, False
    for index, (n, sizes, data, every_minute_from) in enumerate(heads):
        if at + n > room:
            yield _chunk(first, lengths, ts[:at], count[:at], increase[:at], ok[:at] if nulls else None)
            first, at, lengths, nulls = index, 0, [], False
            ok[:] = True  # (a chunk's arrays are reused by the next)
        lengths.append(n)
        if not n:
            continue
        raw = bytes(data)
        ends_at = list(itertools.accumulate(sizes, initial=_HEADER.size))  # part i: raw[ends_at[i]:ends_at[i + 1]]
        end = at + n
        if every_minute_from is None:
            _decompress_into(raw[ends_at[0]:ends_at[1]], ts[at:end])
        else:
            ts[at:end] = np.arange(every_minute_from, every_minute_from + n * 60_000, 60_000, dtype=np.int64)
        _decompress_into(raw[ends_at[_COUNT_PART]:ends_at[_COUNT_PART + 1]], count[at:end])
        part = raw[ends_at[_INCREASE_PART]:ends_at[_INCREASE_PART + 1]]
        marker = part[0] if part else -1
        if marker == _NO_NULL:
            _decompress_into(part[1:], increase[at:end])
        elif marker == _ALL_NULL:
            ok[at:end], nulls = False, True
        elif marker == _SOME_NULL:
            size = (n + 7) // 8
            mask = np.unpackbits(np.frombuffer(part, np.uint8, size, 1), count=n).astype(bool)
            present = np.empty(int(mask.sum()), np.float64)
            _decompress_into(part[1 + size:], present)
            increase[at:end][mask] = present
            ok[at:end], nulls = mask, True
        else:
            raise RollupBlockError("rollup block column without its marker" if marker < 0
                                   else f"unknown column marker {marker}")
        at = end
    if lengths:
        yield _chunk(first, lengths, ts[:at], count[:at], increase[:at], ok[:at] if nulls else None)


def _chunk(first: int, lengths: list[int], ts: np.ndarray, count: np.ndarray, increase: np.ndarray,
           ok: np.ndarray | None) -> Increases:
    sizes = np.array(lengths, np.int64)
    if ok is None:
        return Increases(first, sizes, ts, count, increase)
    kept = np.bincount(np.repeat(np.arange(len(sizes)), sizes)[ok], minlength=len(sizes))
    return Increases(first, kept, ts[ok], count[ok], increase[ok])
