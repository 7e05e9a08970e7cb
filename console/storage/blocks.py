"""Cold sample blocks: the samples of one series over one block window in one row.

A block's ``data`` is:

- 1 byte: format version (1);
- 4 bytes: sample count ``n`` (little-endian unsigned);
- 4 bytes: length of the timestamp part (little-endian unsigned);
- the timestamps (Unix ms, int64, strictly increasing), pcodec-compressed;
- the values (IEEE 754 float64, bit-exact: NaN payloads such as Prometheus' stale marker
  ``0x7ff0000000000002``, -0.0 and ±Inf come back as they went in), pcodec-compressed.

pcodec (https://github.com/pcodec/pcodec, "Pco" format) picks delta orders and
float modes per chunk: regular timestamps cost well under a byte and slowly changing host
metrics a few bits per sample (bench/storage.py, BENCHMARKS.md "Cold blocks" compares it
with delta-of-delta + XOR under zstd). An empty block is the 9-byte header alone.
"""
from __future__ import annotations

import struct
from typing import Sequence

import numpy as np
import pcodec
from pcodec import standalone
from sqlalchemy import desc, select, text
from sqlalchemy.orm import Session

from console.storage.hot_samples import BUCKET_MIN, hot_clause
from console.storage.models import SampleBlock

LATEST_BUCKETS = 10  # minutes of hot rows looked at first for a series' latest samples

VERSION = 1
_HEADER = struct.Struct("<BII")
_CONFIG = pcodec.ChunkConfig()  # default level 8: the format's own balance of size and speed


class BlockError(ValueError):
    """Samples a block cannot hold (timestamps not strictly increasing, lengths differ), or
    bytes that are not a block of a known version."""


def encode(ts: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray) -> bytes:
    """``data`` for the samples ``zip(ts, values)`` (Unix ms, floats). Raises BlockError
    when the lengths differ or a timestamp is not greater than the one before it (a
    series has one sample per timestamp)."""
    if len(ts) != len(values):
        raise BlockError(f"{len(ts)} timestamps but {len(values)} values")
    if not len(ts):
        return _HEADER.pack(VERSION, 0, 0)
    t = np.asarray(ts, dtype=np.int64)
    if len(t) > 1 and not bool(np.all(t[1:] > t[:-1])):
        raise BlockError("timestamps must be strictly increasing")
    t_part = standalone.simple_compress(t, _CONFIG)
    v_part = standalone.simple_compress(np.asarray(values, dtype=np.float64), _CONFIG)
    return _HEADER.pack(VERSION, len(t), len(t_part)) + t_part + v_part


def decode_arrays(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(timestamps int64, values float64)`` of a block. Raises BlockError for bytes that
    are not a version-1 block."""
    if len(data) < _HEADER.size:
        raise BlockError("block shorter than its header")
    version, n, t_len = _HEADER.unpack_from(data)
    if version != VERSION:
        raise BlockError(f"unknown block format version {version}")
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    body = memoryview(data)[_HEADER.size:]
    try:
        t = standalone.simple_decompress(bytes(body[:t_len]))
        v = standalone.simple_decompress(bytes(body[t_len:]))
    except RuntimeError as exc:  # pcodec's error for bytes that are not Pco
        raise BlockError(f"corrupt block: {exc}") from None
    if t is None or v is None or len(t) != n or len(v) != n:
        raise BlockError("block holds a different number of samples than its header says")
    return t, v


def decode(data: bytes) -> list[tuple[int, float]]:
    """The samples of a block as ``(ts_ms, value)`` tuples, time-ordered."""
    t, v = decode_arrays(data)
    return list(zip(t.tolist(), v.tolist()))


def _latest_rows(session: Session, series_id: int, n: int) -> list[tuple[int, float]]:
    """The last ``n`` hot rows of one series, newest first. On SQLite the rows are
    clustered by minute (console/storage/hot_samples.py): the minutes of the last
    ``LATEST_BUCKETS`` stored are looked at first (one seek each, newest first, stopping
    at ``n`` rows), every stored minute only for a series with fewer rows there."""
    if session.get_bind().dialect.name != "sqlite":
        return [(ts, v) for ts, v in session.execute(text(
            "SELECT ts, value FROM samples WHERE series_id = :sid ORDER BY ts DESC LIMIT :n"),
            {"sid": series_id, "n": n})]
    newest = session.execute(text("SELECT MAX(bucket) FROM samples")).scalar()
    if newest is None:
        return []
    sql = text(f"SELECT ts, value FROM samples WHERE {hot_clause('sqlite')}series_id = :sid "
               "ORDER BY bucket DESC, ts DESC LIMIT :n")
    points: list[tuple[int, float]] = []
    for lo in (newest - LATEST_BUCKETS, BUCKET_MIN):
        points = [(ts, v) for ts, v in session.execute(sql, {"sid": series_id, "n": n, "bucket_lo": lo,
                                                               "bucket_hi": newest})]
        if len(points) == n:
            break
    return points


def latest_samples(session: Session, series_id: int, n: int) -> list[tuple[int, float]]:
    """The last ``n`` raw samples of one series, oldest first, from hot rows or, for a
    series silent longer than the hot window, its newest block."""
    points = _latest_rows(session, series_id, n)
    if len(points) < n:
        data = session.execute(select(SampleBlock.data).where(SampleBlock.series_id == series_id)
                               .order_by(desc(SampleBlock.start_ts)).limit(1)).scalar()
        if data is not None:
            older: dict[int, float] = dict(decode(bytes(data)))
            older.update((ts, v) for ts, v in points if ts not in older)
            points = sorted(older.items(), reverse=True)[:n]
    return points[::-1]
