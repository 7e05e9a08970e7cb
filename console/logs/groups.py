"""The log search index of both databases: one Bloom filter of words per group of lines.

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
(the contract of console/logs/indexer.py), so the ingest transaction writes the rows alone
(PostgreSQL a COPY, SQLite an ``executemany``); search scans the lines above the
watermark. The groups and the watermark change in one transaction, so a crash never
leaves one without the other. ``levels`` is a bitmask of the levels a group's lines have
(:func:`level_mask`): a search by level without words skips a group by one integer test.

SQLite (migration logsqlite_0001) keeps the same tables in its main file; its passes read
and hash the lines in a read transaction and take the write lock only to insert the
groups (or store the packed lines), a few milliseconds, since ingest writes the same file.
The ``bloom`` and ``packed`` columns come last in its rows: a row longer than a page keeps
its first bytes in the table's leaf and the rest in a chain of overflow pages, so the
group's bounds are read from the leaf, its filter without reading its packed lines.

Once a group is older than the hot window (:attr:`GroupIndexer.HOT_S`), the indexer packs
its lines into its ``packed`` column (console/logs/blocks.py, :func:`pack_groups`) and, a
little later, deletes their rows: a packed line costs ~62 bytes instead of a ~374-byte row
with its B-tree entries. Search reads a packed group's lines from that value.
"""
from __future__ import annotations

import bisect
import os
import time
import zlib
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
from sqlalchemy import (BigInteger, Boolean, Column, Integer, LargeBinary, MetaData, Table, and_, cast, delete, func,
                        literal, or_, select, text, true)
from sqlalchemy.orm import Session

import orjson

from console.logs import blocks
from console.logs.indexer import LogIndexer
from console.logs.levels import LEVELS
from console.logs.words import line_words, needed_ngrams, ngrams
from console.storage.database import execute_dml

GROUP_LINES = 256  # lines of one host per group at most
PREFIX_CHARS = 3  # a word's first characters, a token of their own (prefix search)
HASHES = 7  # bit positions per token (k); with BITS_PER_TOKEN, ~0.8 % false positives
BITS_PER_TOKEN = 10
_MASK64, _MASK32 = 2**64 - 1, 2**32 - 1
_K = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: mixes the CRC into the second hash
# Token kinds: a word as it is; a prefix, level or source has its CRC XORed with a mark.
_PREFIX, _LEVEL, _SOURCE, _NGRAM = 0x5BD1E995, 0x27D4EB2F, 0x165667C5, 0x61C88647
# Every ASCII byte that is not a letter or digit ("_" included) -> a space (as words.py).
_ASCII_SEPARATOR_BYTES = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))

_meta = MetaData()
# Created by migration loggroup_0001 on PostgreSQL, logsqlite_0001 on SQLite.
GROUPS = Table("log_search_groups", _meta,
               Column("id", BigInteger, primary_key=True),
               Column("host_id", Integer), Column("first_record_id", BigInteger),
               Column("last_record_id", BigInteger), Column("min_ts", BigInteger), Column("max_ts", BigInteger),
               Column("lines", Integer), Column("bloom", LargeBinary),
               # migration logblocks_0001: the lines packed (console/logs/blocks.py), NULL while rows
               Column("packed", LargeBinary), Column("made_ms", BigInteger), Column("packed_ms", BigInteger),
               Column("rows_kept", Boolean), Column("packed_bytes", BigInteger),
               # migration logsqlite_0001: level_mask of the group's lines (NULL: made before it)
               Column("levels", Integer))
STATE = Table("log_search_state", _meta, Column("id", Integer, primary_key=True),
              Column("indexed_id", BigInteger),
              # migration logngram_0001: the groups from this line id on hold n-grams
              Column("ngrams_from_id", BigInteger))


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
    others = [zlib.crc32(level.encode()) ^ _LEVEL for level in set(levels) if level]
    others += [zlib.crc32(source.encode()) ^ _SOURCE for source in set(sources)]
    if text_.isascii():
        # The words of line_words, split in C: bytes.translate with a 256-byte table is
        # several times faster than str.translate with a dict.
        words = set(text_.encode("ascii").lower().translate(_ASCII_SEPARATOR_BYTES).split())
        return np.concatenate((_ascii_word_hashes(words), np.array(others, dtype=np.uint64)))
    found = line_words(text_)  # a prefix of characters, not of bytes
    hashes = [zlib.crc32(w.encode()) for w in found]
    hashes += [zlib.crc32(p.encode()) ^ _PREFIX for p in {w[:PREFIX_CHARS] for w in found if len(w) >= PREFIX_CHARS}]
    hashes += [zlib.crc32(g.encode()) ^ _NGRAM for g in ngrams(text_)]  # parts of spaceless runs
    return np.array(hashes + others, dtype=np.uint64)


def _crc_table() -> np.ndarray:
    """CRC-32's byte table (the reflected polynomial 0xEDB88320 of zlib, ISO 3309)."""
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> np.uint32(1)) ^ np.uint32(0xEDB88320), crc >> np.uint32(1))
    return crc.astype(np.uint32)


_CRC_TABLE = _crc_table()
_WIDTH = 16  # bytes: the words up to this long are hashed with numpy (a hex id is 16); longer ones by zlib


def _zero_run_registers() -> np.ndarray:
    """The CRC-32 register (zlib's, before its final inversion) after ``n`` zero bytes
    from its initial all-ones value, for ``n`` = 0 .. :data:`_WIDTH`."""
    registers = [np.uint32(_MASK32)]
    for _ in range(_WIDTH):
        r = registers[-1]
        registers.append(_CRC_TABLE[r & np.uint32(0xFF)] ^ (r >> np.uint32(8)))
    return np.array(registers, dtype=np.uint32)


_ZERO_RUNS = _zero_run_registers()


def _pair_table() -> np.ndarray:
    """Two of CRC-32's byte steps at once, from a 16-bit register and zero data bytes."""
    register = np.arange(2**16, dtype=np.uint32)
    for _ in range(2):
        register = _CRC_TABLE[register & np.uint32(0xFF)] ^ (register >> np.uint32(8))
    return register


_PAIR_TABLE = _pair_table()


def _crc32(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """zlib.crc32 of many short byte strings at once: ``rows`` is a ``(width, n)`` uint8
    array (``width`` even), string ``i`` right-aligned in column ``i`` with zeros before
    it, ``lengths`` their lengths. The byte step of a table-driven CRC (Sarwate 1988) is
    linear over GF(2): two bytes XORed into the register's low 16 bits take one step of a
    65,536-entry table, from a zero register the leading zeros leave it zero, and the
    register from zlib's all-ones start differs from it by the register after as many zero
    bytes from all-ones (:func:`_zero_run_registers`)."""
    pairs = rows[0::2].astype(np.uint32) | (rows[1::2].astype(np.uint32) << np.uint32(8))
    register = np.zeros(rows.shape[1], dtype=np.uint32)
    for pair in pairs:
        register = _PAIR_TABLE[(register ^ pair) & np.uint32(0xFFFF)] ^ (register >> np.uint32(16))
    return ~(register ^ _ZERO_RUNS[lengths])


# A prefix of an ASCII word (its letters lower-cased) as one integer, its characters in
# base 37: 1-10 the digits, 11-36 the letters, 0 past the word's end.
_PREFIX_ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyz"
_ALPHABET_CODE = np.zeros(256, dtype=np.int64)
_ALPHABET_CODE[np.frombuffer(_PREFIX_ALPHABET, dtype=np.uint8)] = np.arange(1, 37)


def _prefix_table() -> np.ndarray:
    """The hash of every prefix code (see above) as :func:`group_hashes` gives it
    (CRC-32 of its characters XOR ``_PREFIX``); codes that are no prefix map to junk."""
    codes = np.arange(37 ** PREFIX_CHARS)
    digits = np.stack([codes // 37 ** (PREFIX_CHARS - 1 - j) % 37 for j in range(PREFIX_CHARS)])  # first char first
    alphabet = np.concatenate(([0], np.frombuffer(_PREFIX_ALPHABET, dtype=np.uint8))).astype(np.uint8)
    lengths = (digits > 0).sum(axis=0)
    # right-align: a prefix of length l occupies the last l rows
    rows = np.zeros((PREFIX_CHARS + PREFIX_CHARS % 2, codes.size), dtype=np.uint8)  # an even width
    for j in range(PREFIX_CHARS):
        for shift in range(PREFIX_CHARS):
            take = (PREFIX_CHARS - lengths) == shift
            if j - shift >= 0:
                rows[j + PREFIX_CHARS % 2, take] = alphabet[digits[j - shift, take]]
    return (_crc32(rows, lengths) ^ np.uint32(_PREFIX)).astype(np.uint64)


_PREFIX_HASHES = _prefix_table()


def _ascii_word_hashes(words: set[bytes]) -> np.ndarray:
    """The CRC-32 (zlib's) of each distinct word (of letters and digits, lower-cased
    ASCII), and of each distinct first :data:`PREFIX_CHARS` characters of them XOR
    ``_PREFIX`` (a shorter word adds itself as a prefix: no search asks for it, it only
    costs bits), as :func:`group_hashes` gives them.

    With numpy over every word at once instead of a zlib.crc32 call and a slice per word
    and prefix: the words' CRCs by :func:`_crc32`, the distinct prefixes as the codes
    set in a bitmap, their hashes from a table of every code."""
    n = len(words)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    buf = np.frombuffer(b" ".join(words) + b" ", dtype=np.uint8)
    ends = np.flatnonzero(buf == 32)  # one past each word
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    width = min(-(-int(lengths.max()) // 2) * 2, _WIDTH)  # even: bytes go in pairs
    at = ends[None, :] + np.arange(-width, 0)[:, None]  # the last `width` bytes of each word, as rows
    rows = np.where(at >= starts[None, :], buf[np.maximum(at, 0)], 0).astype(np.uint8)
    hashes = _crc32(rows, np.minimum(lengths, width)).astype(np.uint64)
    for i in np.flatnonzero(lengths > width):
        hashes[i] = zlib.crc32(buf[starts[i]:ends[i]].tobytes())
    code = np.zeros(n, dtype=np.int64)
    for j in range(PREFIX_CHARS):
        code = code * 37 + np.where(lengths > j, _ALPHABET_CODE[buf[np.minimum(starts + j, buf.size - 1)]], 0)
    seen = np.zeros(_PREFIX_HASHES.size, dtype=bool)
    seen[code] = True
    return np.concatenate((hashes, _PREFIX_HASHES[seen]))


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


_NO_LEVEL = 1 << len(LEVELS)  # a line without a level


def level_mask(levels: Iterable[str | None]) -> int:
    """The ``levels`` bitmask of a group whose lines have ``levels``: bit ``i`` for
    ``LEVELS[i]``, bit ``len(LEVELS)`` for a line without one; an unknown level (none is
    stored) sets every bit, so a mask never rules a group out wrongly."""
    mask = 0
    for level in levels:
        if level is None:
            mask |= _NO_LEVEL
        elif level in LEVELS:
            mask |= 1 << LEVELS.index(level)
        else:
            mask |= 2 * _NO_LEVEL - 1
    return mask


def may_hold(token: str, kind: int = 0, dialect: str = "postgresql") -> Any:
    """SQL condition: the group's filter may hold ``token`` (every one of its bits is set):
    PostgreSQL's ``get_bit``, SQLite's ``bloom_has`` (console/storage/database.py)."""
    h1, h2 = _hashes(token, kind)
    if dialect == "sqlite":
        return func.bloom_has(GROUPS.c.bloom, literal(h1, BigInteger), literal(h2, BigInteger),
                              literal(HASHES, Integer)) == 1
    bits = func.length(GROUPS.c.bloom) * 8
    return and_(*(func.get_bit(GROUPS.c.bloom, cast(literal((h1 + i * h2) & _MASK32, BigInteger) * bits
                                                    // literal(2**32, BigInteger), Integer)) == 1
                  for i in range(HASHES)))


def group_conditions(terms: Sequence[Any], levels: Sequence[str], source: str | None,
                     dialect: str = "postgresql", ngrams_from: int = 0) -> list:
    """Conditions on ``log_search_groups`` for a search: each term (exact word, or a prefix
    of at least :data:`PREFIX_CHARS` characters; a spaceless term its n-grams, in the groups
    of lines from id ``ngrams_from`` on, made since their filters hold them) and the level
    and exact source filters may be in the group. A shorter prefix or a source prefix skips
    no group."""
    conditions = []
    for term in terms:
        if term.infix:
            held = and_(*(may_hold(g, _NGRAM, dialect) for g in sorted(needed_ngrams(term.word))))
            conditions.append(or_(GROUPS.c.last_record_id < ngrams_from, held) if ngrams_from else held)
        elif not term.prefix:
            conditions.append(may_hold(term.word, 0, dialect))
        elif len(term.word) >= PREFIX_CHARS:
            conditions.append(may_hold(term.word[:PREFIX_CHARS], _PREFIX, dialect))
    if levels:
        # the bitmask, one integer test; groups made before it (NULL) by their filter
        conditions.append(or_(GROUPS.c.levels.op("&")(level_mask(levels)) != 0,
                              and_(GROUPS.c.levels.is_(None), or_(*(may_hold(level, _LEVEL, dialect) for level in levels)))))
    if source and not source.endswith("*"):
        conditions.append(may_hold(source, _SOURCE, dialect))
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
# SQLite's: group_concat for string_agg, the distinct levels and sources as JSON arrays.
_GROUPED_SQLITE = (
    "SELECT host_id, min(id), max(id), min(ts), max(ts), count(*), group_concat(line, ' '), "
    "json_group_array(DISTINCT level), json_group_array(DISTINCT source) FROM ("
    "SELECT *, (row_number() OVER (PARTITION BY host_id ORDER BY id) - 1) / ? AS run FROM ("
    "SELECT id, host_id, ts, line, level, source FROM log_records WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"
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
                         "bloom, levels, made_ms) FROM STDIN") as copy:
            for row in _group_rows(grouped):
                copy.write_row(row)
    cursor.execute("UPDATE log_search_state SET indexed_id = %s WHERE id = 1", (upto,))
    return upto, n


def _group_rows(grouped: Sequence[Sequence[Any]]) -> list[tuple]:
    """The ``log_search_groups`` rows (host_id, first_record_id, last_record_id, min_ts,
    max_ts, lines, bloom, levels, made_ms) of the rows of :data:`_GROUPED` (PostgreSQL:
    levels and sources as arrays) or :data:`_GROUPED_SQLITE` (as JSON arrays)."""
    made_ms = int(time.time() * 1000)
    out = []
    for host_id, first, last, min_ts, max_ts, lines, text_, levels, sources in grouped:
        if isinstance(levels, str):
            levels, sources = orjson.loads(levels), orjson.loads(sources)
        out.append((host_id, first, last, min_ts, max_ts, lines, bloom(group_hashes([text_], levels, sources)),
                    level_mask(levels), made_ms))
    return out


_INSERT_SQLITE = ("INSERT INTO log_search_groups (host_id, first_record_id, last_record_id, min_ts, max_ts, lines, "
                  "bloom, levels, made_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def sqlite_watermark(cursor: Any) -> int:
    """SQLite: the watermark, read with the sqlite3 ``cursor``."""
    return int(cursor.execute("SELECT indexed_id FROM log_search_state WHERE id = 1").fetchone()[0])


def sqlite_groups(cursor: Any, after: int, most: int) -> tuple[int, list[tuple]]:
    """SQLite: the groups of up to ``most`` lines above the watermark ``after`` (the oldest
    ids; each host's in runs of at most :data:`GROUP_LINES`), as ``(upto, rows)``: the
    watermark once they are inserted, and the rows to insert (:func:`_group_rows`).
    Reads only."""
    grouped = cursor.execute(_GROUPED_SQLITE, (GROUP_LINES, after, 2**62, most)).fetchall()
    if not grouped:
        return after, []
    return max(g[2] for g in grouped), _group_rows(grouped)


def sqlite_insert_groups(cursor: Any, upto: int, rows: Sequence[tuple]) -> None:
    """SQLite, in the cursor's write transaction: insert the groups ``rows`` (those of a
    host retired meanwhile left out) and move the watermark to ``upto``."""
    hosts = {r[0] for r in cursor.execute("SELECT id FROM hosts")}
    cursor.executemany(_INSERT_SQLITE, [r for r in rows if r[0] in hosts])
    cursor.execute("UPDATE log_search_state SET indexed_id = ? WHERE id = 1", (upto,))


def sqlite_index_groups(cursor: Any) -> int:
    """SQLite, in the cursor's write transaction: group every line above the watermark;
    returns how many (for a store without a running indexer: tests, an in-memory
    database, the bench's set-up)."""
    upto, rows = sqlite_groups(cursor, sqlite_watermark(cursor), 2**62)
    if rows:
        sqlite_insert_groups(cursor, upto, rows)
    return sum(r[5] for r in rows)


def watermark(session: Session) -> int:
    """Every line with an id up to this is in a group."""
    return int(session.execute(select(STATE.c.indexed_id).where(STATE.c.id == 1)).scalar_one())


def ngrams_from(session: Session) -> int:
    """The first line id whose group filter holds the n-grams of spaceless runs (the
    watermark when migration ``logngram_0001`` ran, plus one): older groups cannot say."""
    return int(session.execute(select(STATE.c.ngrams_from_id).where(STATE.c.id == 1)).scalar_one())


def prune_groups(session: Session) -> int:
    """Delete the unpacked groups older than every stored line (retention deleted their
    lines); returns how many. A group retention emptied only in part keeps its filter: a
    search reads its lines, which are the ones left. Packed groups hold their lines
    themselves: :func:`delete_packed_before` deletes them."""
    oldest = session.execute(text("SELECT min(ts) FROM log_records")).scalar()
    condition = GROUPS.c.max_ts < oldest if oldest is not None else true()
    return execute_dml(session, delete(GROUPS).where(condition, GROUPS.c.packed.is_(None))).rowcount


# -- packed groups (console/logs/blocks.py) -----------------------------------------------
PACK_GROUPS = 64  # groups packed (or whose rows are deleted) per transaction at most


def pack_groups(cursor: Any, hot_before_ms: int, kept_before_ms: int, most: int = PACK_GROUPS) -> tuple[int, int]:
    """In the psycopg cursor's transaction: pack the lines of up to ``most`` unpacked
    groups made before ``hot_before_ms`` (Unix ms) into their ``packed`` column, and delete
    from ``log_records`` the rows of up to ``most`` groups packed before ``kept_before_ms``
    (a search that read a group unpacked reads its rows next: they stay that long). Groups
    another transaction is packing are skipped (``SKIP LOCKED``: several console workers
    run this). Returns ``(groups packed, rows deleted)``."""
    now_ms = int(time.time() * 1000)
    chosen = cursor.execute(
        "SELECT id, host_id, first_record_id, last_record_id, min_ts, max_ts FROM log_search_groups "
        "WHERE packed IS NULL AND made_ms < %s ORDER BY made_ms, id LIMIT %s FOR UPDATE SKIP LOCKED",
        (hot_before_ms, most)).fetchall()
    packed = 0
    if chosen:
        by_group: dict[int, list[tuple]] = defaultdict(list)
        for group_id, row in _rows_of(cursor, chosen, "all"):
            by_group[group_id].append(row)
        empty = [c[0] for c in chosen if c[0] not in by_group]  # retention deleted every line
        if empty:
            cursor.execute("DELETE FROM log_search_groups WHERE id = ANY(%s)", (empty,))
        ids, values, sizes, lines = [], [], [], []
        for group_id, first in ((c[0], c[2]) for c in chosen if c[0] in by_group):
            value, size, n = _packed_row(by_group[group_id], first)
            ids.append(group_id)
            values.append(value)
            sizes.append(size)
            lines.append(n)
        if ids:
            cursor.execute(
                "UPDATE log_search_groups g SET packed = v.packed, packed_ms = %s, packed_bytes = v.bytes, "
                "lines = v.lines FROM unnest(%s::bigint[], %s::bytea[], %s::bigint[], %s::int[]) "
                "AS v(id, packed, bytes, lines) WHERE g.id = v.id", (now_ms, ids, values, sizes, lines))
        packed = len(ids)
    gone = cursor.execute(
        "SELECT id, host_id, first_record_id, last_record_id, min_ts, max_ts FROM log_search_groups "
        "WHERE packed IS NOT NULL AND rows_kept AND packed_ms < %s "
        "ORDER BY packed_ms, id LIMIT %s FOR UPDATE SKIP LOCKED", (kept_before_ms, most)).fetchall()
    deleted = 0
    if gone:
        gone_ids = [g[0] for g in gone]
        # as runs of consecutive ids: "id = ANY(16,000 ids)" compared every row with the
        # whole array (~38 µs a line), a range per run is an index scan each
        lows: list[int] = []
        highs: list[int] = []
        for _, (rid,) in _rows_of(cursor, gone, "ids"):
            if highs and highs[-1] == rid - 1:
                highs[-1] = rid
            else:
                lows.append(rid)
                highs.append(rid)
        deleted = cursor.execute(
            "DELETE FROM log_records r USING unnest(%s::bigint[], %s::bigint[]) AS v(low, high) "
            "WHERE r.id BETWEEN v.low AND v.high AND r.ts BETWEEN %s AND %s",
            (lows, highs, min(g[4] for g in gone), max(g[5] for g in gone))).rowcount
        cursor.execute("UPDATE log_search_groups SET rows_kept = false WHERE id = ANY(%s)", (gone_ids,))
    return packed, deleted


# The rows of some groups: one range read over the bounds of them all (a join with the
# groups probed them once per row, ~35 µs a line); _rows_of places each row.
_GROUP_ROWS = {
    "all": "SELECT host_id, id, ts, source, line, labels, level FROM log_records "
           "WHERE id BETWEEN %s AND %s AND ts BETWEEN %s AND %s ORDER BY id",
    "ids": "SELECT host_id, id FROM log_records WHERE id BETWEEN %s AND %s AND ts BETWEEN %s AND %s ORDER BY id",
}
# SQLite's: the same with its parameter marks; "+ 0" keeps the ts index out of the plan
# (the id range is the rowid's, the ts bounds only filter)
_GROUP_ROWS_SQLITE = {name: sql.replace("%s", "?").replace("AND ts BETWEEN", "AND ts + 0 BETWEEN")
                      for name, sql in _GROUP_ROWS.items()}


def _rows_of(cursor: Any, chosen: Sequence[tuple], columns: str, sqlite: bool = False) -> list[tuple[int, tuple]]:
    """``(group id, row)`` for each ``log_records`` row of the groups ``chosen`` (tuples of
    id, host_id, first_record_id, last_record_id, min_ts, max_ts), in id order; ``row`` holds
    the columns of :data:`_GROUP_ROWS` ``[columns]`` after ``host_id`` (``id`` first)."""
    spans: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for group_id, host_id, first, last, *_ in chosen:
        spans[host_id].append((first, last, group_id))
    for host_spans in spans.values():
        host_spans.sort()
    starts = {host_id: [span[0] for span in host_spans] for host_id, host_spans in spans.items()}
    out = []
    for host_id, *row in cursor.execute(
            (_GROUP_ROWS_SQLITE if sqlite else _GROUP_ROWS)[columns], (min(c[2] for c in chosen), max(c[3] for c in chosen),
                            min(c[4] for c in chosen), max(c[5] for c in chosen))):
        host_starts = starts.get(host_id)
        if host_starts is None:
            continue
        i = bisect.bisect_right(host_starts, row[0]) - 1
        if i >= 0 and row[0] <= spans[host_id][i][1]:
            out.append((spans[host_id][i][2], tuple(row)))
    return out


def _packed_row(rows: Sequence[tuple], first: int) -> tuple[bytes, int, int]:
    """``(packed value, packed_bytes, lines)`` of a group's rows (id, ts, source, line,
    labels, level)."""
    return (blocks.pack(first, rows),
            sum(len(r[2].encode()) + len(r[3].encode()) + len(r[4].encode()) for r in rows), len(rows))


def sqlite_pack_groups(conn: Any, hot_before_ms: int, kept_before_ms: int,
                       most: int = PACK_GROUPS) -> tuple[int, int]:
    """:func:`pack_groups` on SQLite (a sqlite3 connection outside a transaction). The
    rows of up to ``most`` groups made before ``hot_before_ms`` are read and packed in a
    read transaction; then, in a write transaction of a few milliseconds, each packed
    value is stored if its group is still unpacked and still has exactly those rows
    (another console process may have packed it, retention deleted some), and the rows of
    up to ``most`` groups packed before ``kept_before_ms`` are deleted (by id range and
    host: the rowid's range). Returns ``(groups packed, rows deleted)``."""
    cursor = conn.cursor()
    try:
        cursor.execute("BEGIN")
        try:
            chosen = cursor.execute(
                "SELECT id, host_id, first_record_id, last_record_id, min_ts, max_ts FROM log_search_groups "
                "WHERE packed IS NULL AND made_ms < ? ORDER BY made_ms, id LIMIT ?", (hot_before_ms, most)).fetchall()
            by_group: dict[int, list[tuple]] = defaultdict(list)
            if chosen:
                for group_id, row in _rows_of(cursor, chosen, "all", sqlite=True):
                    by_group[group_id].append(row)
        finally:
            conn.rollback()
        values = {group_id: _packed_row(rows, first) for group_id, _, first, *_ in chosen
                  if (rows := by_group.get(group_id))}
        cursor.execute("BEGIN IMMEDIATE")
        try:
            packed = 0
            now_ms = int(time.time() * 1000)
            for group_id, host_id, first, last, *_ in chosen:
                (still,) = cursor.execute("SELECT count(*) FROM log_records WHERE id BETWEEN ? AND ? AND host_id = ?",
                                          (first, last, host_id)).fetchone()
                if group_id not in values:  # retention deleted every line (the rows stay gone)
                    if not still:
                        cursor.execute("DELETE FROM log_search_groups WHERE id = ? AND packed IS NULL", (group_id,))
                    continue
                blob, size, lines = values[group_id]
                if still == lines:
                    packed += cursor.execute(
                        "UPDATE log_search_groups SET packed = ?, packed_ms = ?, packed_bytes = ?, lines = ? "
                        "WHERE id = ? AND packed IS NULL", (blob, now_ms, size, lines, group_id)).rowcount
            gone = cursor.execute(
                "SELECT id, host_id, first_record_id, last_record_id FROM log_search_groups "
                "WHERE packed IS NOT NULL AND rows_kept AND packed_ms < ? ORDER BY packed_ms, id LIMIT ?",
                (kept_before_ms, most)).fetchall()
            deleted = 0
            if gone:
                cursor.executemany("DELETE FROM log_records WHERE id BETWEEN ? AND ? AND host_id = ?",
                                   [(first, last, host_id) for _, host_id, first, last in gone])
                deleted = cursor.rowcount
                cursor.executemany("UPDATE log_search_groups SET rows_kept = 0 WHERE id = ?", [(g[0],) for g in gone])
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    finally:
        cursor.close()
    return packed, deleted


def delete_packed_before(session: Session, cutoff_ms: int) -> int:
    """Retention by age: delete the packed groups whose lines are all older than
    ``cutoff_ms`` and drop the older lines of those that straddle it (unpacked, packed
    again); returns how many lines went. Groups whose rows are still kept are left to the
    row deletes (their lines are rows too)."""
    g = GROUPS
    gone = 0
    old = and_(g.c.packed.is_not(None), g.c.rows_kept.is_(False))
    gone += int(session.execute(select(func.coalesce(func.sum(g.c.lines), 0)).where(old, g.c.max_ts < cutoff_ms))
                .scalar_one())
    execute_dml(session, delete(g).where(old, g.c.max_ts < cutoff_ms))
    straddling = session.execute(select(g.c.id, g.c.first_record_id, g.c.packed).where(
        old, g.c.min_ts < cutoff_ms, g.c.max_ts >= cutoff_ms).with_for_update()).all()
    for group_id, first, blob in straddling:
        lines = [p for p in blocks.unpack(first, "", blob) if p.ts >= cutoff_ms]
        gone += rewrite_packed(session, group_id, first, lines)
    return gone


def delete_host_groups(session: Session, host_id: int) -> int:
    """Delete every group of host ``host_id``; returns how many packed lines they held
    whose rows were gone (the others were counted as rows)."""
    g = GROUPS
    packed = int(session.execute(select(func.coalesce(func.sum(g.c.lines), 0)).where(
        g.c.host_id == host_id, g.c.packed.is_not(None), g.c.rows_kept.is_(False))).scalar_one())
    execute_dml(session, delete(g).where(g.c.host_id == host_id))
    return packed


def rewrite_packed(session: Session, group_id: int, first: int, keep: Sequence[blocks.PackedLine]) -> int:
    """Keep only the lines ``keep`` of packed group ``group_id`` (its time range
    narrowed to theirs; its filter stays, a superset); returns how many lines went."""
    g = GROUPS
    before = int(session.execute(select(g.c.lines).where(g.c.id == group_id)).scalar_one())
    if not keep:
        execute_dml(session, delete(g).where(g.c.id == group_id))
        return before
    rows = [(p.id, p.ts, p.source, p.line, p.labels, p.level) for p in keep]
    execute_dml(session, g.update().where(g.c.id == group_id).values(
        packed=blocks.pack(first, rows), lines=len(rows), levels=level_mask(r[5] for r in rows),
        min_ts=min(r[1] for r in rows),
        max_ts=max(r[1] for r in rows),
        packed_bytes=sum(len(r[2].encode()) + len(r[3].encode()) + len(r[4].encode()) for r in rows)))
    return before - len(rows)


T = TypeVar("T")


def in_transaction(conn: Any, work: Callable[[Any], T]) -> T:
    """``work(cursor)`` on a psycopg connection in a transaction of its own: committed when
    it returns, rolled back when it raises (and the error raised again)."""
    cursor = conn.cursor()
    try:
        result = work(cursor)
        conn.commit()
        return result
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()


class GroupIndexer(LogIndexer):
    """Fills ``log_search_groups`` from committed lines and packs the groups older than
    the hot window (PostgreSQL and SQLite), on a thread; the waiting and lag contract is
    :class:`LogIndexer`'s."""

    def _connection(self, raw: Any) -> Any:
        conn = raw.driver_connection
        if self._db.dialect == "sqlite":
            return conn
        # named in pg_stat_activity (with the console's pid): the indexer holds its connection
        # while the console runs
        conn.execute("SELECT set_config('application_name', %s, false)", (f"fleetdeck log indexer {os.getpid()}",))
        conn.commit()
        return conn

    # Lines stay rows this long after their group is made (the hot window: the newest
    # lines are read as rows, with their B-tree indexes), then they are packed; the rows
    # stay KEEP_S longer for searches that saw the group unpacked.
    HOT_S = 300.0
    KEEP_S = 60.0
    PACK_ROUNDS = 4  # transactions of pack_groups per pass at most

    def index_pass(self, conn: Any) -> int:
        """Group the new lines (:meth:`group_pass`), then pack the groups older than the
        hot window (:func:`pack_groups`); returns how many lines were grouped."""
        n = self.group_pass(conn)
        now = time.time()
        hot_ms, kept_ms = int((now - self.HOT_S) * 1000), int((now - self.KEEP_S) * 1000)
        for _ in range(self.PACK_ROUNDS):  # bounded: grouping new lines must not wait long
            if self._db.dialect == "sqlite":
                packed, deleted = sqlite_pack_groups(conn, hot_ms, kept_ms)
            else:
                packed, deleted = in_transaction(conn, lambda cursor: pack_groups(cursor, hot_ms, kept_ms))
            if (packed < PACK_GROUPS and deleted == 0) or self._closing:
                break
        return n

    def group_pass(self, conn: Any) -> int:
        """Group up to :attr:`PASS_LINES` lines above the watermark; returns how many.

        PostgreSQL, two transactions. The first takes a SHARE lock on ``log_records`` just
        long enough to read the newest id: the lock waits for every inserting transaction,
        so every line up to that id is committed, and one that commits later has a higher
        id (ids come from a sequence in the inserting transaction). Then group the lines
        above the watermark, insert the groups and move the watermark in one transaction.

        SQLite: read and hash the lines in a read transaction (every line it sees is
        committed, and a later one gets a higher id: ingest gives ids above the largest
        stored id and the watermark); then, under the write lock, insert the groups and
        move the watermark if it is still where the read found it (another console
        process's pass may have moved it: this one's work is dropped, the next goes on
        from there)."""
        if self._db.dialect == "sqlite":
            return self._sqlite_group_pass(conn)

        def newest_committed(cursor: Any) -> int:
            cursor.execute("SET LOCAL lock_timeout = '10s'")
            cursor.execute("LOCK TABLE log_records IN SHARE MODE")
            return int(cursor.execute("SELECT coalesce(max(id), 0) FROM log_records").fetchone()[0])

        newest = in_transaction(conn, newest_committed)
        upto, n = in_transaction(conn, lambda cursor: index_groups(cursor, newest, self.PASS_LINES))
        self._indexed_to(upto)
        return n

    def _sqlite_group_pass(self, conn: Any) -> int:
        cursor = conn.cursor()
        try:
            cursor.execute("BEGIN")
            try:
                after = sqlite_watermark(cursor)
                upto, rows = sqlite_groups(cursor, after, self.PASS_LINES)
            finally:
                conn.rollback()
            if not rows:
                self._indexed_to(after)
                return 0
            cursor.execute("BEGIN IMMEDIATE")
            try:
                now = sqlite_watermark(cursor)
                if now != after:  # another process grouped these lines meanwhile
                    conn.rollback()
                    self._indexed_to(now)
                    return 0
                sqlite_insert_groups(cursor, upto, rows)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        finally:
            cursor.close()
        self._indexed_to(upto)
        return sum(r[5] for r in rows)
