"""Ingest CPU per sample in one process, split into decoding and storing, without HTTP.

Builds 64 hosts' batches of one point of each of 500 series (the agent's shape, gzip JSON,
as bench/ingest.py sends them), then per round decodes every host's batch as the IOLoop
does (``IngestService.decode``) and stores them in groups as the writer does
(``_prepare_rows`` then ``store_group`` under the write turn), timing each with
``time.process_time``. Also printed: the cyclic garbage collector's time per sample
(``gc.callbacks``), with the collector set as ``fleetdeck serve`` sets it (``tune_gc``).
The first rounds (series created, caches filled) are left out of the medians.

    python bench/ingest_cpu.py [--rounds 25] [--group 8] [--database-url URL]

To compare two trees, run the file of each tree in turn (each imports its own console):
the machine's speed moves between sittings more than these changes do.
"""
from __future__ import annotations

import argparse
import gc
import gzip
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from console.config import load_config  # noqa: E402
from console.server import tune_gc  # noqa: E402
from console.services import build_services  # noqa: E402

NAMES = ["node_cpu_seconds_total", "node_memory_bytes", "node_disk_io_bytes_total", "node_network_bytes_total",
         "node_filesystem_avail_bytes", "node_load1", "node_context_switches_total", "node_netstat_Tcp_CurrEstab"]
WARM_ROUNDS = 3


class GcTimer:
    """Time spent in the cyclic collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds, self.collections, self._start = 0.0, 0, 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict) -> None:  # noqa: ARG002 - gc.callbacks signature
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25, help="batches per host")
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--group", type=int, default=8, help="batches per transaction (group commit)")
    parser.add_argument("--database-url", help="PostgreSQL (a schema of its own); default: a SQLite file")
    args = parser.parse_args()
    if args.rounds <= WARM_ROUNDS:
        parser.error(f"--rounds must be above {WARM_ROUNDS}")
    work = Path(tempfile.mkdtemp(prefix="fleetdeck-ingest-cpu-"))
    schema = None
    env = {"FLEETDECK_DATA_DIR": str(work), "FLEETDECK_LISTEN": "127.0.0.1:0"}
    if args.database_url:
        from tests.pg import create_schema, schema_url

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        create_schema(args.database_url, schema)
        env["FLEETDECK_DATABASE_URL"] = schema_url(args.database_url, schema)
    try:
        services = build_services(load_config(path=None, env=env, overrides={
            "ingest_rate_per_host": 0.0, "ingest_samples_per_host": 0.0, "ingest_lines_per_host": 0.0}))
        try:
            run(args, services)
        finally:
            services.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if schema:
            from tests.pg import drop_schema

            drop_schema(args.database_url, schema)
    return 0


def run(args: argparse.Namespace, services) -> None:  # noqa: ANN001 - console.services.Services
    ingest = services.ingest
    series = [(NAMES[i % len(NAMES)], {"device": f"dev{i // len(NAMES)}", "mode": ("user", "system", "idle")[i % 3]})
              for i in range(args.series)]
    rnd = random.Random(1)
    t0 = int(time.time() * 1000) - 3_600_000

    def body(host: int, round_: int) -> bytes:
        ts = t0 + round_ * 10_000 + host * 37
        doc = {"host": f"cpu-bench-{host}", "batch_id": uuid.uuid4().hex, "sent_at": time.time(),
               "agent": {"version": "bench", "interval": 10},
               "metrics": [{"name": name, "type": "gauge", "labels": labels,
                            "points": [[ts, round(rnd.random() * 1e6, 3)]]} for name, labels in series]}
        return gzip.compress(orjson.dumps(doc), 6)

    bodies = [[body(h, r) for h in range(args.hosts)] for r in range(args.rounds)]
    tune_gc()
    collector = GcTimer()
    per_round = args.hosts * args.series
    decode_us, store_us = [], []
    gc_before = 0.0
    for r, round_bodies in enumerate(bodies):
        if r == WARM_ROUNDS:
            gc_before, collections_before = collector.seconds, collector.collections
        c0 = time.process_time()
        batches = [ingest.decode(b, "gzip", 10_000_000) for b in round_bodies]
        c1 = time.process_time()
        for g in range(0, len(batches), args.group):
            group = batches[g:g + args.group]
            now = time.time()
            prepared = ingest._prepare_rows(group, now)
            with ingest._db.turn():
                results = ingest.store_group(group, prepared, now)
            if any(res.accepted_samples != args.series for res in results):
                raise SystemExit(f"a batch was not stored whole: {results[0]}")
        c2 = time.process_time()
        if r >= WARM_ROUNDS:
            decode_us.append((c1 - c0) / per_round * 1e6)
            store_us.append((c2 - c1) / per_round * 1e6)
    measured = (args.rounds - WARM_ROUNDS) * per_round
    total = [d + s for d, s in zip(decode_us, store_us)]
    print(f"{args.hosts} hosts x {args.series} series x 1 point, groups of {args.group}, "
          f"{args.rounds - WARM_ROUNDS} rounds measured (median per sample): decode {statistics.median(decode_us):.2f} us, "
          f"store {statistics.median(store_us):.2f} us, total {statistics.median(total):.2f} us; "
          f"garbage collector {(collector.seconds - gc_before) / measured * 1e6:.2f} us "
          f"({collector.collections - collections_before} collections)")


if __name__ == "__main__":
    sys.exit(main())
