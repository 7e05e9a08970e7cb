"""PostgreSQL's log search index: one Bloom filter of words per group of lines.

``log_search_groups`` holds, for up to :data:`GROUP_LINES` consecutive lines of one host
(by ``log_records.id``), the id and time range they span and a Bloom filter
(https://doi.org/10.1145/362686.362692) of their tokens: the distinct lower-cased words
(console/logs/words.py ``line_words``, the tokenisation a search uses), each word's first
:data:`PREFIX_CHARS` characters (so a prefix search ``abc*`` can skip groups too), and
the lines' levels and sources. A search (console/logs/service.py) walks the groups newest
first, keeps those whose filter may hold every term, reads their lines and matches each
word by word, and stops once it has the page: a word in most lines reads a few groups,
a rare word the filters of every group in the time range (~26 bytes a line) and the lines
of the few groups that may hold it. This is the token Bloom filter of ClickHouse's
``tokenbf_v1`` skip index and the chunk scan of Loki, beside the rows themselves.

Why not a GIN index (per line, as migration 0004_logs built, or per group): a GIN entry
per distinct word and line costs ~1.3 µs of server CPU per entry, and the realistic
lines of agents hold ~10 tokens found in no other line (hex request ids, UUID parts,
byte counts), so grouping lines collapses only the shared words; a GIN over groups of 256
lines measured ~47 µs of server time and 442 B per line, these filters 26 B per line and
no index to update (BENCHMARKS.md "Logs").

``log_search_state.indexed_id`` is the watermark: every line with an id up to it is in a
group. :class:`GroupIndexer` fills the groups from committed lines on a thread of its own
(the contract of SQLite's console/logs/indexer.py), so the ingest transaction is a COPY of
the rows alone; search scans the lines above the watermark. The groups and the watermark
change in one transaction, so a crash never leaves one without the other.
"""
from __future__ import annotations

import operator
import os
import zlib
from typing import Any, Iterable, Sequence

import numpy as np
from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, Table, and_, cast, delete, func,
                        literal, or_, select, text, true)
from sqlalchemy.orm import Session

from console.logs.indexer import LogIndexer
from console.logs.words import line_words
from console.storage.database import execute_dml

GROUP_LINES = 256  # lines of one host per group at most
PREFIX_CHARS = 3  # a word's first characters, a token of their own (prefix search)
HASHES = 7  # bit positions per token (k); with BITS_PER_TOKEN, ~0.8 % false positives
BITS_PER_TOKEN = 10
_MASK64, _MASK32 = 2**64 - 1, 2**32 - 1
_K = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: mixes the CRC into the second hash
# Token kinds: a word as it is; a prefix, level or source has its CRC XORed with a mark.
_PREFIX, _LEVEL, _SOURCE = 0x5BD1E995, 0x27D4EB2F, 0x165667C5
# Every ASCII byte that is not a letter or digit ("_" included) -> a space (as words.py).
_ASCII_SEPARATOR_BYTES = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))

_meta = MetaData()
# Created by migration loggroup_0001 on PostgreSQL only (SQLite keeps its FTS5 file).
GROUPS = Table("log_search_groups", _meta,
               Column("id", BigInteger, primary_key=True),
               Column("host_id", Integer), Column("first_record_id", BigInteger),
               Column("last_record_id", BigInteger), Column("min_ts", BigInteger), Column("max_ts", BigInteger),
               Column("lines", Integer), Column("bloom", LargeBinary))
STATE = Table("log_search_state", _meta, Column("id", Integer, primary_key=True),
              Column("indexed_id", BigInteger))


def _hashes(token: str, kind: int = 0) -> tuple[int, int]:
    """The two hashes of a search token (a word; with ``kind`` a word prefix, level or
    source) for double hashing (Kirsch and Mitzenmacher 2006): the CRC-32 of its UTF-8
    bytes XOR the kind's mark, and an odd 32-bit mix of that. Bit ``i`` of the token is
    ``((h1 + i * h2) mod 2**32) * m >> 32`` (Lemire's fast range reduction, cheaper than a
    modulo); search computes the same in SQL."""
    h1 = zlib.crc32(token.encode()) ^ kind
    return h1, (((h1 * _K) & _MASK64) >> 32) | 1


def group_hashes(lines: Sequence[str], levels: Iterable[str | None], sources: Iterable[str]) -> np.ndarray:
    """The first hashes (``h1`` of :func:`_hashes`) of the distinct tokens a group's filter
    holds for these lines: each word, each word's first PREFIX_CHARS characters, each
    level and source (see the module docstring)."""
    text_ = " ".join(lines)  # a space separates words: the words of the whole are the union of each line's
    if text_.isascii():
        # The words of line_words, split in C: bytes.translate with a 256-byte table is
        # several times faster than str.translate with a dict.
        words = set(text_.encode("ascii").lower().translate(_ASCII_SEPARATOR_BYTES).split())
        # (a shorter word adds itself as a prefix: no search asks for it, it only costs bits)
        prefixes = set(map(operator.itemgetter(slice(0, PREFIX_CHARS)), words))
    else:  # a prefix of characters, not of bytes
        found = line_words(text_)
        words = {w.encode() for w in found}
        prefixes = {w[:PREFIX_CHARS].encode() for w in found if len(w) >= PREFIX_CHARS}
    hashes = list(map(zlib.crc32, words))
    hashes += [h ^ _PREFIX for h in map(zlib.crc32, prefixes)]
    hashes += [zlib.crc32(level.encode()) ^ _LEVEL for level in set(levels) if level]
    hashes += [zlib.crc32(source.encode()) ^ _SOURCE for source in set(sources)]
    return np.array(hashes, dtype=np.uint64)


def bloom(hashes: np.ndarray) -> bytes:
    """A Bloom filter of the tokens of the distinct first ``hashes``: ``BITS_PER_TOKEN``
    bits a token (a multiple of 64), bit ``n`` in byte ``n // 8`` at ``1 << (n % 8)``
    (PostgreSQL's ``get_bit`` order)."""
    m = max(64, -(-len(hashes) * BITS_PER_TOKEN // 64) * 64)
    h2 = ((hashes * np.uint64(_K)) >> np.uint64(32)) | np.uint64(1)  # uint64 products wrap, as _MASK64
    mixed = (hashes[:, None] + np.arange(HASHES, dtype=np.uint64)[None, :] * h2[:, None]) & np.uint64(_MASK32)
    positions = (mixed * np.uint64(m)) >> np.uint64(32)
    bits = np.zeros(m, dtype=np.uint8)
    bits[positions.ravel()] = 1
    return np.packbits(bits, bitorder="little").tobytes()


def may_hold(token: str, kind: int = 0) -> Any:
    """SQL condition: the group's filter may hold ``token`` (every one of its bits is set)."""
    h1, h2 = _hashes(token, kind)
    bits = func.length(GROUPS.c.bloom) * 8
    return and_(*(func.get_bit(GROUPS.c.bloom, cast(literal((h1 + i * h2) & _MASK32, BigInteger) * bits
                                                    // literal(2**32, BigInteger), Integer)) == 1
                  for i in range(HASHES)))


def group_conditions(terms: Sequence[Any], levels: Sequence[str], source: str | None) -> list:
    """Conditions on ``log_search_groups`` for a search: each term (exact word, or a prefix
    of at least :data:`PREFIX_CHARS` characters) and the level and exact source filters
    may be in the group. A shorter prefix or a source prefix skips no group."""
    conditions = []
    for term in terms:
        if not term.prefix:
            conditions.append(may_hold(term.word))
        elif len(term.word) >= PREFIX_CHARS:
            conditions.append(may_hold(term.word[:PREFIX_CHARS], _PREFIX))
    if levels:
        conditions.append(or_(*(may_hold(level, _LEVEL) for level in levels)))
    if source and not source.endswith("*"):
        conditions.append(may_hold(source, _SOURCE))
    return conditions


# The lines of an indexing pass as groups, built by the server: each host's lines in id
# order, in runs of GROUP_LINES, their text joined by spaces (a separator: the words of the
# whole are the union of each line's). One row per group instead of one per line saves the
# indexer thread ~2 µs of Python per line, the thread ingest shares the GIL with.
_GROUPED = (
    "SELECT host_id, min(id), max(id), min(ts), max(ts), count(*), string_agg(line, ' '), "
    "array_agg(DISTINCT level), array_agg(DISTINCT source) FROM ("
    "SELECT *, (row_number() OVER (PARTITION BY host_id ORDER BY id) - 1) / %s AS run FROM ("
    "SELECT id, host_id, ts, line, level, source FROM log_records WHERE id > %s AND id <= %s ORDER BY id LIMIT %s"
    ") AS picked) AS numbered GROUP BY host_id, run")


def index_groups(cursor: Any, upto: int, most: int) -> tuple[int, int]:
    """In the psycopg cursor's transaction: lock the watermark row, group the lines with
    ``watermark < id <= upto`` (at most ``most`` of them, the oldest ids; each host's in runs
    of at most :data:`GROUP_LINES`), insert their groups and move the watermark past them.
    Returns ``(new watermark, lines grouped)``. The caller makes sure every line up to
    ``upto`` is committed (or is this transaction's)."""
    (after,) = cursor.execute("SELECT indexed_id FROM log_search_state WHERE id = 1 FOR UPDATE").fetchone()
    if upto <= after:
        return after, 0
    grouped = cursor.execute(_GROUPED, (GROUP_LINES, after, upto, most)).fetchall()
    n = sum(g[5] for g in grouped)
    if n == most:
        upto = max(g[2] for g in grouped)
    if grouped:
        with cursor.copy("COPY log_search_groups (host_id, first_record_id, last_record_id, min_ts, max_ts, lines, "
                         "bloom) FROM STDIN") as copy:
            for host_id, first, last, min_ts, max_ts, lines, text_, levels, sources in grouped:
                copy.write_row((host_id, first, last, min_ts, max_ts, lines,
                                bloom(group_hashes([text_], levels, sources))))
    cursor.execute("UPDATE log_search_state SET indexed_id = %s WHERE id = 1", (upto,))
    return upto, n


def watermark(session: Session) -> int:
    """Every line with an id up to this is in a group."""
    return int(session.execute(select(STATE.c.indexed_id).where(STATE.c.id == 1)).scalar_one())


def prune_groups(session: Session) -> int:
    """Delete the groups older than every stored line (retention deleted their lines);
    returns how many. A group retention emptied only in part keeps its filter: a search
    reads its lines, which are the ones left."""
    oldest = session.execute(text("SELECT min(ts) FROM log_records")).scalar()
    condition = GROUPS.c.max_ts < oldest if oldest is not None else true()
    return execute_dml(session, delete(GROUPS).where(condition)).rowcount


class GroupIndexer(LogIndexer):
    """Fills ``log_search_groups`` from committed lines (PostgreSQL), on a thread; the
    waiting and lag contract is :class:`LogIndexer`'s."""

    def _connection(self, raw: Any) -> Any:
        conn = raw.driver_connection
        # named in pg_stat_activity (with the console's pid): the indexer holds its connection
        # while the console runs
        conn.execute("SELECT set_config('application_name', %s, false)", (f"fleetdeck log indexer {os.getpid()}",))
        conn.commit()
        return conn

    def index_pass(self, conn: Any) -> int:
        """Two transactions. The first takes a SHARE lock on ``log_records`` just long
        enough to read the newest id: the lock waits for every inserting transaction, so
        every line up to that id is committed, and one that commits later has a higher id
        (ids come from a sequence in the inserting transaction). Then group up to
        :attr:`PASS_LINES` lines above the watermark, insert the groups and move the
        watermark in one transaction."""
        cursor = conn.cursor()
        try:
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            cursor.execute("LOCK TABLE log_records IN SHARE MODE")
            (newest,) = cursor.execute("SELECT coalesce(max(id), 0) FROM log_records").fetchone()
            conn.commit()
            try:
                upto, n = index_groups(cursor, newest, self.PASS_LINES)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        finally:
            cursor.close()
        self._indexed_to(upto)
        return n
