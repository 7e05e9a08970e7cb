"""LogStore: the one write path into ``log_records`` and its search index.

Every insert of log records must go through :meth:`LogStore.insert` and every delete
through :func:`delete_log_records` / :func:`delete_host_logs`, which keep the search index
in step. A record is searchable as soon as its batch commits.

The rows go in alone (SQLite: the driver's ``executemany``; PostgreSQL: COPY); the search
index is one Bloom filter per group of lines (console/logs/groups.py), filled from the
committed rows by :class:`console.logs.groups.GroupIndexer` on another thread (a
watermark, search scans the lines above it, ingest waits when it lags too far;
console/logs/indexer.py). Without a running indexer (an in-memory database, or a store
nobody started) the batch's lines are grouped in the ingest transaction. Groups older than
the indexer's hot window are packed (console/logs/blocks.py): their lines leave
``log_records`` for the group row.

SQLite: ``id`` is an INTEGER PRIMARY KEY without AUTOINCREMENT: new rows get ids above
both the largest stored id and the index watermark, so an id a group holds (its rows
packed and deleted) is never given to another line. (Until migration logsqlite_0001 SQLite
kept an FTS5 index in ``<database>.logsearch``; until loggroup_0001 each PostgreSQL row
carried ``line_tsv``, its words as a tsvector behind a GIN index: ~33 µs of server CPU per
line; :func:`lexemes` still builds it for that migration's downgrade.)
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from console.logs.groups import (GroupIndexer, delete_host_groups, index_groups, prune_groups, sqlite_index_groups,
                                 sqlite_watermark)
from console.logs.indexer import LogIndexer
from console.logs.words import MAX_LEXEME_CHARS, WORD, line_words
from console.storage.database import Database, driver_cursor, driver_errors, execute_dml
from console.storage.models import LogRecord

__all__ = ["MAX_LEXEME_CHARS", "WORD", "LogRow", "LogStore", "delete_host_logs", "delete_log_records", "lexemes", "line_words"]

LogRow = tuple[int, int, str, str, str, "str | None"]  # (host_id, ts, source, line, labels_json, level)


def lexemes(line: str) -> str:
    """The tsvector text form of ``line``: its distinct lower-cased words, each quoted,
    e.g. ``"GET /a 200"`` -> ``"'get' 'a' '200'"`` (in no particular order; PostgreSQL
    sorts lexemes). Words hold only letters and digits, so no quote or backslash needs
    escaping (https://www.postgresql.org/docs/15/datatype-textsearch.html)."""
    words = line_words(line)
    if not words:
        return ""
    if len(line) > MAX_LEXEME_CHARS:
        words = {w[:MAX_LEXEME_CHARS] for w in words}
    return "'" + "' '".join(words) + "'"


class LogStore:
    """Inserts log records into ``db`` (SQLite or PostgreSQL); :meth:`start` runs the
    background group indexer (not for an in-memory SQLite database, whose lines are
    grouped as they are inserted)."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.dialect
        self.newest_id = 0  # the newest id of the last insert (used on the writer thread only)
        self.indexer: LogIndexer | None = None
        if self.dialect == "postgresql" or db.engine.url.database not in (None, "", ":memory:"):
            self.indexer = GroupIndexer(db)

    def start(self) -> None:
        """Group committed rows on a thread from now on, and catch up on rows a previous
        run committed but did not group."""
        if self.indexer is not None:
            self.indexer.start()

    def close(self) -> None:
        if self.indexer is not None:
            self.indexer.close()

    def before_insert(self) -> None:
        """Call before the transaction that inserts: waits while the index lags too far
        (see :meth:`LogIndexer.wait_until_near`)."""
        if self.indexer is not None and self.indexer.running:
            self.indexer.wait_until_near()

    def committed(self, newest_id: int) -> None:
        """Call after the commit of an :meth:`insert` with the :attr:`newest_id` it left."""
        if self.indexer is not None and newest_id:
            self.indexer.committed(newest_id)

    def insert(self, session: Session, rows: Sequence[LogRow]) -> int:
        """Insert ``rows`` in the session's transaction (without a running indexer, index
        them in it too); returns how many were stored. :attr:`newest_id` is then the newest
        id inserted (pass it to :meth:`committed` after the commit). Driver errors are raised as SQLAlchemy's
        (``OperationalError`` for a full disk...); the caller's transaction rolls back."""
        if not rows:
            return 0
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, "insert log_records"):
                if self.dialect == "postgresql":
                    self._copy(cursor, rows)
                    (newest,) = cursor.execute("SELECT lastval()").fetchone()  # the COPY's last id
                    if self.indexer is None or not self.indexer.running:
                        # Lines another transaction holds uncommitted below these would be
                        # skipped: only a store nobody started (tests, bench set-up) gets here.
                        index_groups(cursor, newest, 2**31)
                    self.newest_id = newest
                    return len(rows)
                (last_id,) = cursor.execute("SELECT coalesce(max(id), 0) FROM log_records").fetchone()
                watermark = sqlite_watermark(cursor)
                sql = "INSERT INTO log_records (host_id, ts, source, line, labels, level) VALUES (?, ?, ?, ?, ?, ?)"
                if watermark > last_id:  # the newest rows were deleted or packed: never reuse a group's id
                    cursor.execute("INSERT INTO log_records (id, host_id, ts, source, line, labels, level) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (watermark + 1, *rows[0]))
                    cursor.executemany(sql, rows[1:])
                    newest = watermark + len(rows)
                else:
                    cursor.executemany(sql, rows)
                    newest = last_id + len(rows)
                if self.indexer is None or not self.indexer.running:
                    sqlite_index_groups(cursor)
        finally:
            cursor.close()
        self.newest_id = newest
        return len(rows)

    @staticmethod
    def _copy(cursor: Any, rows: Iterable[LogRow]) -> None:  # psycopg cursor
        with cursor.copy("COPY log_records (host_id, ts, source, line, labels, level) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def delete_host_logs(session: Session, host_id: int) -> int:
    """Delete every log line of host ``host_id`` (rows and packed groups,
    console/logs/blocks.py) in the session's transaction; returns how many lines."""
    deleted = delete_log_records(session, LogRecord.__table__.c.host_id == host_id)
    return deleted + delete_host_groups(session, host_id)


def delete_log_records(session: Session, condition: Any) -> int:
    """Delete the ``log_records`` rows matching ``condition`` (a SQLAlchemy condition on
    the table) in the session's transaction, and the unpacked groups older than every
    line left (:func:`console.logs.groups.prune_groups`); returns how many rows were
    deleted. A group whose rows were deleted in part keeps its filter (a superset)."""
    deleted = execute_dml(session, delete(LogRecord.__table__).where(condition)).rowcount
    prune_groups(session)
    return deleted
