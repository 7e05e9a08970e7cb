"""The cross-series aggregate of step values computed series by series (console/query/service.py
``_Across``): each group's buckets hold the sum, average, minimum or maximum of the values the
series have there, added in series order (the same float operations as adding them one by
one), whatever buckets each series has: gaps, later starts, earlier starts than the series
before, later ends."""
from __future__ import annotations

import random

import numpy as np
import pytest

from console.query.service import RangeQuery, _Across, _Series

STEP = 60_000


def series_set(seed: int) -> list[tuple[int, str, list[tuple[int, float]]]]:
    """``[(series id, rack, [(stamp, value), ...]), ...]``, ids ascending; spans that start and
    end anywhere in 300 steps around a base, with gaps."""
    rnd = random.Random(seed)
    base = 1_790_000_000_000 // STEP * STEP
    out = []
    for sid in range(1, 41):
        first = rnd.randint(-150, 100)
        last = first + rnd.randint(0, 200)
        holes = set(rnd.sample(range(first, last + 1), k=rnd.randint(0, (last - first) // 3))) if sid % 3 else set()
        points = [(base + i * STEP, rnd.uniform(-1e6, 1e6) * 10 ** rnd.randint(-3, 3))
                  for i in range(first, last + 1) if i not in holes]
        out.append((sid, rnd.choice("abc"), points))
    return out


@pytest.mark.parametrize("agg", ["sum", "avg", "min", "max"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_bucket_aggregates_the_values_of_the_series_that_have_it(agg, seed):
    data = series_set(seed)
    selected = {sid: _Series({"rack": rack}) for sid, rack, _ in data}
    keys = sorted({(rack,) for _, rack, _ in data})
    across = _Across(RangeQuery("m", 0, 1, group_by=("rack",), agg=agg), selected, keys, STEP)
    want: dict[int, dict[int, list[float]]] = {}
    for sid, rack, points in data:
        across.add(sid, np.array([t for t, _ in points], np.int64), np.array([v for _, v in points]))
        for t, v in points:
            want.setdefault(keys.index((rack,)), {}).setdefault(t, []).append(v)
    got = across.result()
    assert sorted(got) == sorted(want)
    combine = {"sum": sum, "avg": lambda v: sum(v) / len(v), "min": min, "max": max}[agg]
    for group, buckets in want.items():
        assert got[group].ts.tolist() == sorted(buckets)
        assert got[group].values.tolist() == [combine(buckets[t]) for t in sorted(buckets)]


def test_a_series_without_values_adds_nothing_and_an_empty_group_is_left_out():
    selected = {1: _Series({"rack": "a"}), 2: _Series({"rack": "b"})}
    across = _Across(RangeQuery("m", 0, 1, group_by=("rack",), agg="sum"), selected, [("a",), ("b",)], STEP)
    across.add(1, np.array([STEP, 3 * STEP], np.int64), np.array([1.5, 2.5]))
    across.add(2, np.empty(0, np.int64), np.empty(0))
    got = across.result()
    assert list(got) == [0]
    assert got[0].ts.tolist() == [STEP, 3 * STEP] and got[0].values.tolist() == [1.5, 2.5]
