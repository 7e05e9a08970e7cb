"""The range API's points written from numpy columns are, byte for byte, what orjson writes
for the same points as Python ``(ts, value)`` pairs (the answer before columns)."""
from __future__ import annotations

import numpy as np
import orjson

from console.query.columns import Columns, concat, cut, points_json, points_json_many

MINUTE = 60_000
T0 = 1_764_000_000_000


def pairs_json(ts, values) -> bytes:
    return orjson.dumps(list(zip(np.asarray(ts).tolist(), np.asarray(values).tolist())))


def odd_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """Any float64 bit pattern (subnormals, huge and tiny exponents, NaN, infinities)
    and the ones whose text is short or long."""
    bits = rng.integers(0, 2 ** 64, n, dtype=np.uint64).view(np.float64)
    fixed = np.array([0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 1e16, 1e15, 1e21, 1e22, 1e-5, 1e-7, 5e-324,
                      2.2250738585072014e-308, 1.7976931348623157e308, np.nan, np.inf, -np.inf, 100.0,
                      123456789012345678.0, 12345678.9])
    return np.concatenate([fixed, bits, rng.random(n) * 100, np.round(rng.random(n) * 1000, 2)])


def test_a_day_of_minutes_is_written_as_orjson_writes_the_pairs():
    rng = np.random.default_rng(7)
    values = odd_floats(rng, 2000)
    ts = T0 + np.arange(len(values), dtype=np.int64) * MINUTE
    assert points_json(ts, values) == pairs_json(ts, values)


def test_series_with_shared_and_with_their_own_stamps():
    rng = np.random.default_rng(8)
    day = T0 + np.arange(1440, dtype=np.int64) * MINUTE
    later = day[600:]
    gappy = np.concatenate([day[:100], day[400:]])
    series = [(day, rng.random(1440)), (day.copy(), odd_floats(rng, 700)[:1440]), (later, rng.random(840) * -1e9),
              (np.empty(0, np.int64), np.empty(0)), (gappy, rng.random(len(gappy)) * 1e-9), (day[:1], [42.0]),
              (day[:2], [np.nan, 7.0])]
    assert points_json_many(series) == [pairs_json(ts, v) for ts, v in series]


def test_stamps_of_other_widths_or_signs():
    rng = np.random.default_rng(9)
    for ts in (np.arange(1500, dtype=np.int64) * 7, np.array([-60_000, 0, 60_000]), np.array([5, 7, 9]),
               np.array([999, 1000]), np.array([10 ** 15, 10 ** 15 + 1])):
        values = rng.random(len(ts))
        assert points_json(ts, values) == pairs_json(ts, values)


def test_columns_cut_and_join_as_lists_do():
    pairs = [(T0 + i * MINUTE, float(i)) for i in range(10)]
    columns = Columns.of(pairs)
    assert orjson.dumps(pairs) == columns.json()
    for lo, hi in ((T0, T0 + 10 * MINUTE), (T0 + 3 * MINUTE, T0 + 5 * MINUTE + 1), (0, 1), (T0 + 9 * MINUTE, 2 ** 62)):
        want = [p for p in pairs if lo <= p[0] < hi]
        assert cut(columns, lo, hi).json() == orjson.dumps(want) and cut(pairs, lo, hi) == want
    joined = concat(Columns.of(pairs[:4]), pairs[4:])
    assert isinstance(joined, Columns) and joined.json() == orjson.dumps(pairs)
    assert concat(pairs[:4], pairs[4:]) == pairs and concat([], columns) is columns
