"""How the hot rows of raw samples (table ``samples``) are laid out, per dialect, and the
one way every statement asks for a time range of them.

SQLite: ``samples`` is a WITHOUT ROWID table clustered by ``(bucket, series_id, ts)``,
``bucket = ts / BUCKET_MS`` (integer division, a stored column: SQLite allows no generated
column in a primary key; migration sqlhead_0001). An agent's batch holds one point of
each of its ~500 series (consecutive series ids), so within the current minute its rows
land side by side in a few leaf pages, however many samples each series already holds;
clustered by (series_id, ts), each series' newest leaf was a page of its own, and once
series held a leaf of samples every sample dirtied one (a 4 KiB WAL frame per sample,
copied again by the checkpoint; BENCHMARKS.md, "The hot rows clustered by minute on
SQLite"). The price is on the read side: one series' range is one index seek per bucket
(minute) present in it, found with a loose index scan (one seek per bucket actually
stored, :data:`PRESENT`), never a range on ``bucket`` (which would scan every series).
A whole-table pass over a time range reads it in storage order.

PostgreSQL: ``samples`` is partitioned by time and keyed ``(series_id, ts)``; there is no
``bucket`` column (its heap is appended to whatever the key; the index pages are the
server's) and the time predicate is the plain range.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, TextClause, text, true

BUCKET_MS = 60_000  # a minute: an agent's series hold ~6 rows each per bucket at 10 s (BENCHMARKS.md)
BUCKET_MIN = -(2 ** 62)  # bounds for "every bucket present"
BUCKET_MAX = 2 ** 62

# The buckets present between :bucket_lo and :bucket_hi (inclusive), ascending: a loose
# index scan, one seek of the primary key per bucket stored (none per row).
PRESENT = ("WITH RECURSIVE present(b) AS (SELECT MIN(bucket) FROM samples WHERE bucket >= :bucket_lo "
           "UNION ALL SELECT (SELECT MIN(bucket) FROM samples WHERE bucket > present.b) FROM present "
           "WHERE present.b < :bucket_hi) SELECT b FROM present WHERE b <= :bucket_hi")

# The SQLite insert: the bucket computed by SQLite from the bound time (the same integer
# division as the migration and :func:`bucket_of`).
INSERT_SQLITE = (f"INSERT OR IGNORE INTO samples (bucket, series_id, ts, value) "
                 f"VALUES (?2 / {BUCKET_MS}, ?1, ?2, ?3)")


def bucket_of(ts_ms: int) -> int:
    """The bucket of a sample time (Unix ms) as SQLite's integer division gives it
    (truncated toward zero, as ``ts / BUCKET_MS`` in SQL)."""
    q = abs(int(ts_ms)) // BUCKET_MS
    return q if ts_ms >= 0 else -q


def hot_clause(dialect: str, alias: str = "") -> str:
    """SQL to put before the other conditions of a statement on ``samples`` (ANDed):
    on SQLite ``bucket IN (<buckets present in the range>) AND ``, whose named parameters
    :func:`hot_params` gives; on PostgreSQL nothing. ``alias``: the table's alias in the
    statement, if any. The statement keeps its own ``ts`` conditions (the buckets only
    bound the minutes)."""
    if dialect != "sqlite":
        return ""
    column = f"{alias}.bucket" if alias else "bucket"
    return f"{column} IN ({PRESENT}) AND "


def hot_params(lo_ms: int | None = None, hi_ms: int | None = None) -> dict[str, Any]:
    """The parameters of :func:`hot_clause` for samples with ``lo_ms <= ts <= hi_ms``
    (Unix ms, inclusive; None: unbounded on that side). Harmless on PostgreSQL."""
    return {"bucket_lo": BUCKET_MIN if lo_ms is None else bucket_of(lo_ms),
            "bucket_hi": BUCKET_MAX if hi_ms is None else bucket_of(hi_ms)}


def present_buckets(cursor: Any, lo_ms: int | None, hi_ms: int | None) -> list[int]:
    """SQLite: the buckets stored for ``lo_ms <= ts <= hi_ms`` (Unix ms, inclusive; None:
    unbounded), ascending, through a DB-API ``cursor`` (sqlite3): for a reader that runs one
    statement per series with the list bound (``bucket IN (?, ...)``), so that the loose
    scan runs once, not once per series."""
    cursor.execute(PRESENT, hot_params(lo_ms, hi_ms))
    return [b for (b,) in cursor.fetchall()]


def hot_filter(dialect: str, lo_ms: int | None = None, hi_ms: int | None = None) -> ColumnElement[bool] | TextClause:
    """:func:`hot_clause` as a SQLAlchemy condition with its parameters bound, for
    ``lo_ms <= ts <= hi_ms`` (None: unbounded); always true on PostgreSQL."""
    if dialect != "sqlite":
        return true()
    return text(f"bucket IN ({PRESENT})").bindparams(**hot_params(lo_ms, hi_ms))
