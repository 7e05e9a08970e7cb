"""What 1m rollup rows would cost packed like cold sample blocks: one block per series per
2 h (120 buckets), each rollup column (bucket start, min, max, sum, count, increase)
compressed with pcodec, the codec of console/storage/blocks.py.

Data: the agent's real host data continued over ``--hours`` at the 10 s interval exactly as
bench/storage.py does (``host_shapes``: the host collector read ``--collections`` times on
this machine, or ``--load`` a file saved by bench/block_codec.py ``--save``), or random floats
(``--data random``). The 1m rows are computed with ``series_math.bucket_stats``, the rollup
job's in-memory form of its SQL. Every column round-trips bit for bit (checked). Prints
bytes per raw sample (the unit of BENCHMARKS.md "Cold blocks") per column and in total.

    python bench/rollup_codec.py [--data host|random] [--hours 24] [--collections 60] [--load host.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from pcodec import ChunkConfig, standalone

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from console.query.series_math import bucket_stats  # noqa: E402
from storage import host_shapes, random_shapes  # noqa: E402

MINUTE_MS = 60_000
BLOCK_BUCKETS = 120  # a 2 h block of 1m buckets, the width of the raw sample blocks
COLUMNS = ("ts", "min", "max", "sum", "count", "increase")
# A sample block's 9-byte header (version, row count, length of the first part) and the
# length of each further column part (4 bytes each): the bytes a block row adds to its columns.
HEADER_BYTES = 9 + 4 * (len(COLUMNS) - 1)


def pack(column: np.ndarray) -> bytes:
    return standalone.simple_compress(column, ChunkConfig())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=("host", "random"), default="host")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--series", type=int, default=0)
    ap.add_argument("--collections", type=int, default=60)
    ap.add_argument("--load")
    args = ap.parse_args()
    if args.data == "random" and not args.series:
        args.series = 100
    print(f"load average before: {os.getloadavg()}")
    shapes = host_shapes(args) if args.data == "host" else random_shapes(args)
    start_ms = 1_700_000_000_000 // (BLOCK_BUCKETS * MINUTE_MS) * (BLOCK_BUCKETS * MINUTE_MS)
    sizes = dict.fromkeys(COLUMNS, 0)
    headers = rows = samples = blocks = 0
    encode_s = 0.0
    for _, kind, _, values in shapes:
        points = [(start_ms + i * 10_000, v) for i, v in enumerate(values)]
        samples += len(points)
        stats = bucket_stats(points, MINUTE_MS)
        rows += len(stats)
        for at in range(0, len(stats), BLOCK_BUCKETS):
            part = stats[at:at + BLOCK_BUCKETS]
            cols = {"ts": np.asarray([r[0] for r in part], np.int64),
                    "min": np.asarray([r[1] for r in part], np.float64),
                    "max": np.asarray([r[2] for r in part], np.float64),
                    "sum": np.asarray([r[3] for r in part], np.float64),
                    "count": np.asarray([r[4] for r in part], np.int64),
                    # the tier keeps increases for counters only (NULL for gauges: no column at all)
                    "increase": np.asarray([r[5] for r in part], np.float64) if kind == "counter" else None}
            started = time.perf_counter()
            for name, col in cols.items():
                if col is None:
                    continue
                data = pack(col)
                back = standalone.simple_decompress(data)
                if back is None or back.tobytes() != col.tobytes():
                    raise SystemExit(f"{name} did not round-trip")
                sizes[name] += len(data)
            encode_s += time.perf_counter() - started
            headers += HEADER_BYTES
            blocks += 1
    total = sum(sizes.values()) + headers
    print(f"{len(shapes)} series, {samples:,} raw samples, {rows:,} 1m rows, {blocks:,} blocks of <= {BLOCK_BUCKETS} rows")
    for name in COLUMNS:
        print(f"  {name:<9} {sizes[name] / samples:6.3f} B/raw sample")
    print(f"  headers   {headers / samples:6.3f} B/raw sample")
    print(f"packed 1m tier: {total / samples:.3f} B per raw sample, {total / rows:.1f} B per 1m row "
          f"(encode + check {encode_s / blocks * 1e6:.0f} µs per block)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
