"""Storage benchmark: bytes per raw sample on disk after N samples (default 10 million)
stored through the ingest service into a fresh SQLite database (1,000-sample batches of
100 series, random float values every 10 s, like a host agent's gauges).

    python bench/storage.py [--samples 10000000]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import SECONDS_MAX, ConsoleConfig  # noqa: E402
from console.ingest.batch import Batch, MetricIn, canonical_labels  # noqa: E402
from console.ingest.service import IngestService  # noqa: E402
from console.storage.database import Database  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fd-storage-"))
    path = work / "fleetdeck.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    now = time.time()
    window = ConsoleConfig(sample_max_age=SECONDS_MAX, sample_max_future=SECONDS_MAX)  # accept any stamp
    service = IngestService(db, clock=lambda: now, config=window)
    rnd = random.Random(1)
    labels = [canonical_labels({"cpu": str(i % 64), "mode": f"m{i // 64}"}) for i in range(args.series)]
    per_series = args.samples // args.series
    t0 = int(now * 1000) - per_series * 10_000
    start = time.perf_counter()
    for off in range(0, per_series, 10):
        for first in range(0, args.series, 100):
            metrics = [MetricIn("node_cpu_seconds_total", "gauge", labels[s],
                                [(t0 + (off + p) * 10_000, rnd.random() * 1000) for p in range(10)])
                       for s in range(first, first + 100)]
            service.store(Batch("storage-1", uuid.uuid4().hex, None, None, None, "{}", metrics))
    elapsed = time.perf_counter() - start
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        n = conn.exec_driver_sql("SELECT COUNT(*) FROM samples").scalar()
        samples_bytes = conn.exec_driver_sql(
            "SELECT SUM(pgsize) FROM dbstat WHERE name = 'samples'").scalar() if _has_dbstat(conn) else None
    db.close()
    size = sum(os.path.getsize(p) for p in work.iterdir() if p.name.startswith("fleetdeck.db"))
    print(f"samples: {n:,}  stored in {elapsed:.0f} s ({n / elapsed:,.0f}/s through IngestService.store)")
    print(f"database files: {size:,} bytes  -> {size / n:.1f} B per raw sample (whole file)")
    if samples_bytes:
        print(f"samples table alone: {samples_bytes / n:.1f} B per sample")
    return 0


def _has_dbstat(conn) -> bool:  # noqa: ANN001
    try:
        conn.exec_driver_sql("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except Exception as exc:  # dbstat is a compile-time option of SQLite
        print(f"(no dbstat: {exc.__class__.__name__})")
        return False


if __name__ == "__main__":
    sys.exit(main())
