"""Cold block codec comparison on the agent's real host data: pcodec (the codec of
console/storage/blocks.py) against delta-of-delta timestamps + XOR'ed float bits, each
compressed with zstandard (numpy vectorised; Gorilla's transforms with zstd as the entropy
coder), and against random floats (the worst case).

The host collector (collectors/host.py, the agent's ``host`` input) is read ``--collections``
times, ``--every`` seconds apart, on this machine; each series' samples are stamped 10 s
apart (the agent's default interval) plus the jitter of the real collection times. Prints
bytes per sample of each codec over every series, and encode/decode time per block.

    python bench/block_codec.py [--collections 240] [--every 1] [--save host.json | --load host.json]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.storage import blocks  # noqa: E402

ZSTD_LEVEL = 3


def collect(n: int, every: float) -> dict[str, dict]:
    from collectors.host import HostCollector

    collector = HostCollector()
    out: dict[str, dict] = {}
    for _ in range(n):
        ts = int(time.time() * 1000)
        for s in collector.collect():
            key = s.name + json.dumps(s.labels, sort_keys=True)
            entry = out.setdefault(key, {"type": s.type, "ts": [], "v": []})
            entry["ts"].append(ts)
            entry["v"].append(s.value)
        time.sleep(every)
    return out


def dod_xor_zstd(ts: np.ndarray, values: np.ndarray) -> bytes:
    """Delta-of-delta int64 timestamps and XOR-with-previous float64 bits, zstd level 3."""
    dod = np.diff(ts, n=2, prepend=[0, 0]) if len(ts) else ts
    bits = values.view(np.uint64)
    xor = np.bitwise_xor(bits, np.concatenate((np.zeros(1, np.uint64), bits[:-1])))
    # Byte-transposed (all low bytes, then the next...) so zstd sees the runs of zero bytes.
    planes = np.concatenate([dod.view(np.uint8).reshape(-1, 8).T.ravel(), xor.view(np.uint8).reshape(-1, 8).T.ravel()])
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(planes.tobytes())


def undo_dod_xor_zstd(data: bytes, n: int) -> tuple[np.ndarray, np.ndarray]:
    planes = np.frombuffer(zstandard.ZstdDecompressor().decompress(data), np.uint8)
    dod = planes[:8 * n].reshape(8, n).T.copy().view(np.int64).ravel()
    xor = planes[8 * n:].reshape(8, n).T.copy().view(np.uint64).ravel()
    return np.cumsum(np.cumsum(dod)), np.bitwise_xor.accumulate(xor).view(np.float64)


def measure(series: list[tuple[np.ndarray, np.ndarray]], label: str) -> None:
    samples = sum(len(t) for t, _ in series)
    for name, enc in (("pcodec", lambda t, v: blocks.encode(t, v)), ("dod+xor+zstd", dod_xor_zstd)):
        start = time.perf_counter()
        encoded = [enc(t, v) for t, v in series]
        t_enc = time.perf_counter() - start
        start = time.perf_counter()
        for (t, v), data in zip(series, encoded):
            if name == "pcodec":
                rt, rv = blocks.decode_arrays(data)
            else:
                rt, rv = undo_dod_xor_zstd(data, len(t))
            assert np.array_equal(rt, t) and np.array_equal(rv.view(np.uint64), v.view(np.uint64))
        t_dec = time.perf_counter() - start
        size = sum(len(d) for d in encoded)
        print(f"{label:<22} {name:<13} {size / samples:6.2f} B/sample   encode {t_enc / len(series) * 1e6:6.0f} µs"
              f"   decode {t_dec / len(series) * 1e6:6.0f} µs per block of ~{samples // len(series)} samples")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collections", type=int, default=240)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--save")
    ap.add_argument("--load")
    args = ap.parse_args()
    data = json.loads(Path(args.load).read_text()) if args.load else collect(args.collections, args.every)
    if args.save:
        Path(args.save).write_text(json.dumps(data))
    series = []
    for entry in data.values():
        real = np.asarray(entry["ts"], np.int64)
        jitter = real - real[0] - np.arange(len(real)) * round(float(np.median(np.diff(real)))) if len(real) > 1 else real * 0
        series.append((1_700_000_000_000 + np.arange(len(real), dtype=np.int64) * 10_000 + jitter,
                       np.asarray(entry["v"], np.float64)))
    print(f"{len(series)} series of the host collector, {sum(len(t) for t, _ in series):,} samples")
    measure(series, "agent host data")
    rnd = random.Random(1)
    floats = [(t, np.asarray([rnd.random() * 1000 for _ in t], np.float64)) for t, _ in series]
    measure(floats, "random floats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
