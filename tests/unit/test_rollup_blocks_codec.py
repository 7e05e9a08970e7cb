"""The 1m rollup block format (console/storage/rollup_blocks.py): every column round-trips
bit for bit, NULLs included, and bytes that are not a block are refused."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from console.storage import rollup_blocks
from console.storage.rollup_blocks import RollupBlockError

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
OTHER_NAN = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000123))[0]
SPECIAL = [STALE_NAN, OTHER_NAN, float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1.7976931348623157e308]


def bits(values: list) -> list:
    return [None if v is None else struct.pack("<d", v) for v in values]


def same(a: rollup_blocks.Rows, b: rollup_blocks.Rows) -> None:
    ta, tb = a.tuples(), b.tuples()
    assert len(ta) == len(tb)
    for ra, rb in zip(ta, tb):
        assert ra[0] == rb[0] and ra[4] == rb[4]
        for i in (1, 2, 3, 5):
            assert bits([ra[i]]) == bits([rb[i]])


def roundtrip(rows: list[tuple]) -> rollup_blocks.Rows:
    packed = rollup_blocks.from_tuples(rows)
    back = rollup_blocks.decode(rollup_blocks.encode(packed))
    same(back, packed)
    assert back.tuples() is not None
    return back


def test_special_floats_round_trip_bit_for_bit_in_every_float_column():
    rows = [(60_000 * i, v, SPECIAL[-1 - i % len(SPECIAL)], v, i + 1, SPECIAL[(i + 3) % len(SPECIAL)])
            for i, v in enumerate(SPECIAL * 3)]
    back = roundtrip(rows)
    got = back.tuples()
    assert bits([r[1] for r in got]) == bits([r[1] for r in rows])
    assert bits([r[5] for r in got]) == bits([r[5] for r in rows])
    assert [r[4] for r in got] == [r[4] for r in rows]


def test_gauge_increase_all_null_and_mixed_nulls():
    gauge = [(60_000 * i, 1.0 + i, 2.0 + i, 3.0 + i, 6, None) for i in range(200)]
    back = roundtrip(gauge)
    assert all(r[5] is None for r in back.tuples())
    mixed = [(60_000 * i, None if i % 7 == 0 else -0.0, 1.0, None if i % 3 == 0 else float(i), 6,
              None if i % 5 == 0 else STALE_NAN) for i in range(77)]
    back = roundtrip(mixed)
    assert [r[5] is None for r in back.tuples()] == [i % 5 == 0 for i in range(77)]
    assert [r[1] is None for r in back.tuples()] == [i % 7 == 0 for i in range(77)]


def test_real_counter_shape_and_gauge_shape_stay_small():
    counter = [(1_700_000_000_000 + 60_000 * i, 1e6 + 600 * i, 1e6 + 600 * i + 540, 6e6 + 3600 * i, 6, 600.0)
               for i in range(1440)]
    data = rollup_blocks.encode(rollup_blocks.from_tuples(counter))
    assert len(data) < 1440  # under a byte per row for a steady counter
    roundtrip(counter)


def test_empty_block_and_refusals():
    assert rollup_blocks.decode(rollup_blocks.encode(rollup_blocks.empty())).tuples() == []
    with pytest.raises(RollupBlockError, match="strictly increasing"):
        rollup_blocks.encode(rollup_blocks.from_tuples([(60_000, 1.0, 1.0, 1.0, 1, None)] * 2))
    data = rollup_blocks.encode(rollup_blocks.from_tuples([(60_000, 1.0, 1.0, 1.0, 1, None)]))
    with pytest.raises(RollupBlockError, match="version"):
        rollup_blocks.decode(b"\x02" + data[1:])
    with pytest.raises(RollupBlockError):
        rollup_blocks.decode(data[:-1])
    with pytest.raises(RollupBlockError, match="shorter"):
        rollup_blocks.decode(b"\x01\x00")


def test_merge_newer_rows_win_on_shared_buckets():
    older = rollup_blocks.from_tuples([(60_000 * i, 1.0, 1.0, 1.0, 1, None) for i in range(10)])
    newer = rollup_blocks.from_tuples([(60_000 * 3, 2.0, 2.0, 4.0, 2, None), (60_000 * 12, 5.0, 5.0, 5.0, 1, None)])
    merged = rollup_blocks.merge(older, newer).tuples()
    assert [r[0] for r in merged] == [60_000 * i for i in (*range(10), 12)]
    assert merged[3] == (180_000, 2.0, 2.0, 4.0, 2, None)
    appended = rollup_blocks.merge(older, rollup_blocks.from_tuples([(60_000 * 20, 9.0, 9.0, 9.0, 1, 1.0)])).tuples()
    assert appended[-1] == (1_200_000, 9.0, 9.0, 9.0, 1, 1.0) and appended[0][5] is None
    assert np.array_equal(rollup_blocks.merge(older, rollup_blocks.empty()).ts, older.ts)


def test_a_block_read_for_some_columns_decodes_those_bit_for_bit_and_leaves_the_rest_null():
    rows = [(60_000 * i, -float(i), SPECIAL[i % len(SPECIAL)], 0.5 * i, i + 2, None if i % 3 else STALE_NAN)
            for i in range(40)]
    data = rollup_blocks.encode(rollup_blocks.from_tuples(rows))
    got = rollup_blocks.decode(data, ("increase",)).tuples()
    assert [(r[0], r[4]) for r in got] == [(r[0], r[4]) for r in rows]  # bucket starts and counts always
    assert bits([r[5] for r in got]) == bits([r[5] for r in rows])
    assert {(r[1], r[2], r[3]) for r in got} == {(None, None, None)}
    got = rollup_blocks.decode(data, ("max", "sum")).tuples()
    assert bits([r[2] for r in got]) == bits([r[2] for r in rows])
    assert bits([r[3] for r in got]) == bits([r[3] for r in rows])
    assert {(r[1], r[5]) for r in got} == {(None, None)}


def test_a_block_of_every_minute_from_its_start_gives_its_bucket_starts_without_decoding_them():
    day = 86_400_000 * 20_500
    every = [(day + 60_000 * i, 1.0, 2.0, 0.1 * i, 3, None) for i in range(1440)]
    gap = every[:700] + every[701:]  # a minute missing: its bucket starts must be decoded
    late = every[5:]  # from the sixth minute of the day on
    for rows in (every, gap, late):
        data = rollup_blocks.encode(rollup_blocks.from_tuples(rows))
        got = rollup_blocks.decode(data, ("sum",), day, rows[-1][0])
        assert got.ts.tolist() == [r[0] for r in rows]
        assert bits(got.sum.tolist()) == bits([r[3] for r in rows]) and got.count.tolist() == [3] * len(rows)
    # Cut bytes are refused even when the bucket starts need no decoding:
    with pytest.raises(RollupBlockError):
        rollup_blocks.decode(rollup_blocks.encode(rollup_blocks.from_tuples(every))[:-3], ("sum",), day,
                             every[-1][0])


def test_many_blocks_read_in_chunks_give_each_blocks_counter_rows_bit_for_bit():
    # Blocks whose increase column is whole, partly NULL, wholly NULL (a gauge's) and empty,
    # read in chunks of whole blocks of up to 50 rows, or of the largest block's 60; their
    # buckets every minute from the block's start (computed, not decoded), from later in
    # the day, or with gaps.
    every, later, gaps = (lambda i: i), (lambda i: 600 + i), (lambda i: i + i // 7)
    shapes = [(30, every, lambda i: 0.1 * i), (60, gaps, lambda i: None if i % 4 == 1 else SPECIAL[i % len(SPECIAL)]),
              (20, later, lambda i: None), (0, every, lambda i: 0.0),
              (45, every, lambda i: float(i) if i % 9 else None), (7, later, float), (1, every, float)]
    cold, want = [], []
    for b, (n, minute, increase) in enumerate(shapes):
        rows = [(86_400_000 * b + 60_000 * minute(i), 1.0, 2.0, 3.0, i + 1, increase(i)) for i in range(n)]
        cold.append((100 + b, 86_400_000 * b, rows[-1][0] if rows else 86_400_000 * b,
                     rollup_blocks.encode(rollup_blocks.from_tuples(rows))))
        want.append([(r[0], r[4], r[5]) for r in rows if r[5] is not None])
    got: list[list] = [[] for _ in shapes]
    firsts = []
    for part in rollup_blocks.increases(cold, chunk=50):
        firsts.append(part.first)
        at = 0
        for b, size in enumerate(part.sizes.tolist(), part.first):
            got[b].extend(zip(part.ts[at:at + size].tolist(), part.count[at:at + size].tolist(),
                              part.increase[at:at + size].tolist()))
            at += size
        assert at == len(part.ts) == len(part.count) == len(part.increase)
    assert firsts == [0, 1, 2, 4]  # 30 | 60 | 20 + 0 | 45 + 7 + 1
    for g, w in zip(got, want):
        assert [(t, c) for t, c, _ in g] == [(t, c) for t, c, _ in w]
        assert bits([v for _, _, v in g]) == bits([v for _, _, v in w])
    with pytest.raises(RollupBlockError):
        list(rollup_blocks.increases([(1, 0, 0, cold[0][3][:-1])]))


def test_a_series_blocks_decoded_into_one_array_per_column_are_the_blocks_joined():
    """``decode_joined`` of a series' blocks is ``concat`` of each block's ``decode``, for any
    choice of float columns: whole minutes and gaps, columns without NULLs, with some and
    with only NULLs (a gauge's increase), special floats, an empty block; and corrupt bytes
    are refused as ``decode`` refuses them."""
    rng = np.random.default_rng(11)

    def block(n: int, start: int, nulls: float, gaps: bool) -> tuple[int, int, bytes]:
        ts = (np.sort(rng.choice(np.arange(3 * n), n, replace=False)) if gaps else np.arange(n)) * 60_000 + start
        cols = []
        for _ in range(4):
            values = rng.random(n) * 1e6 - 5e5
            values[: min(n, len(SPECIAL))] = SPECIAL[:n]
            ok = np.zeros(n, bool) if nulls >= 1 else rng.random(n) >= nulls
            cols.append((values, None if ok.all() else ok))
        rows = rollup_blocks.Rows(ts.astype(np.int64), cols[0][0], cols[1][0], cols[2][0], rng.integers(1, 9, n),
                                  cols[3][0], cols[0][1], cols[1][1], cols[2][1], cols[3][1])
        return int(ts[0]), int(ts[-1]), rollup_blocks.encode(rows)

    day = 86_400_000
    blocks = [block(1440, 0, 0.0, False), block(300, day, 0.3, True), block(500, 2 * day, 1.0, False),
              block(1, 3 * day, 0.0, False)]
    empty = (4 * day, 4 * day, rollup_blocks.encode(rollup_blocks.empty()))
    for parts in (blocks, blocks[1:3], [blocks[2]], [blocks[0], empty, blocks[3]]):
        for floats in (rollup_blocks.FLOATS, ("sum",), ("increase",), ("min", "max"), ()):
            want = rollup_blocks.concat([rollup_blocks.decode(data, floats, start, end) for start, end, data in parts])
            got = rollup_blocks.decode_joined(parts, floats)
            same(got, want)
            for name in rollup_blocks.FLOATS:
                assert np.array_equal(got.present(name), want.present(name)), name
    start, end, data = blocks[1]
    with pytest.raises(RollupBlockError):
        rollup_blocks.decode_joined([blocks[0], (start, end, data[:-3])])  # shorter than its header says
    with pytest.raises(RollupBlockError):
        rollup_blocks.decode_joined([(start, end, data[:10])])
