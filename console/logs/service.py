"""The log service: full-text search with filters and cursor pagination, retention, and
the live-tail frames published after ingest.

Search tokenises the query the way the index tokenises lines: runs of letters and digits
(punctuation and ``_`` separate words, case does not matter). Every word must occur in a
line (AND); a word ending in ``*`` matches as a prefix. Both databases keep a Bloom
filter per group of lines (console/logs/groups.py): the groups that may hold every word
are read newest first and their lines (rows, or the group's packed value,
console/logs/blocks.py) matched word by word (console/logs/words.py), until the page is
full. Lines not in a group yet (above the watermark) are matched the same way.

Results are newest first, ordered by (ts, id) descending; the cursor names the last
(ts, id) returned, so pages are stable while new lines keep arriving.
"""
from __future__ import annotations

import asyncio
import logging
import re2
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import orjson
from sqlalchemy import LargeBinary, and_, delete, func, or_, select, text
from sqlalchemy.orm import Session

from console.errors import InvalidInput
from console.i18n import tx
from console.logs.levels import LEVELS, normalise_level
from console.params import INT64_MAX, ascii_uint
from console.logs import blocks, groups
from console.logs.store import delete_log_records, line_words
from console.logs.words import spaceless
from console.storage.database import Database, execute_dml
from console.storage.models import Host, LogRecord
from console.storage.partitions import LOG_TABLE, drop_partitions_before

log = logging.getLogger(__name__)

# A search word: a run of letters and digits (Unicode L and N). Spelled with \p{..} and run
# by RE2, as the API schema (console/schemas.py) and its validators read it; \w differs
# between Python, Rust and ECMA regexes.
WORD_CHAR = r"[\p{L}\p{N}]"
_TERM = re2.compile(rf"({WORD_CHAR}+)(\*)?")
MAX_TS_MS = 2**53  # timestamps are Unix ms below 2**53 (ingest checks the same)
MAX_TERMS = 16
MAX_TERM_CHARS = 64
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
ROW_OVERHEAD_BYTES = 64  # per record, for row header and index entries in the size estimate
DELETE_CHUNK = 5000  # rows per retention transaction, so ingest is never blocked for long


class LogQueryError(InvalidInput):
    """An unusable search parameter: 400 ``invalid_parameter`` (422 ``invalid_range`` for an
    end before the start), ``details.parameter`` naming it."""

    def __init__(self, parameter: str, message: str, code: str = "invalid_parameter") -> None:
        super().__init__(message, {"parameter": parameter}, code=code)
        self.parameter = parameter
        if code == "invalid_range":
            self.status = 422


@dataclass(frozen=True)
class SearchTerm:
    word: str  # lower-cased run of letters/digits
    prefix: bool = False
    infix: bool = False  # spaceless script (console/logs/words.py): matches any part of a line's word


@dataclass(frozen=True)
class LogQuery:
    """One search. Times are Unix milliseconds (``start_ms`` inclusive, ``end_ms``
    exclusive); ``source`` matches exactly, or as a prefix when it ends with ``*``."""

    terms: tuple[SearchTerm, ...] = ()
    hosts: tuple[str, ...] = ()
    source: str | None = None
    levels: tuple[str, ...] = ()
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = DEFAULT_LIMIT
    cursor: tuple[int, int] | None = None  # (ts, id) of the last record of the previous page


@dataclass
class RetentionResult:
    deleted_by_age: int = 0
    deleted_by_size: int = 0
    partitions_dropped: list[str] = field(default_factory=list)  # PostgreSQL partitions dropped by age
    bytes_before: int = 0


def parse_terms(q: str) -> tuple[SearchTerm, ...]:
    """``"Connection refused*"`` -> (connection, refused*). Raises LogQueryError when the
    text has words but too many or too long ones."""
    terms = []
    words = _TERM.findall(q or "")
    if len(words) > MAX_TERMS:  # repeats count: the limit is on the text, as the API schema states it
        raise LogQueryError("q", tx("at most {most} search words", most=MAX_TERMS))
    for word, star in words:
        if len(word) > MAX_TERM_CHARS:
            raise LogQueryError("q", tx("a search word is longer than {most} characters", most=MAX_TERM_CHARS))
        term = SearchTerm(word.lower(), bool(star), spaceless(word))
        if term not in terms:
            terms.append(term)
    return tuple(terms)


def encode_cursor(ts: int, record_id: int) -> str:
    return f"{ts}_{record_id}"


def parse_query(args: Mapping[str, str], now: float) -> LogQuery:
    """Build a :class:`LogQuery` from API parameters (all strings; missing or empty means
    unset): ``q``, ``host`` (comma-separated names), ``source``, ``level`` (comma-separated,
    any spelling :func:`normalise_level` knows), ``start``/``end`` (Unix seconds, may be
    fractional), ``limit`` (1..1000, default 100), ``cursor`` (from a previous ``next``).
    Raises :class:`LogQueryError`."""
    def number(name: str) -> float | None:
        raw = (args.get(name) or "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise LogQueryError(name, tx("{parameter} must be Unix seconds", parameter=name)) from None
        if not 0 <= value < MAX_TS_MS / 1000:
            raise LogQueryError(name, tx("{parameter} must be non-negative Unix seconds", parameter=name))
        return value

    q = args.get("q") or ""
    if len(q) > 1024:
        raise LogQueryError("q", tx("q is longer than 1024 characters"))
    terms = parse_terms(q)
    if q.strip() and not terms:
        raise LogQueryError("q", tx("q has no word to search for (words are letters and digits)"))
    hosts = tuple(h for h in (s.strip() for s in (args.get("host") or "").split(",")) if h)
    levels = []
    for raw in (s.strip() for s in (args.get("level") or "").split(",")):
        if not raw:
            continue
        level = normalise_level(raw)
        if level is None:
            raise LogQueryError("level", tx("level must be one of {levels}", levels=", ".join(LEVELS)))
        levels.append(level)
    start, end = number("start"), number("end")
    if start is not None and end is not None and end < start:
        raise LogQueryError("end", tx("end is before start"), "invalid_range")
    limit_raw = (args.get("limit") or "").strip()
    if limit_raw:
        limit = ascii_uint(limit_raw, MAX_LIMIT)
        if not limit:
            raise LogQueryError("limit", tx("limit must be an integer from 1 to {most}", most=MAX_LIMIT))
    else:
        limit = DEFAULT_LIMIT
    cursor = None
    cursor_raw = (args.get("cursor") or "").strip()
    if cursor_raw:
        ts_raw, _, id_raw = cursor_raw.partition("_")
        cursor_ts, cursor_id = ascii_uint(ts_raw, MAX_TS_MS - 1), ascii_uint(id_raw, INT64_MAX)
        if cursor_ts is None or cursor_id is None:
            raise LogQueryError("cursor", tx("cursor must be a value from a previous answer's next"))
        cursor = (cursor_ts, cursor_id)
    source = (args.get("source") or "").strip() or None
    if source is not None and len(source) > 1024:
        raise LogQueryError("source", tx("source is longer than 1024 characters"))
    return LogQuery(terms=terms, hosts=hosts, source=source, levels=tuple(dict.fromkeys(levels)),
                    start_ms=None if start is None else int(start * 1000),
                    end_ms=None if end is None else int(end * 1000), limit=limit, cursor=cursor)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class LogService:
    """Search, retention and live frames over ``log_records``.

    ``retention_days`` (0: keep forever) and ``retention_bytes`` (0: no cap; the
    estimate counts UTF-8 bytes of line, source and labels plus
    :data:`ROW_OVERHEAD_BYTES` per record) are enforced by :meth:`enforce_retention`,
    which :meth:`start_retention` runs every ``retention_check_seconds``.
    """

    db: Database
    retention_days: float = 14.0
    retention_bytes: int = 0
    retention_check_seconds: float = 300.0
    clock: Callable[[], float] = time.time
    leads: Callable[[], bool] = lambda: True  # of several consoles on one database, only the leader enforces
    _task: asyncio.Task | None = field(default=None, init=False, repr=False)

    # -- search -------------------------------------------------------------------------
    async def asearch(self, query: LogQuery) -> dict[str, Any]:
        """:meth:`search` on a database reader."""
        return await self.db.query(self.search, query)

    def search(self, session: Session, query: LogQuery) -> dict[str, Any]:
        """Run ``query`` -> ``{"logs": [{"id", "ts", "host", "source", "line", "labels",
        "level"}], "next": cursor | None, "terms": [words searched]}``; ``ts`` in Unix ms."""
        return self._answer(query, self._group_matches(session, query, query.limit + 1))

    @staticmethod
    def _answer(query: LogQuery, rows: Sequence[Any]) -> dict[str, Any]:
        """The API answer for ``rows`` (newest first, up to ``limit + 1``: one more means a
        next page)."""
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        logs = [{"id": r.id, "ts": r.ts, "host": r.name, "source": r.source, "line": r.line,
                 "labels": orjson.loads(r.labels or "{}"), "level": r.level} for r in rows]
        next_cursor = encode_cursor(rows[-1].ts, rows[-1].id) if more and rows else None
        return {"logs": logs, "next": next_cursor, "terms": [t.word for t in query.terms]}

    def count_by_host(self, session: Session, query: LogQuery) -> dict[str, int]:
        """How many lines match ``query`` (its words, hosts, source, levels and
        ``[start_ms, end_ms)``; limit and cursor are ignored), per host name: ``{host: n}``
        for the hosts with at least one. Used by log alert rules (console/alerting)."""
        counts: dict[str, int] = {}
        for row in self._group_matches(session, replace(query, cursor=None), None):
            counts[row.name] = counts.get(row.name, 0) + 1
        return counts

    @staticmethod
    def _filters(query: LogQuery, ts: Any, level: Any) -> list:
        """The host, source, level and time conditions of ``query``, shared by search and
        count; ``ts`` and ``level`` are the columns as the plan wants them compared."""
        lr, hosts = LogRecord.__table__, Host.__table__
        conditions: list = []
        if query.hosts:
            conditions.append(hosts.c.name.in_(query.hosts))
        if query.source:
            if query.source.endswith("*"):
                conditions.append(lr.c.source.like(_escape_like(query.source[:-1]) + "%", escape="\\"))
            else:
                conditions.append(lr.c.source == query.source)
        if query.levels:
            conditions.append(level.in_(query.levels))
        if query.start_ms is not None:
            conditions.append(ts >= query.start_ms)
        if query.end_ms is not None:
            conditions.append(ts < query.end_ms)
        return conditions

    # A page of groups read at once: the first small (a common word fills the page from
    # the newest group or two), doubling up to GROUP_PAGE_MAX (a rare word reads them all).
    GROUP_PAGE_FIRST = 8
    GROUP_PAGE_MAX = 256
    GROUP_LINES_READ = 32  # groups whose lines one statement reads
    GROUP_GAP_IDS = 1024  # a host's groups this close (in ids) are read as one range

    def _group_matches(self, session: Session, query: LogQuery, most: int | None) -> list[Any]:
        """The lines matching ``query`` (words, filters, cursor), newest first,
        the first ``most`` (all when None). The lines above the index watermark are matched
        in :meth:`_unindexed`; below it the groups whose Bloom filter may hold every word
        (and level and exact source) are walked newest ``max_ts`` first, their lines read
        and matched word by word, until no unread group can hold a line newer than the
        ``most``-th found (console/logs/groups.py)."""
        g = groups.GROUPS
        # psycopg prepares a statement run 5 times; PostgreSQL may then use a generic plan,
        # blind to the id and time ranges of the groups, that reads a whole partition.
        if self.db.dialect == "postgresql":
            session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        upto = groups.watermark(session)
        found = {r.id: r for r in self._unindexed(session, query, upto, most)}
        since = groups.ngrams_from(session) if any(t.infix for t in query.terms) else 0
        conditions = [g.c.last_record_id <= upto,
                      *groups.group_conditions(query.terms, query.levels, query.source, self.db.dialect, since)]
        if query.hosts:
            conditions.append(g.c.host_id.in_(select(Host.__table__.c.id).where(Host.__table__.c.name.in_(query.hosts))))
        if query.start_ms is not None:
            conditions.append(g.c.max_ts >= query.start_ms)
        if query.end_ms is not None:
            conditions.append(g.c.min_ts < query.end_ms)
        if query.cursor is not None:
            conditions.append(g.c.min_ts <= query.cursor[0])
        page, after = self.GROUP_PAGE_FIRST, None
        while True:
            where = list(conditions)
            if after is not None:
                where.append(or_(g.c.max_ts < after[0], and_(g.c.max_ts == after[0], g.c.id < after[1])))
            batch = session.execute(
                select(g.c.id, g.c.host_id, g.c.first_record_id, g.c.last_record_id, g.c.min_ts, g.c.max_ts)
                .where(*where).order_by(g.c.max_ts.desc(), g.c.id.desc()).limit(page)).all()
            for start in range(0, len(batch), self.GROUP_LINES_READ):
                chosen = batch[start:start + self.GROUP_LINES_READ]
                if most is not None and len(found) >= most:
                    # only a group holding a line newer than the most-th found may add one
                    nth = sorted(found.values(), key=lambda r: (r.ts, r.id), reverse=True)[most - 1]
                    chosen = [grp for grp in chosen if grp.max_ts >= nth.ts]
                    if not chosen:  # nor any later group: they are older still
                        return sorted(found.values(), key=lambda r: (r.ts, r.id), reverse=True)[:most]
                for row in self._group_lines(session, query, chosen, most, list(found.values())):
                    found[row.id] = row
            if len(batch) < page:
                break
            after = (batch[-1].max_ts, batch[-1].id)
            page = min(page * 2, self.GROUP_PAGE_MAX)
        rows = sorted(found.values(), key=lambda r: (r.ts, r.id), reverse=True)
        return rows if most is None else rows[:most]

    def _group_lines(self, session: Session, query: LogQuery, chosen: Sequence[Any], most: int | None,
                     before: Sequence[Any] = ()) -> list[Any]:
        """The newest ``most`` (all when None) lines of the groups ``chosen`` that match
        ``query``, newest first: a packed group's from its packed value
        (:meth:`_packed_lines`), the others' rows read by id range and host (the time range
        bounds the partitions read), those without the terms' letters dropped by the
        server, the rest matched word by word."""
        g = groups.GROUPS
        packed = session.execute(select(g.c.id, g.c.host_id, g.c.first_record_id, g.c.max_ts, g.c.packed).where(
            g.c.id.in_([grp.id for grp in chosen]), g.c.packed.is_not(None))
            .order_by(g.c.max_ts.desc(), g.c.id.desc())).all()
        if not packed:
            return self._row_lines(session, query, chosen, most)
        names = dict(session.execute(select(Host.__table__.c.id, Host.__table__.c.name).where(
            Host.__table__.c.id.in_({p.host_id for p in packed}))).all())
        found = {r.id: r for r in self._packed_lines(query, packed, names, most, before)}
        rows_of = {p.id for p in packed}
        unpacked = [grp for grp in chosen if grp.id not in rows_of]
        if unpacked:
            found.update((r.id, r) for r in self._row_lines(session, query, unpacked, most))
        rows = sorted(found.values(), key=lambda r: (r.ts, r.id), reverse=True)
        return rows if most is None else rows[:most]

    def _packed_lines(self, query: LogQuery, packed: Sequence[Any], names: Mapping[int, str],
                      most: int | None, before: Sequence[Any] = ()) -> list[Any]:
        """The lines of the packed groups ``packed`` (rows of id, host_id, first_record_id,
        max_ts, packed; newest ``max_ts`` first) that match ``query``'s words, source,
        levels, time range and cursor (the conditions :meth:`_filters` and the cursor put on
        rows; the host filter chose the groups), in no particular order: at least the
        newest ``most`` of them (all when None). A group is decompressed only while it may
        hold a line newer than the ``most``-th found, counting the lines ``before`` (found
        in earlier groups): a common word reads one, a level in 1 % of lines the ~40 groups
        that hold 100 of them (not the whole batch of groups read at once)."""
        terms = query.terms
        ascii_words = [t.word for t in terms if t.word.isascii()]
        source, levels = query.source, set(query.levels)
        start = query.start_ms if query.start_ms is not None else -1
        end = query.end_ms if query.end_ms is not None else MAX_TS_MS
        cursor = query.cursor

        def wanted(ts: int, rid: int, src: str, line: str, level: str | None) -> bool:
            if not start <= ts < end:
                return False
            if cursor is not None and not (ts < cursor[0] or (ts == cursor[0] and rid < cursor[1])):
                return False
            if levels and level not in levels:
                return False
            if source is not None and not (src.startswith(source[:-1]) if source.endswith("*") else src == source):
                return False
            if terms:
                if line.isascii():  # as the server's ILIKE on rows: the letters first, in C
                    lower = line.lower()
                    if not all(w in lower for w in ascii_words):
                        return False
                return self._words_match(terms, line)
            return True

        plain = not (terms or levels or source is not None or query.start_ms is not None
                     or query.end_ms is not None or cursor is not None)
        found: list[Any] = []
        for grp in packed:
            if most is not None and len(found) + len(before) >= most:
                nth = sorted((*found, *before), key=lambda r: (r.ts, r.id), reverse=True)[most - 1]
                if grp.max_ts < nth.ts:  # and every later group: they end earlier still
                    break
            found.extend(blocks.unpack(grp.first_record_id, names.get(grp.host_id, ""), grp.packed,
                                       None if plain else wanted, ascii_words, levels or None))
        return found

    def _row_lines(self, session: Session, query: LogQuery, chosen: Sequence[Any], most: int | None) -> list[Any]:
        """:meth:`_group_lines` for groups whose lines are rows."""
        lr, hosts = LogRecord.__table__, Host.__table__
        # A host's groups close together read as one id range: fewer arms for the server to
        # test every row against, and a group between them that cannot match (its filter
        # said so) holds no matching line, so reading it changes no answer.
        ranges: list[list[int]] = []
        for grp in sorted(chosen, key=lambda grp: (grp.host_id, grp.first_record_id)):
            if ranges and ranges[-1][0] == grp.host_id and grp.first_record_id - ranges[-1][2] <= self.GROUP_GAP_IDS:
                ranges[-1][2] = max(ranges[-1][2], grp.last_record_id)
            else:
                ranges.append([grp.host_id, grp.first_record_id, grp.last_record_id])
        # SQLite would rather walk the ts index (to skip the sort) than read the id ranges
        # (rowid ranges): "+ 0" hides it. PostgreSQL's ts bounds pick the partitions.
        ts = lr.c.ts if self.db.dialect == "postgresql" else lr.c.ts + 0
        conditions = [or_(*(and_(lr.c.host_id == host_id, lr.c.id.between(first, last))
                            for host_id, first, last in ranges)),
                      ts.between(min(grp.min_ts for grp in chosen), max(grp.max_ts for grp in chosen)),
                      *self._filters(query, ts, lr.c.level), *self._letters_filter(query.terms)]
        if query.cursor is not None:
            cursor_ts, rid = query.cursor
            conditions.append(or_(ts < cursor_ts, and_(ts == cursor_ts, lr.c.id < rid)))
        stmt = (select(lr.c.id, lr.c.ts, hosts.c.name, lr.c.source, lr.c.line, lr.c.labels, lr.c.level)
                .select_from(lr.join(hosts, hosts.c.id == lr.c.host_id)).where(*conditions)
                .order_by(ts.desc(), lr.c.id.desc()))
        return self._matching(session, stmt, query.terms, most)

    def _letters_filter(self, terms: Sequence[SearchTerm]) -> list:
        """Conditions a line holding every ASCII term passes: the term's letters somewhere
        in it, case-insensitive (SQLite's LIKE is ASCII case-insensitive, PostgreSQL's
        ILIKE), tested in C before the exact match of :meth:`_words_match`. A line with a
        character that is not ASCII passes anyway (a non-ASCII letter may lower-case to an
        ASCII one). Terms are letters and digits only, so nothing needs escaping."""
        lr = LogRecord.__table__
        if self.db.dialect == "postgresql":
            not_ascii = func.char_length(lr.c.line) != func.octet_length(lr.c.line)
            return [or_(lr.c.line.ilike(f"%{t.word}%"), not_ascii) for t in terms if t.word.isascii()]
        not_ascii = func.length(lr.c.line) != func.length(func.cast(lr.c.line, LargeBinary()))  # chars != bytes
        return [or_(lr.c.line.like(f"%{t.word}%"), not_ascii) for t in terms if t.word.isascii()]

    def _matching(self, session: Session, stmt: Any, terms: Sequence[SearchTerm], most: int | None) -> list[Any]:
        """The rows of ``stmt`` (newest first) whose line holds every term, the first
        ``most`` of them (all when None)."""
        if not terms and most is not None:  # every row matches: the server need send no more
            stmt = stmt.limit(most)
        found = []
        for row in session.execute(stmt):
            if self._words_match(terms, row.line):
                found.append(row)
                if most is not None and len(found) >= most:
                    break
        return found

    @staticmethod
    def _words_match(terms: Sequence[SearchTerm], line: str) -> bool:
        """Every term is a word of ``line`` (a prefix term: the start of one; a spaceless
        term: any part of one), with the index's tokenisation (console/logs/words.py)."""
        words = line_words(line)
        return all(any(t.word in w for w in words) if t.infix
                   else any(w.startswith(t.word) for w in words) if t.prefix else t.word in words for t in terms)

    def _unindexed(self, session: Session, query: LogQuery, watermark: int, most: int | None = None) -> list[Any]:
        """The lines above ``watermark`` that match ``query`` (words, filters, cursor),
        newest first, the first ``most`` of them (all when None), matched here with the
        index's tokenisation (console/logs/store.py line_words). The log indexer keeps
        them to about LogIndexer.MAX_BEHIND lines."""
        lr, hosts = LogRecord.__table__, Host.__table__
        # Only the id range may lead the plan: "+ 0" and "|| ''" hide the ts, (host_id, ts)
        # and (level, ts) indexes, which would walk every line of the host, level or time
        # range (20 ms for 200,000 lines) to find the few above the watermark.
        ts = lr.c.ts + 0
        conditions = [lr.c.id > watermark, *self._filters(query, ts, lr.c.level.concat(""))]
        if query.cursor is not None:
            cursor_ts, rid = query.cursor
            conditions.append(or_(ts < cursor_ts, and_(ts == cursor_ts, lr.c.id < rid)))
        # An ASCII line holding a word holds its letters: SQLite's LIKE (ASCII
        # case-insensitive, in C) drops most other lines before the exact test below (~7 µs
        # a line in Python; 100,000 lines in 20-75 ms instead of 700). A line with any other
        # character goes to the exact test anyway (a non-ASCII letter may lower-case to an
        # ASCII one). Terms are letters and digits only, so nothing needs escaping.
        conditions.extend(self._letters_filter(query.terms))
        stmt = (select(lr.c.id, lr.c.ts, hosts.c.name, lr.c.source, lr.c.line, lr.c.labels, lr.c.level)
                .select_from(lr.join(hosts, hosts.c.id == lr.c.host_id + 0)).where(*conditions)
                .order_by(ts.desc(), lr.c.id.desc()))
        return self._matching(session, stmt, query.terms, most)

    # -- retention ----------------------------------------------------------------------
    def _size_expr(self, lr: Any) -> Any:
        if self.db.dialect == "postgresql":
            size = func.octet_length(lr.c.line) + func.octet_length(lr.c.source) + func.octet_length(lr.c.labels)
        else:
            size = (func.length(func.cast(lr.c.line, LargeBinary())) + func.length(func.cast(lr.c.source, LargeBinary()))
                    + func.length(func.cast(lr.c.labels, LargeBinary())))
        return size + ROW_OVERHEAD_BYTES

    def stored_bytes(self, session: Session) -> int:
        """Estimated bytes of all stored log records (see the class docstring), packed lines
        (console/logs/blocks.py) counted as if they were rows."""
        lr = LogRecord.__table__
        rows = int(session.execute(select(func.coalesce(func.sum(self._size_expr(lr)), 0))).scalar_one())
        g = groups.GROUPS
        packed = select(func.coalesce(func.sum(g.c.packed_bytes + g.c.lines * ROW_OVERHEAD_BYTES), 0)).where(
            g.c.packed.is_not(None), g.c.rows_kept.is_(False))  # kept rows are counted as rows
        return rows + int(session.execute(packed).scalar_one())

    def _oldest_packed_until(self, session: Session, excess: int) -> tuple[int, int]:
        """When the oldest line is packed, delete the oldest packed groups (whole)
        until ``excess`` bytes (as :meth:`stored_bytes` counts them) are freed, at most
        :data:`DELETE_CHUNK` lines' worth; returns ``(lines deleted, bytes freed)``, (0, 0)
        when the oldest line is a row."""
        g = groups.GROUPS
        oldest_row = session.execute(select(func.min(LogRecord.__table__.c.ts))).scalar()
        packed = and_(g.c.packed.is_not(None), g.c.rows_kept.is_(False))
        candidates = session.execute(
            select(g.c.id, g.c.min_ts, g.c.lines, g.c.packed_bytes + g.c.lines * ROW_OVERHEAD_BYTES)
            .where(packed).order_by(g.c.max_ts, g.c.id).limit(DELETE_CHUNK // groups.GROUP_LINES + 1)).all()
        ids, lines, freed = [], 0, 0
        for group_id, min_ts, n, size in candidates:
            if freed >= excess or (oldest_row is not None and min_ts > oldest_row):
                break
            ids.append(group_id)
            lines += n
            freed += int(size)
        if ids:
            execute_dml(session, delete(g).where(g.c.id.in_(ids)))
        return lines, freed

    def enforce_retention(self) -> RetentionResult:
        """Delete records older than ``retention_days``, then the oldest records until the
        estimate is at most 95% of ``retention_bytes`` (hysteresis, so the next check does
        not delete again at once). Blocking; runs its own short transactions of at most
        :data:`DELETE_CHUNK` rows. Run it on the writer thread."""
        lr = LogRecord.__table__
        result = RetentionResult()
        if self.retention_days > 0:
            cutoff = int((self.clock() - self.retention_days * 86400) * 1000)
            # PostgreSQL: whole partitions first; rows then only in the one straddling the cutoff
            for dropped in drop_partitions_before(self.db, LOG_TABLE, cutoff):
                result.partitions_dropped.append(dropped.partition.name)
                result.deleted_by_age += dropped.rows
            if result.partitions_dropped:  # their lines' groups (row deletes prune them themselves)
                self.db.run(groups.prune_groups)
            while True:
                n = self.db.run(self._delete_chunk, select(lr.c.id).where(lr.c.ts < cutoff)
                                .order_by(lr.c.ts).limit(DELETE_CHUNK))
                result.deleted_by_age += n
                if n < DELETE_CHUNK:
                    break
            # and the packed lines older than the cutoff
            result.deleted_by_age += self.db.run(groups.delete_packed_before, cutoff)
        if self.retention_bytes > 0:
            total = result.bytes_before = self.db.run(self.stored_bytes)
            excess = total - int(self.retention_bytes * 0.95) if total > self.retention_bytes else 0
            while excess > 0:
                lines, freed = self.db.run(self._oldest_packed_until, excess)
                if lines:
                    result.deleted_by_size += lines
                    excess -= freed
                    continue
                ids, freed = self.db.run(self._oldest_until, excess)
                if not ids:
                    break
                result.deleted_by_size += self.db.run(self._delete_ids, ids)
                excess -= freed
        if result.deleted_by_age or result.deleted_by_size or result.partitions_dropped:
            log.info("log retention: dropped %d partition(s) and deleted %d record(s) older than %g days, "
                     "deleted %d over the %d-byte cap", len(result.partitions_dropped), result.deleted_by_age,
                     self.retention_days, result.deleted_by_size, self.retention_bytes)
        return result

    def _delete_chunk(self, session: Session, ids_select: Any) -> int:
        ids = list(session.execute(ids_select).scalars())
        return self._delete_ids(session, ids)

    def _delete_ids(self, session: Session, ids: list[int]) -> int:
        if not ids:
            return 0
        lr = LogRecord.__table__
        delete_log_records(session, lr.c.id.in_(ids))
        return len(ids)

    def _oldest_until(self, session: Session, excess: int) -> tuple[list[int], int]:
        lr = LogRecord.__table__
        rows = session.execute(select(lr.c.id, self._size_expr(lr)).order_by(lr.c.ts, lr.c.id)
                               .limit(DELETE_CHUNK)).all()
        ids, freed = [], 0
        for rid, size in rows:
            if freed >= excess:
                break
            ids.append(rid)
            freed += int(size)
        return ids, freed

    def start_retention(self) -> None:
        """Run :meth:`enforce_retention` on the writer thread every
        ``retention_check_seconds``, starting one period from now, on the running asyncio
        loop (the task ends with the loop). Does nothing when retention is off."""
        if self._task is not None or (self.retention_days <= 0 and self.retention_bytes <= 0):
            return
        self._task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retention_check_seconds)
            try:
                if self.leads():  # one console of several enforces it
                    await self.db.on_writer(self.enforce_retention)
            except Exception:  # noqa: BLE001 - a failed run is retried next period
                log.exception("log retention failed; retrying in %gs", self.retention_check_seconds)

    # -- live ---------------------------------------------------------------------------
    @staticmethod
    def live_frame(host: str, records: list[Any]) -> dict[str, Any]:
        """The ``logs:HOST`` frame for committed ingest records (``LogIn`` objects):
        ``{"host", "logs": [{"ts", "source", "line", "labels", "level"}]}``."""
        return {"host": host, "logs": [
            {"ts": r.ts, "source": r.source, "line": r.line, "labels": orjson.loads(r.labels_json),
             "level": r.level} for r in records]}

