"""Alerting's cost to ingest: committed samples/s through the real HTTP API (bench/ingest.py's
agents and batches: 1,000 samples per POST, one agent token per host) against a console
process with rule evaluation off (no rules, shipped rules disabled) and on (a copy of the
shipped rules plus generated ``node_load15 > K`` rules, ``--rules`` in all, every group
every 15 s),
alternated in the same sitting: off, on, off, on, ... ``--pairs`` times. Prints each run,
the median of each mode, the cost (1 - on/off) and the load average at each run's start.

One SQLite database serves every run. Before the first, it gets ``--hosts`` hosts with
``--hours`` of node_exporter-like samples every 60 s (bench/alerting.py's ``load``); the
agents POST as the first ``--agents`` of those hosts, so the rules evaluate the hosts being
ingested. Each run starts a fresh console, waits ``--settle`` seconds, ingests for
``--seconds`` (a group runs first 15 s after start, then every 15 s, so the defaults 12 and
30 take in two rounds) and, with rules on, reads the rule evaluation
counters from ``/metrics`` to show the rounds really ran. Each run's batches are timed in
a window of their own in the past, so no run rewrites another's samples.

    python bench/alerting_ingest.py [--pairs 3] [--seconds 30] [--hosts 500] [--rules 500]
                                    [--agents 4] [--hours 2] [--settle 12]
"""
from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerting import load, write_rules  # noqa: E402
from ingest import POINTS, REPO, bodies, drive, start_console, stop_console  # noqa: E402

from console.storage.database import Database  # noqa: E402

INTERVAL = 60  # seconds between the preloaded samples, as bench/alerting.py


def rule_counters(port: int) -> dict[str, float]:
    """Sums of the console's rule evaluation series on /metrics (Prometheus text format)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {"evaluations": 0.0, "failures": 0.0, "slowest_group_s": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("fleetdeck_rule_evaluations_total{"):
            out["evaluations"] += float(value)
        elif name.startswith("fleetdeck_rule_evaluation_failures_total{"):
            out["failures"] += float(value)
        elif name.startswith("fleetdeck_rule_group_last_duration_seconds{"):
            out["slowest_group_s"] = max(out["slowest_group_s"], float(value))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="off/on pairs (default 3)")
    ap.add_argument("--seconds", type=float, default=30, help="ingest seconds per run (default 30)")
    ap.add_argument("--hosts", type=int, default=500, help="preloaded hosts the rules evaluate (default 500)")
    ap.add_argument("--rules", type=int, default=500, help="rules in all, the 8 shipped included (default 500)")
    ap.add_argument("--agents", type=int, default=4, help="concurrent agents, one host each (default 4)")
    ap.add_argument("--hours", type=float, default=2.0, help="hours of preloaded samples per host (default 2)")
    ap.add_argument("--settle", type=float, default=12.0,
                    help="seconds between start-up and ingest (default 12: rounds run 15 s after start, then every 15 s)")
    args = ap.parse_args()
    if not 0 < args.agents <= args.hosts:
        ap.error("--agents must be between 1 and --hosts")
    work = Path(tempfile.mkdtemp(prefix="fd-alert-ingest-"))
    url = f"sqlite:///{work / 'bench.db'}"
    db = Database(url)
    db.migrate()
    now = time.time()
    points = int(args.hours * 3600 / INTERVAL)
    t = time.perf_counter()
    n = load(db, args.hosts, int(now) - points * INTERVAL, points, INTERVAL, now)
    db.close()
    print(f"loaded {n:,} samples for {args.hosts} hosts in {time.perf_counter() - t:.1f} s", flush=True)

    configs = {"off": work / "off.yaml", "on": work / "on.yaml"}
    configs["off"].write_text("alerting:\n  rule_files: []\n  default_rules: false\n")
    # The shipped groups run every minute; a copy of them runs every 15 s with the others.
    shipped = work / "shipped-15s.yml"
    text = (REPO / "console/alerting/default_rules.yml").read_text()
    shipped.write_text(text.replace("interval: 1m", "interval: 15s"))
    generated = args.rules - sum(len(g["rules"]) for g in yaml.safe_load(text)["groups"])
    rules = write_rules(work / "generated.yml", generated)
    configs["on"].write_text(f"alerting:\n  rule_files: [{str(rules)!r}, {str(shipped)!r}]\n"
                             "  evaluation_interval: 15s\n  default_rules: false\n")
    env = dict(os.environ, FLEETDECK_DATA_DIR=str(work), FLEETDECK_DATABASE_URL=url,
               FLEETDECK_ROLLUP_INTERVAL="0", FLEETDECK_INGEST_RATE_PER_HOST="0")  # no admission limit
    cli = [sys.executable, "-c", "import sys; from console.cli import main; sys.exit(main())"]
    hosts = [f"bench-{h:03d}" for h in range(args.agents)]  # names bench/alerting.py's load gives
    tokens = [subprocess.run(cli + ["token", "create", "--agent", h], env=env, cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip() for h in hosts]
    per_agent = int(args.seconds * 150_000 / 1000 / args.agents) + 20
    span_ms = per_agent * POINTS * 1000  # the time one run's batches cover, per host
    rates: dict[str, list[float]] = {"off": [], "on": []}
    log = open(work / "console.log", "wb")
    run = 0
    for pair in range(args.pairs):
        for mode in ("off", "on"):
            run += 1
            t0 = int(time.time() * 1000) - 600_000 - run * span_ms
            prepared = [bodies(h, per_agent, t0) for h in hosts]
            loadavg = os.getloadavg()
            proc, port = start_console(cli, dict(env, FLEETDECK_CONFIG=str(configs[mode])), log)
            try:
                time.sleep(args.settle)
                total, latencies, elapsed = drive(port, tokens, prepared, args.seconds)
                counters = rule_counters(port)
            finally:
                stop_console(proc)
            rate = total / elapsed
            rates[mode].append(rate)
            lat = sorted(latencies)
            extra = ""
            if mode == "on":
                if not counters["evaluations"]:
                    raise SystemExit("rules on, yet no rule was evaluated (see " + str(work / "console.log") + ")")
                extra = (f"  {args.rules} rules, evaluations {counters['evaluations']:.0f} (failed {counters['failures']:.0f}),"
                         f" slowest group {counters['slowest_group_s']:.2f} s")
            elif counters["evaluations"]:
                raise SystemExit("rules off, yet rules were evaluated")
            print(f"pair {pair + 1} {mode:>3}: {rate:10,.0f} samples/s  p50 {statistics.median(lat) * 1000:.1f} ms"
                  f"  p99 {lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms  load {loadavg[0]:.2f} {loadavg[1]:.2f}"
                  f" {loadavg[2]:.2f}{extra}", flush=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"median off {off:,.0f} samples/s, on {on:,.0f} samples/s: on/off {on / off:.2f}, "
          f"cost {(1 - on / off) * 100:.0f} %")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
