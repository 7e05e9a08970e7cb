"""The cold block codec (console/storage/blocks.py): bit-exact round trips of timestamps and
float64 values, including NaN payloads (Prometheus' stale marker), ±Inf and -0.0; empty
blocks; refusal of repeated or decreasing timestamps and of foreign bytes."""
from __future__ import annotations

import math
import random
import struct

import pytest

from console.storage import blocks

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]  # Prometheus' staleness marker


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def test_round_trip_is_bit_exact_for_special_values():
    ts = [1_700_000_000_000 + i * 10_000 for i in range(8)]
    values = [0.25, math.nan, STALE_NAN, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    out = blocks.decode(blocks.encode(ts, values))
    assert [t for t, _ in out] == ts
    assert [bits(v) for _, v in out] == [bits(v) for v in values]
    assert bits(out[2][1]) == 0x7FF0000000000002  # the stale marker keeps its payload


def test_round_trip_of_host_shaped_series():
    rnd = random.Random(7)
    ts, values, counter = [], [], 0.0
    t = 1_700_000_000_000
    for _ in range(720):
        t += 10_000 + rnd.randint(-40, 40)  # the agent's jitter around its interval
        counter += rnd.random() * 3
        ts.append(t)
        values.append(round(counter, 2))
    data = blocks.encode(ts, values)
    assert blocks.decode(data) == list(zip(ts, values))
    assert len(data) < 720 * 4  # well under 4 bytes a sample for a slowly moving counter


def test_random_floats_round_trip():
    rnd = random.Random(3)
    values = [rnd.random() * 1000 for _ in range(500)]
    ts = list(range(0, 5_000_000, 10_000))
    assert blocks.decode(blocks.encode(ts, values)) == list(zip(ts, values))


def test_single_sample_and_empty_block():
    assert blocks.decode(blocks.encode([42], [1.5])) == [(42, 1.5)]
    data = blocks.encode([], [])
    assert blocks.decode(data) == []
    assert len(data) == 9


@pytest.mark.parametrize("ts", [[1, 2, 2, 3], [5, 4], [1, 3, 2]])
def test_repeated_or_decreasing_timestamps_are_refused(ts):
    with pytest.raises(blocks.BlockError, match="strictly increasing"):
        blocks.encode(ts, [0.0] * len(ts))


def test_mismatched_lengths_and_foreign_bytes_are_refused():
    with pytest.raises(blocks.BlockError, match="2 timestamps but 1 values"):
        blocks.encode([1, 2], [0.0])
    with pytest.raises(blocks.BlockError, match="shorter than its header"):
        blocks.decode(b"\x01")
    with pytest.raises(blocks.BlockError, match="unknown block format version 9"):
        blocks.decode(b"\x09" + bytes(8))
    good = blocks.encode([1, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(blocks.BlockError, match="different number of samples"):
        blocks.decode(good[:1] + struct.pack("<I", 4) + good[5:])
    with pytest.raises(blocks.BlockError, match="corrupt block"):
        blocks.decode(good[:9] + b"garbage" + good[16:])
