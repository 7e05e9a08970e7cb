"""A series' points as two numpy columns, and their JSON written from the columns.

A day of 500 series at a 1 m step is 720,000 points: as ``(ts, value)`` tuples they cost
more to build (and for the cyclic collector to walk) than to encode. The range API keeps
the points of rollup tiers as columns (:class:`Columns`) from the blocks and rows read to
the answer, and writes their JSON from the columns (:func:`points_json`), byte for byte
what ``orjson.dumps`` writes for the same points as a list of ``[ts, value]`` pairs.
"""
from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import orjson

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_FIRST = operator.itemgetter(0)


@dataclass(frozen=True)
class Columns:
    """Points ``[(ts[i], values[i]), ...]``: ``ts`` int64 Unix ms, increasing; ``values``
    float64 (NaN is written as JSON ``null``, as orjson writes a Python NaN or None)."""

    ts: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def of(cls, pairs: Sequence[tuple]) -> "Columns":
        """Columns of ``[(ts, value), ...]`` (None values as NaN)."""
        if not pairs:
            return cls(np.empty(0, np.int64), np.empty(0, np.float64))
        ts = np.fromiter(map(_FIRST, pairs), np.int64, len(pairs))
        values = np.array([p[1] for p in pairs], np.float64)
        return cls(ts, values)

    def cut(self, lo: int, hi: int) -> "Columns":
        """The points stamped in ``[lo, hi)`` (self when that is all of them)."""
        a, b = np.searchsorted(self.ts, [lo, hi], "left").tolist()
        return self if (a, b) == (0, len(self.ts)) else Columns(self.ts[a:b], self.values[a:b])

    def json(self) -> bytes:
        return points_json(self.ts, self.values)


Points = Union[list, Columns]  # [(ts, value), ...] or the same as columns


def concat(older: Points, newer: Points) -> Points:
    """``older`` then ``newer`` (both time-ordered, newer after older) as one new value;
    never changes either (the cache of closed buckets may hold them)."""
    if not len(newer):
        return older
    if not len(older):
        return newer
    if isinstance(older, list) and isinstance(newer, list):
        return older + newer
    a = older if isinstance(older, Columns) else Columns.of(older)
    b = newer if isinstance(newer, Columns) else Columns.of(newer)
    return Columns(np.concatenate((a.ts, b.ts)), np.concatenate((a.values, b.values)))


def cut(points: Points, lo: int, hi: int) -> Points:
    """The points of ``points`` stamped in ``[lo, hi)``."""
    if isinstance(points, Columns):
        return points.cut(lo, hi)
    i = bisect.bisect_left(points, lo, key=_FIRST)
    j = len(points) if not points or points[-1][0] < hi else bisect.bisect_left(points, hi, key=_FIRST)
    return points if (i, j) == (0, len(points)) else points[i:j]


def to_json(points: Points) -> bytes:
    """The JSON array ``[[ts, value], ...]`` of ``points``, as orjson writes it."""
    if isinstance(points, Columns):
        return points.json()
    return orjson.dumps(points)


def points_json(ts: np.ndarray, values: np.ndarray) -> bytes:
    """``orjson.dumps(list(zip(ts.tolist(), values.tolist())))`` (``ts`` int64, ``values``
    float64, one length), byte for byte: :func:`points_json_many` of one series."""
    return points_json_many([(ts, values)])[0]


def points_json_many(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[bytes]:
    """:func:`points_json` of each ``(ts, values)`` in ``series``, without a Python object
    per point: orjson writes the values as one array (its own float formatting, NaN as
    ``null``), each comma between two values becomes ``],[``, a stamp's place and ``,``,
    and the stamps' digits, written by orjson too, are copied into their places with numpy
    (when every stamp has as many digits, as Unix ms stamps from 2001 to 2286 do; other
    stamps are written through the pairs). Series after series: each one's few tens of
    kilobytes (~50 for a day at 1 m) stay in the CPU's caches through these passes (all
    series at once are 2x slower); series sharing their stamps (usually all of them)
    share their digits."""
    out = []
    shared: tuple[np.ndarray, np.ndarray | None] = (np.empty(0, np.int64), None)
    for ts, values in series:
        ts = np.ascontiguousarray(ts, np.int64)
        if not len(ts):
            out.append(b"[]")
            continue
        if not np.array_equal(ts, shared[0]):
            shared = (ts, _digits(ts))
        digits = shared[1]
        if digits is None:
            out.append(orjson.dumps(list(zip(ts.tolist(), np.asarray(values, np.float64).tolist()))))
        else:
            out.append(_spliced(digits, np.ascontiguousarray(values, np.float64)))
    return out


def _digits(ts: np.ndarray) -> np.ndarray | None:
    """The stamps' decimal digits as one ``V<width>`` item each; None unless all have as
    many digits (and no sign)."""
    width = len(str(int(ts.max())))
    if int(ts.min()) < 0 or len(str(int(ts.min()))) != width:
        return None
    stamps = orjson.dumps(ts, option=_NUMPY)  # "[t0,t1,...]": `width` digits, then a comma
    rows = np.frombuffer(stamps[1:-1] + b",", np.uint8).reshape(len(ts), width + 1)
    return rows[:, :width].copy().view(f"V{width}").ravel()


def _spliced(digits: np.ndarray, values: np.ndarray) -> bytes:
    """``[[t0,v0],[t1,v1],...]`` from the stamps' ``digits`` (:func:`_digits`) and orjson's
    text of ``values``."""
    width = digits.dtype.itemsize
    text = orjson.dumps(values, option=_NUMPY)  # "[v0,v1,...]"
    gap = b"],[" + b"0" * width + b","  # a stamp's place: written over below
    body = text.replace(b",", gap)  # "[v0],[0000,v1...]"
    whole = bytearray(b"[" + gap[2:])  # "[[" t0 "," then body from v0 on, then "]"
    whole += memoryview(body)[1:]
    whole.append(93)
    # Where each stamp goes: the first after "[[", each other one 3 bytes into the gap that
    # replaced the comma before its value; the j-th comma of ``text`` moved by the j gaps
    # before it and by the first stamp's place.
    commas = np.flatnonzero(np.frombuffer(text, np.uint8) == 44)
    at = np.empty(len(values), np.int64)
    at[0] = 2
    at[1:] = commas + np.arange(len(commas), dtype=np.int64) * (len(gap) - 1) + width + 2 + 3
    # One item of `width` bytes per place, the items overlapping byte by byte.
    places = np.ndarray(buffer=whole, dtype=f"V{width}", shape=(len(whole) - width + 1,), strides=(1,))
    places[at] = digits
    return bytes(whole)
