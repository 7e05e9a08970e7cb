"""The SQLite log search index file: ``<database>.logsearch``, attached as ``logsearch``.

The FTS5 index of log lines lives in a database file of its own so that filling it takes
that file's write lock, not the main file's: ingest commits log rows into ``log_records``
while :class:`console.logs.indexer.LogIndexer` indexes committed rows on another thread
(sqlite3 releases the GIL while a statement steps, so both use a core). The file holds:

- ``log_fts``: a contentless FTS5 table (``content=''``,
  https://sqlite.org/fts5.html#contentless_tables) whose rowids are ``log_records.id``,
  tokenised as migration 0004_logs did (unicode61, no diacritics folding), without the
  per-row column sizes (``columnsize=0``: only ranking functions read them, search does
  not rank; ~1.5 µs less per line);
- ``log_fts_state``: one row, ``indexed_id``, the id up to which every ``log_records`` row
  is in ``log_fts`` (the watermark). Rows above it are found by scanning them
  (console/logs/service.py), so a line is searchable as soon as its batch commits.

The file is created (empty index, watermark 0) when a connection finds it missing, and the
indexer then indexes every stored row: deleting it is a safe way to rebuild the index.
The watermark and the index entries change in one transaction of this file, so a crash
never leaves one without the other. PostgreSQL keeps its ``line_tsv`` column instead.
"""
from __future__ import annotations

from typing import Any

SCHEMA = "logsearch"
FTS_TABLE = f"{SCHEMA}.log_fts"
STATE_TABLE = f"{SCHEMA}.log_fts_state"
# FTS5 merges segments once 16 of a level exist instead of 4: each indexing pass writes one
# segment (migration 0012_fts_automerge measured 9.1 µs per line against 11.9).
AUTOMERGE = 16
_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
    "line, content='', columnsize=0, tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_id INTEGER NOT NULL)",
    f"INSERT OR IGNORE INTO {STATE_TABLE} (id, indexed_id) VALUES (1, 0)",
)
# FTS5 configuration values are bound like any other value.
_SET_AUTOMERGE = f"INSERT INTO {FTS_TABLE} (log_fts, rank) VALUES ('automerge', ?)"


def search_file(database_path: str) -> str:
    """The index file beside the SQLite database file ``database_path`` (``:memory:`` for
    an in-memory database, which is private to its connection anyway)."""
    return ":memory:" if database_path in ("", ":memory:") else f"{database_path}.logsearch"


def attach(dbapi_conn: Any, database_path: str) -> None:
    """Attach the index file to a new sqlite3 connection and create its tables when they
    are missing (idempotent; several connections may race here)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (search_file(database_path),))
        cur.execute(f"PRAGMA {SCHEMA}.journal_mode=WAL")
        cur.execute(f"PRAGMA {SCHEMA}.synchronous=NORMAL")
        if cur.execute(f"SELECT count(*) FROM {SCHEMA}.sqlite_master WHERE name IN ('log_fts', 'log_fts_state')"
                       ).fetchone()[0] < 2:
            for statement in _DDL:
                cur.execute(statement)
            cur.execute(_SET_AUTOMERGE, (AUTOMERGE,))
            dbapi_conn.commit()
    finally:
        cur.close()


def indexed_id(cursor: Any) -> int:
    """The watermark: every ``log_records`` row with an id up to it is in the index."""
    return int(cursor.execute(f"SELECT indexed_id FROM {STATE_TABLE}").fetchone()[0])


def index_rows(cursor: Any, after: int, upto: int) -> None:
    """Index the ``log_records`` rows with ``after < id <= upto`` and move the watermark to
    ``upto``, in the cursor's transaction. The caller makes sure ``after`` is the
    watermark it read in the same transaction."""
    cursor.execute(f"INSERT INTO {FTS_TABLE} (rowid, line) SELECT id, line FROM main.log_records "
                   "WHERE id > ? AND id <= ?", (after, upto))
    cursor.execute(f"UPDATE {STATE_TABLE} SET indexed_id = ?", (upto,))


def unindex_rows(cursor: Any, rows: list[tuple[int, str]]) -> None:
    """Remove ``(id, line)`` rows from the index: a contentless FTS5 table needs the text
    that was indexed. Only rows at or below the watermark may be given."""
    cursor.executemany(f"INSERT INTO {FTS_TABLE} (log_fts, rowid, line) VALUES ('delete', ?, ?)", rows)
