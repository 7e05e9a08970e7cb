"""A group's lines packed into one compressed value (PostgreSQL's ``log_search_groups.packed``).

Once a group of up to 256 lines of one host (console/logs/groups.py) is older than the
hot window, its lines leave ``log_records`` (a heap tuple and four B-tree entries each,
~374 B for a 160-byte line) for one value beside the group's Bloom filter: the lines'
fields column by column, each column a MessagePack array (https://msgpack.org/), the
whole compressed with Zstandard (RFC 8878, level :data:`LEVEL`). Columns compress better
than rows: ids and times become small deltas, the source, labels and level of a group
repeat and become a dictionary and indexes, and the lines' text sits together.

Layout (MessagePack array): ``[version, id deltas, ts deltas, sources, source index per
line, labels, labels index per line, levels, level index per line, lines]``; the first id
is the group's ``first_record_id``, each later one the previous plus its delta, and the
same for ``ts`` from 0. :func:`pack` and :func:`unpack` are exact inverses.
"""
from __future__ import annotations

import bisect
from itertools import accumulate
from typing import Callable, Container, Iterable, NamedTuple, Sequence

import msgspec
import zstandard

VERSION = 1
LEVEL = 3  # zstd level: 62 B a 162-byte line at 3, 6 or 9 alike (bench lines); 3 packs fastest, ~2 µs a line


class PackedLine(NamedTuple):
    """One line of a packed group, as a search row: ``name`` is the host's name."""
    id: int
    ts: int
    name: str
    source: str
    line: str
    labels: str
    level: str | None


def _dictionary(values: Iterable[object]) -> tuple[list, list[int]]:
    """``(distinct values in order of first use, index of each value)``."""
    seen: dict[object, int] = {}
    indexes = [seen.setdefault(v, len(seen)) for v in values]
    return list(seen), indexes


def _deltas(values: Sequence[int], first: int) -> list[int]:
    out, previous = [], first
    for v in values:
        out.append(v - previous)
        previous = v
    return out


def pack(first_id: int, rows: Sequence[tuple[int, int, str, str, str, str | None]]) -> bytes:
    """Pack ``rows`` (``(id, ts, source, line, labels, level)`` of one host, in id order,
    ids from ``first_id`` on) into one Zstandard frame."""
    sources, source_ix = _dictionary(r[2] for r in rows)
    labels, labels_ix = _dictionary(r[4] for r in rows)
    levels, level_ix = _dictionary(r[5] for r in rows)
    doc = [VERSION, _deltas([r[0] for r in rows], first_id), _deltas([r[1] for r in rows], 0),
           sources, source_ix, labels, labels_ix, levels, level_ix, [r[3] for r in rows]]
    return zstandard.ZstdCompressor(level=LEVEL).compress(msgspec.msgpack.encode(doc))


def unpack(first_id: int, host: str, blob: bytes,
           wanted: Callable[[int, int, str, str, str | None], bool] | None = None,
           words: Sequence[str] = (), levels: Container[str | None] | None = None) -> list[PackedLine]:
    """The lines :func:`pack` packed, in id order, each as a :class:`PackedLine` of host
    ``host``; with ``wanted``, only those for which ``wanted(ts, id, source, line, level)``
    is true. ``words`` (lower-case ASCII) and ``levels`` narrow the lines ``wanted`` is
    asked about: a line must hold the longest of ``words`` somewhere, case-insensitive
    (found in the group's whole text at once, in C), and have a level in ``levels``.
    Raises ValueError for a value of another layout version."""
    doc = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(blob))
    if doc[0] != VERSION:
        raise ValueError(f"packed log lines of layout version {doc[0]}, this console reads {VERSION}")
    _, id_deltas, ts_deltas, sources, source_ix, labels, labels_ix, level_values, level_ix, lines = doc
    ids = list(accumulate(id_deltas, initial=first_id))[1:]
    times = list(accumulate(ts_deltas))
    chosen: Iterable[int] = range(len(lines))
    if levels is not None:
        allowed = {k for k, level in enumerate(level_values) if level in levels}
        chosen = [i for i in chosen if level_ix[i] in allowed]
    if words:
        text = "\n".join(lines)
        if text.isascii():  # lower() keeps every offset: each line starts where its length says
            text = text.lower()
            starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
            word = max(words, key=len)
            holding = set()
            at = text.find(word)
            while at >= 0:
                i = bisect.bisect_right(starts, at) - 1
                holding.add(i)
                at = text.find(word, starts[i + 1])
            chosen = [i for i in chosen if i in holding]
    out = []
    for i in chosen:
        source, level, line = sources[source_ix[i]], level_values[level_ix[i]], lines[i]
        if wanted is None or wanted(times[i], ids[i], source, line, level):
            out.append(PackedLine(ids[i], times[i], host, source, line, labels[labels_ix[i]], level))
    return out
