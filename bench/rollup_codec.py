"""What 1m rollup rows cost packed into ``rollup_1m_blocks`` (console/storage/rollup_blocks.py):
one block per series per ``--block-hours`` (2 h: 120 buckets), each rollup column (bucket
start, min, max, sum, count, increase) compressed with pcodec, and what decoding one block
costs (a 24 h read decodes one to a few blocks per series).

Data: the agent's real host data continued over ``--hours`` at the 10 s interval exactly as
bench/storage.py does (``host_shapes``: the host collector read ``--collections`` times on
this machine, or ``--load`` a file saved by bench/block_codec.py ``--save``), or random floats
(``--data random``). The 1m rows are computed with ``series_math.bucket_stats``, the rollup
job's in-memory form of its SQL. Every block round-trips bit for bit (checked). Prints
bytes per raw sample (the unit of BENCHMARKS.md "Cold blocks") in total and the median
encode and decode time per block.

    python bench/rollup_codec.py [--data host|random] [--hours 24] [--collections 60] [--load host.json]
        [--block-hours 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from console.query.series_math import bucket_stats  # noqa: E402
from console.storage import rollup_blocks  # noqa: E402
from storage import host_shapes, random_shapes  # noqa: E402

MINUTE_MS = 60_000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=("host", "random"), default="host")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--series", type=int, default=0)
    ap.add_argument("--collections", type=int, default=60)
    ap.add_argument("--load")
    ap.add_argument("--block-hours", type=float, default=2.0)
    args = ap.parse_args()
    if args.data == "random" and not args.series:
        args.series = 100
    print(f"load average before: {os.getloadavg()}")
    shapes = host_shapes(args) if args.data == "host" else random_shapes(args)
    buckets = int(args.block_hours * 60)
    start_ms = 1_700_000_000_000 // (buckets * MINUTE_MS) * (buckets * MINUTE_MS)
    size = rows = samples = 0
    encode_us: list[float] = []
    decode_us: list[float] = []
    for _, kind, _, values in shapes:
        points = [(start_ms + i * 10_000, v) for i, v in enumerate(values)]
        samples += len(points)
        # the tier keeps increases for counters only (NULL for gauges)
        stats = [(*r[:5], r[5] if kind == "counter" else None) for r in bucket_stats(points, MINUTE_MS)]
        rows += len(stats)
        for at in range(0, len(stats), buckets):
            part = rollup_blocks.from_tuples(stats[at:at + buckets])
            started = time.perf_counter()
            data = rollup_blocks.encode(part)
            encode_us.append((time.perf_counter() - started) * 1e6)
            started = time.perf_counter()
            back = rollup_blocks.decode(data)
            decode_us.append((time.perf_counter() - started) * 1e6)
            if back.tuples() != part.tuples() or any(
                    getattr(back, c).tobytes() != getattr(part, c).tobytes() for c in ("ts", "min", "max", "sum", "count")):
                raise SystemExit("a block did not round-trip")
            size += len(data)
    print(f"{len(shapes)} series, {samples:,} raw samples, {rows:,} 1m rows, {len(decode_us):,} blocks of "
          f"<= {buckets} rows")
    print(f"packed 1m tier: {size / samples:.3f} B per raw sample, {size / rows:.2f} B per 1m row; per block "
          f"encode {np.median(encode_us):.0f} µs, decode {np.median(decode_us):.0f} µs (medians)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
