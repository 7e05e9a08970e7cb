"""LogStore: the one write path into ``log_records`` and its full-text index.

Every insert of log records must go through :meth:`LogStore.insert` and every delete
through :func:`delete_log_records`, which keep the full-text index in step (migration
0011_lperf removed the per-row index triggers that used to do this). A record is
searchable as soon as its batch commits.

SQLite: the rows go in with the driver's ``executemany``; the FTS5 index lives in a file
of its own (console/storage/logsearch.py) and is filled from the committed rows by
:class:`console.logs.indexer.LogIndexer` on another thread, so the ingest transaction
does not wait for it (the writer thread spends ~6 µs per realistic line instead of ~15;
BENCHMARKS.md "Logs"). Search scans the rows the index has not reached yet, so a record
is searchable as soon as its batch commits. Without a running indexer (an in-memory
database, or a store nobody started) the rows are indexed in the ingest transaction.
``id`` is an INTEGER PRIMARY KEY without AUTOINCREMENT: new rows get ids above both the
largest stored id and the index watermark, so an id the index ever held (retention may
leave an entry of a deleted row behind after a crash) is never given to another line.

PostgreSQL: COPY straight into ``log_records``, nothing else; the search index is one
Bloom filter per group of lines (console/logs/groups.py), filled from committed rows by
:class:`console.logs.groups.GroupIndexer` on another thread under the same contract (a
watermark, search scans the lines above it, ingest waits when it lags too far). Without a
running indexer the batch's lines are grouped in the ingest transaction. Groups older
than the indexer's hot window are packed (console/logs/blocks.py): their lines leave
``log_records`` for the group row. (Until migration
loggroup_0001 each row carried ``line_tsv``, its words as a tsvector behind a GIN index:
~33 µs of server CPU per line; :func:`lexemes` still builds it for that migration's
downgrade.)
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from console.logs.groups import GroupIndexer, delete_host_groups, index_groups, prune_groups
from console.logs.indexer import LogIndexer
from console.logs.words import MAX_LEXEME_CHARS, WORD, line_words
from console.storage.database import Database, driver_cursor, driver_errors, execute_dml
from console.storage.logsearch import STATE_TABLE, index_rows, indexed_id, unindex_rows
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
    """Inserts log records with their full-text index entries into ``db`` (SQLite or
    PostgreSQL). On SQLite :meth:`start` runs the background indexer."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.dialect
        self.newest_id = 0  # the newest id of the last insert (used on the writer thread only)
        self.indexer: LogIndexer | None = None
        if self.dialect == "postgresql":
            self.indexer = GroupIndexer(db)
        elif self.dialect == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
            self.indexer = LogIndexer(db)

    def start(self) -> None:
        """Index committed rows on a thread from now on (SQLite: into the FTS5 file;
        PostgreSQL: as groups), and catch up on rows a previous run committed but did not
        index."""
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
                watermark = indexed_id(cursor)
                sql = "INSERT INTO log_records (host_id, ts, source, line, labels, level) VALUES (?, ?, ?, ?, ?, ?)"
                if watermark > last_id:  # the newest rows were deleted: never reuse an id the index held
                    cursor.execute("INSERT INTO log_records (id, host_id, ts, source, line, labels, level) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)", (watermark + 1, *rows[0]))
                    cursor.executemany(sql, rows[1:])
                    newest = watermark + len(rows)
                else:
                    cursor.executemany(sql, rows)
                    newest = last_id + len(rows)
                if self.indexer is None or not self.indexer.running:
                    index_rows(cursor, watermark, newest)
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
    """Delete every log line of host ``host_id`` (rows and, on PostgreSQL, packed groups,
    console/logs/blocks.py) in the session's transaction; returns how many lines."""
    deleted = delete_log_records(session, LogRecord.__table__.c.host_id == host_id)
    if session.get_bind().dialect.name == "postgresql":
        deleted += delete_host_groups(session, host_id)
    return deleted


def delete_log_records(session: Session, condition: Any) -> int:
    """Delete the ``log_records`` rows matching ``condition`` (a SQLAlchemy condition on
    the table) in the session's transaction, with their search index entries; returns how
    many rows were deleted.

    SQLite: the contentless index needs each indexed line's text to remove it, so the
    rows at or below the watermark are read first. The index file's write lock is taken
    before anything of it is read, so the indexer cannot move the watermark meanwhile. The
    transaction spans both files; SQLite commits the main file first (``vdbeCommit``: WAL
    files commit one by one, in attach order), so a crash between the two leaves index
    entries of deleted rows, never deleted entries of kept rows; search joins the index
    with the rows, and :meth:`LogStore.insert` never reuses their ids."""
    lr = LogRecord.__table__
    if session.get_bind().dialect.name != "sqlite":
        deleted = execute_dml(session, delete(lr).where(condition)).rowcount
        prune_groups(session)
        return deleted
    session.execute(text(f"UPDATE {STATE_TABLE} SET indexed_id = indexed_id"))  # the lock, first
    watermark = session.execute(text(f"SELECT indexed_id FROM {STATE_TABLE}")).scalar_one()
    indexed = [(r.id, r.line) for r in session.execute(select(lr.c.id, lr.c.line).where(condition, lr.c.id <= watermark))]
    deleted = execute_dml(session, delete(lr).where(condition)).rowcount
    if indexed:
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, "delete log_fts"):
                unindex_rows(cursor, indexed)
        finally:
            cursor.close()
    return deleted
