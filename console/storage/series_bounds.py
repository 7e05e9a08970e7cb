"""Recompute every series' first and last sample time (``series.first_ts``/``last_ts``,
Unix ms) from what is stored in every tier: raw samples, cold blocks (a block's window
start bounds its first sample from below) and rollups, packed or not (a bucket's end
bounds its last sample from above). The ingest writer keeps both as it stores samples
(console/ingest/service.py); this is for rows written around it, such as a benchmark's
bulk load. docs/metrics.md, "Series lifecycle"."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

_BOUND = (
    "SELECT {agg}(t.b) FROM ("
    "SELECT {raw} "
    "UNION ALL SELECT {agg}({block}) FROM sample_blocks WHERE series_id = series.id "
    "UNION ALL SELECT {agg}(ts{m}) FROM rollup_1m WHERE series_id = series.id "
    "UNION ALL SELECT {agg}({block}{m}) FROM rollup_1m_blocks WHERE series_id = series.id "
    "UNION ALL SELECT {agg}(ts{h}) FROM rollup_1h WHERE series_id = series.id) AS t")
_RAW = "{agg}(ts) AS b FROM samples WHERE series_id = series.id"
# SQLite clusters samples by minute (console/storage/hot_samples.py): one pass over them
# grouped by series, looked up per series, instead of a scan of the table per series.
_RAW_SQLITE = "{pick} AS b FROM hot WHERE hot.series_id = series.id"


def _refresh(raw: str) -> str:
    return ("UPDATE series SET first_ts = (" + _BOUND.format(agg="min", block="start_ts", m="", h="",
                                                             raw=raw.format(agg="min", pick="lo"))
            + "), last_ts = (" + _BOUND.format(agg="max", block="end_ts", m=" + 59999", h=" + 3599999",
                                              raw=raw.format(agg="max", pick="hi")) + ")")


REFRESH_SQL = _refresh(_RAW)
REFRESH_SQL_SQLITE = ("WITH hot(series_id, lo, hi) AS MATERIALIZED (SELECT series_id, MIN(ts), MAX(ts) FROM samples "
                      "GROUP BY series_id) " + _refresh(_RAW_SQLITE))


def refresh_series_bounds(conn: Connection | Session) -> None:
    """Set ``first_ts``/``last_ts`` of every series from the stored tiers (NULL: none)."""
    sqlite = (conn.get_bind() if isinstance(conn, Session) else conn).dialect.name == "sqlite"
    conn.execute(text(REFRESH_SQL_SQLITE if sqlite else REFRESH_SQL))
