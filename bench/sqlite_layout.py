"""Raw sqlite3, no console: what a sample costs to store as samples accumulate, by the
layout of the hot rows. The console's shape: 64 hosts x 500 series (consecutive ids per
host), one point per series per batch, each host's batches 10 s apart, one executemany per
batch, 32 batches per commit, WAL, ``synchronous=NORMAL``, ``mmap_size`` 1 GiB. Layouts:
``series`` (clustered by (series_id, ts), the console before migration sqlhead_0001) and
``bucket W`` (by (bucket, series_id, ts), bucket = ts / W ms; the console uses W = 60000).
Prints, per step of ``PER`` samples (environment, default 320,000; ``STEPS`` steps, default
8), the samples per series stored so far and this process's user and system CPU per sample
(the rows are built inside the timed loop, the same for every layout).

    python bench/sqlite_layout.py series
    python bench/sqlite_layout.py bucket 60000
"""
from __future__ import annotations

import os
import random
import resource
import sqlite3
import sys
import tempfile

HOSTS, SERIES = 64, 500


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def run(layout: str, width: int, steps: int, per_step: int, path: str) -> list[tuple[float, float, float]]:
    """``[(samples per series stored, user us/sample, system us/sample)]`` per step."""
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "mmap_size=1073741824"):
        db.execute("PRAGMA " + pragma)
    if layout == "series":
        db.execute("CREATE TABLE samples (series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, "
                   "PRIMARY KEY (series_id, ts)) WITHOUT ROWID")
        sql = "INSERT OR IGNORE INTO samples (series_id, ts, value) VALUES (?, ?, ?)"
    else:
        db.execute("CREATE TABLE samples (bucket INTEGER NOT NULL, series_id INTEGER NOT NULL, ts INTEGER NOT NULL, "
                   "value REAL NOT NULL, PRIMARY KEY (bucket, series_id, ts)) WITHOUT ROWID")
        sql = f"INSERT OR IGNORE INTO samples (bucket, series_id, ts, value) VALUES (?2 / {int(width)}, ?1, ?2, ?3)"
    rnd = random.Random(1)
    clock = [1_790_000_000_000 + rnd.randrange(10_000) for _ in range(HOSTS)]
    out, done = [], 0
    for _ in range(steps):
        n = 0
        u0, s0 = cpu()
        while n < per_step:
            db.execute("BEGIN")
            for _ in range(32):
                h = rnd.randrange(HOSTS)
                ts = clock[h]
                clock[h] += 10_000
                db.executemany(sql, [(h * SERIES + i + 1, ts + i % 7, rnd.random() * 100) for i in range(SERIES)])
                n += SERIES
            db.execute("COMMIT")
        u1, s1 = cpu()
        done += n
        out.append((done / (HOSTS * SERIES), (u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6))
    db.close()
    return out


def main() -> None:
    layout = sys.argv[1]
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    steps, per = int(os.environ.get("STEPS", 8)), int(os.environ.get("PER", 320_000))
    with tempfile.TemporaryDirectory(prefix="fd-layout-") as tmp:
        for spp, u, s in run(layout, width, steps, per, os.path.join(tmp, "samples.db")):
            print(f"{layout} {width // 1000}s: {spp:6.1f} samples/series stored, "
                  f"user {u:4.2f} + sys {s:4.2f} = {u + s:4.2f} us/sample", flush=True)


if __name__ == "__main__":
    main()
