"""A bounded, least-recently-used cache of what queries read from closed rollup buckets.

A rollup row below its tier's watermark (``rollup_watermarks.done_until``) changes only
when a late sample reopens its bucket, and that moves the watermark back and bumps its
``generation`` in the same transaction (console/ingest/service.py); so an entry serves
while the generation is the one it was read under and the watermark has not moved below
where it stood. Retention deletes only rows older than any query on the tier reads (an
older start reads the coarser tier). Used by the range API (console/query/service.py,
points per series) and PromQL (console/promql/rollups.py, bucket sums per output series).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Protocol, TypeVar


class ClosedEntry(Protocol):
    """What an entry holds: closed buckets ``[lo, hi)`` (Unix ms) read under the tier's
    watermark ``generation`` when it stood at ``done_until``; ``size`` in the cache's unit."""

    @property
    def generation(self) -> int: ...
    @property
    def done_until(self) -> int: ...
    @property
    def lo(self) -> int: ...
    @property
    def hi(self) -> int: ...
    @property
    def size(self) -> int: ...


E = TypeVar("E", bound=ClosedEntry)


class ClosedCache(Generic[E]):
    """Entries per query shape (a hashable key), bounded by ``max_size`` in all (entries'
    ``size``; least recently used first out; 0: nothing kept). Thread-safe: queries run on
    several database reader threads."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[object, E] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0  # queries answered from an entry, wholly or with buckets appended
        self.misses = 0

    def get(self, key: object, generation: int, done_until: int, lo: int) -> E | None:
        """The entry of ``key`` still valid under the tier's ``generation``/``done_until``
        whose buckets start at or before ``lo`` and reach it; a stale entry is dropped."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (entry.generation != generation or done_until < entry.done_until):
                self._drop(key)
                entry = None
            if entry is None or entry.lo > lo or entry.hi < lo:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return entry

    def put(self, key: object, entry: E) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if entry.size > self.max_size:
                return
            self._entries[key] = entry
            self._size += entry.size
            while self._size > self.max_size:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: object) -> None:
        self._size -= self._entries.pop(key).size
