"""The cache of closed rollup buckets (console/query/service.py ClosedBucketCache): its
bound in points, least recently used first out, and when an entry stops serving."""
from __future__ import annotations

from console.query.service import ClosedBucketCache, _Closed


def entry(points: int, generation: int = 1, done_until: int = 10_000, lo: int = 0, hi: int = 6_000) -> _Closed:
    return _Closed(generation, done_until, lo, hi, {1: [(i * 60_000, float(i)) for i in range(points)]}, points)


def test_the_bound_counts_points_and_drops_the_least_recently_used():
    cache = ClosedBucketCache(max_points=100)
    cache.put("a", entry(40))
    cache.put("b", entry(40))
    assert cache.get("a", 1, 10_000, 0) is not None  # "a" used last: "b" goes first
    cache.put("c", entry(40))
    assert cache.get("b", 1, 10_000, 0) is None
    assert cache.get("a", 1, 10_000, 0) is not None
    assert cache.get("c", 1, 10_000, 0) is not None
    cache.put("d", entry(101))  # larger than the whole cache: not kept, nothing dropped for it
    assert cache.get("d", 1, 10_000, 0) is None
    assert cache.get("a", 1, 10_000, 0) is not None


def test_an_entry_serves_only_under_its_generation_and_watermark():
    cache = ClosedBucketCache(max_points=100)
    cache.put("a", entry(10, generation=3, done_until=10_000, lo=1_000, hi=5_000))
    assert cache.get("a", 3, 12_000, 1_000) is not None  # the watermark moved on
    assert cache.get("a", 3, 12_000, 4_000) is not None  # a window starting later
    assert cache.get("a", 3, 12_000, 900) is None  # starts before the entry's buckets
    assert cache.get("a", 3, 12_000, 5_001) is None  # starts after them
    assert cache.get("a", 3, 12_000, 1_000) is not None  # neither miss dropped it
    assert cache.get("a", 3, 9_999, 1_000) is None  # the watermark went back: dropped
    cache.put("a", entry(10, generation=3))
    assert cache.get("a", 4, 12_000, 0) is None  # a late sample bumped the generation: dropped
    assert cache.get("a", 3, 12_000, 0) is None
