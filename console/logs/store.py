"""LogStore: the one write path into ``log_records`` and its full-text index.

Every insert of log records must go through :meth:`LogStore.insert`, which indexes the new
rows in the same transaction, so a record is searchable as soon as its batch commits
(migration 0011_lperf removed the per-row index triggers that used to do this).

SQLite: the rows go in with the driver's ``executemany``, then one
``INSERT INTO log_records_fts(rowid, line) SELECT id, line FROM log_records WHERE id > ?``
indexes the whole batch. ``id`` is an INTEGER PRIMARY KEY without AUTOINCREMENT, so new
rows get ids above the largest one read at the start of the (single-writer) transaction.
An FTS5 insert per row from a trigger cost ~54 µs per 40-word line; the batched insert
~10 µs (bench/logs_ingest.py, BENCHMARKS.md "Logs").

PostgreSQL: COPY straight into ``log_records`` with ``line_tsv`` computed here, as the
tsvector text form of the line's distinct words (:func:`lexemes`). The server-side
``to_tsvector('simple', regexp_replace(...))`` that the generated column used to run cost
~100 µs per line, most of the ingest time. Search only combines words with AND and
prefixes (console/logs/service.py), so positions are not stored. The tokenisation is the
one the search query uses (:data:`WORD`), so index and query can never disagree.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from sqlalchemy.orm import Session

from console.storage.database import driver_cursor, driver_errors

# Runs of letters and digits; punctuation and "_" separate words (as FTS5's unicode61 and
# console.logs.service.parse_terms).
WORD = re.compile(r"[^\W_]+")
# PostgreSQL rejects lexemes of 2 KiB or more; a word that long is no search word anyway
# (terms are at most 64 characters), its first 500 characters still match a prefix search.
MAX_LEXEME_CHARS = 500
# Every ASCII character that is not a letter or digit ("_" included) -> a space.
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})

LogRow = tuple[int, int, str, str, str, "str | None"]  # (host_id, ts, source, line, labels_json, level)


def lexemes(line: str) -> str:
    """The tsvector text form of ``line``: its distinct lower-cased words, each quoted,
    e.g. ``"GET /a 200"`` -> ``"'get' 'a' '200'"`` (in no particular order; PostgreSQL
    sorts lexemes). Words hold only letters and digits, so no quote or backslash needs
    escaping (https://www.postgresql.org/docs/15/datatype-textsearch.html)."""
    if line.isascii():
        # ASCII: lower-casing never changes what is a letter or digit, and a translate to
        # spaces plus split is ~30 % cheaper than the regular expression.
        words = set(line.lower().translate(_ASCII_SEPARATORS).split())
    else:
        words = {w.lower() for w in WORD.findall(line)}  # as parse_terms: split, then lower
    if not words:
        return ""
    if len(line) > MAX_LEXEME_CHARS:
        words = {w[:MAX_LEXEME_CHARS] for w in words}
    return "'" + "' '".join(words) + "'"


class LogStore:
    """Inserts log records with their full-text index entries, for ``dialect``
    ("sqlite" or "postgresql")."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def insert(self, session: Session, rows: Sequence[LogRow]) -> int:
        """Insert ``rows`` in the session's transaction and index them; returns how many
        were stored. Driver errors are raised as SQLAlchemy's (``OperationalError`` for a
        full disk...); the caller's transaction rolls back."""
        if not rows:
            return 0
        cursor = driver_cursor(session)
        try:
            with driver_errors(session, "insert log_records"):
                if self.dialect == "postgresql":
                    self._copy(cursor, rows)
                else:
                    cursor.execute("SELECT coalesce(max(id), 0) FROM log_records")
                    (last_id,) = cursor.fetchone()
                    cursor.executemany("INSERT INTO log_records (host_id, ts, source, line, labels, level) "
                                       "VALUES (?, ?, ?, ?, ?, ?)", rows)
                    cursor.execute("INSERT INTO log_records_fts (rowid, line) "
                                   "SELECT id, line FROM log_records WHERE id > ?", (last_id,))
        finally:
            cursor.close()
        return len(rows)

    @staticmethod
    def _copy(cursor: Any, rows: Iterable[LogRow]) -> None:  # psycopg cursor
        with cursor.copy("COPY log_records (host_id, ts, source, line, labels, level, line_tsv) "
                         "FROM STDIN") as copy:
            for host_id, ts, source, line, labels, level in rows:
                copy.write_row((host_id, ts, source, line, labels, level, lexemes(line)))
