"""Agent CPU seconds per 10,000 log lines tailed: the tailer reads a growing file, builds
records (level parsing on) and the batch is JSON-encoded and gzip-compressed as the
agent's client does; measured with process CPU time (user + system). Baseline in the same
run: the same number of lines read with plain ``readline`` (the floor of any tailer).

    python bench/logs_agent_cpu.py [--lines 200000]
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.logs import LogCollector, LogOptions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "app.log"
        log.write_text("")
        tail = LogCollector(LogOptions.from_mapping({"paths": [str(log)]}), tmp)
        tail.take()
        line = ("2025-11-21T04:42:18.123Z web-1 app[123]: INFO GET /api/v1/items 200 served in 12 ms "
                "user=alice session=0f3a9c cache=hit ")
        line = (line * 3)[:199] + "\n"
        with open(log, "w") as fh:
            fh.write(line * args.lines)
        t = time.process_time()
        n = 0
        with open(log, "rb") as fh:
            for _ in fh:
                n += 1
        baseline = time.process_time() - t
        t = time.process_time()
        sent = 0
        while True:
            records, cp = tail.take()
            if not records:
                break
            gzip.compress(json.dumps({"logs": records}, separators=(",", ":")).encode(), 6)
            tail.acknowledge(cp)
            sent += len(records)
        cpu = time.process_time() - t
        assert sent == args.lines, sent
        print(f"lines: {sent} of 200 bytes")
        print(f"baseline (readline only): {baseline / n * 10000:.4f} CPU s per 10k lines")
        print(f"tailer + records + JSON + gzip: {cpu:.2f} CPU s -> {cpu / sent * 10000:.4f} CPU s per 10k lines")


if __name__ == "__main__":
    main()
