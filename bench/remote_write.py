"""Remote write benchmark: a real Prometheus scrapes ``--series`` series every second from a
static exposition file and remote-writes them into a real console process (SQLite by
default); prints the samples/s the console committed in steady state next to the rate
Prometheus offered, the samples per CPU-second of the console process (what a busy
machine cannot hide), Prometheus' send lag and failed/dropped counts, and a raw sqlite3
``executemany`` of as many rows (one commit per 500, Prometheus' batch size) in the same run.

    python bench/remote_write.py [--series 60000] [--seconds 30] [--db sqlite|postgres]
                                 [--samples-per-send 500] [--workers 1] [--max-shards N]

``--workers N`` starts ``fleetdeck serve --workers N``: the committed rate is then read from
Prometheus' own count of samples sent (each request answered 2xx was committed whole; the
console's /metrics is one worker's view) and the CPU is that of every worker process.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.procs import free_port  # noqa: E402
from tests.pg import create_schema, drop_schema  # noqa: E402


def scrape_metrics(url: str, prefix: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=30) as resp:
        for family in text_string_to_metric_families(resp.read().decode()):
            for sample in family.samples:
                if sample.name.startswith(prefix):
                    out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) and of its live child
    processes (the workers of ``serve --workers N``), from /proc."""
    def own(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own(pid) + sum(own(int(child)) for child in children)


def sent_samples(url: str) -> float:
    """Samples Prometheus sent and had acknowledged (2xx; with 0 retried, each counted once)."""
    return scrape_metrics(url, "prometheus_remote_storage_samples_total")["prometheus_remote_storage_samples_total"]


def wait_ready(url: str, proc: subprocess.Popen, what: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited {proc.returncode}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} not ready")


def baseline(samples: int, path: str) -> float:
    """Raw sqlite3: the samples table's shape and pragmas, executemany + commit per 500 rows."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE samples (bucket BIGINT, series_id INTEGER, ts BIGINT, value FLOAT, "
                 "PRIMARY KEY (bucket, series_id, ts)) WITHOUT ROWID")  # console/storage/hot_samples.py
    rows = [(i % 60000, 1_700_000_000_000 + (i // 60000) * 1000, random.random()) for i in range(samples)]
    t = time.perf_counter()
    for start in range(0, len(rows), 500):
        conn.executemany("INSERT OR IGNORE INTO samples (bucket, series_id, ts, value) VALUES (?2 / 60000, ?1, ?2, ?3)",
                         rows[start:start + 500])
        conn.commit()
    elapsed = time.perf_counter() - t
    conn.close()
    return samples / elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=60000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--samples-per-send", type=int, default=500,
                    help="Prometheus' queue_config.max_samples_per_send (2.42's default: 500)")
    ap.add_argument("--workers", type=int, default=1, help="fleetdeck serve --workers N")
    ap.add_argument("--max-shards", type=int, default=None,
                    help="Prometheus' queue_config.max_shards (2.42's default: 200)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fd-rw-bench-"))
    (work / "www").mkdir()
    lines = ["# TYPE bench_value gauge"]
    lines += [f'bench_value{{shard="{i % 100}",series="{i}"}} {random.random()}' for i in range(args.series)]
    (work / "www" / "metrics").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, FLEETDECK_DATA_DIR=str(work / "console"), FLEETDECK_ROLLUP_INTERVAL="0",
               PYTHONPATH=str(REPO))
    schema = None
    if args.db == "postgres":
        import uuid

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        env["FLEETDECK_DATABASE_URL"] = create_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    cli = [sys.executable, "-m", "console.cli"]
    # Admin commands never create a database: make it first, as an operator would.
    subprocess.run(cli + ["init"], env=env, cwd=REPO, check=True, capture_output=True)
    token = subprocess.run(cli + ["token", "create", "--agent", "prom-bench"], env=env, cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip()
    cport, wport, pport = free_port(), free_port(), free_port()
    env["FLEETDECK_LISTEN"] = f"127.0.0.1:{cport}"
    env["FLEETDECK_MAX_SERIES_PER_HOST"] = str(args.series + 5000)
    procs = []
    try:
        console = subprocess.Popen(cli + ["serve", "--workers", str(args.workers)], env=env, cwd=REPO, stdout=open(work / "console.log", "wb"),
                                   stderr=subprocess.STDOUT)
        procs.append(console)
        wait_ready(f"http://127.0.0.1:{cport}/healthz", console, "console")
        www = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(wport)],
                               cwd=work / "www", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(www)
        wait_ready(f"http://127.0.0.1:{wport}/metrics", www, "http.server")
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": [{"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{wport}"]}]}],
                  "remote_write": [{"url": f"http://127.0.0.1:{cport}/api/v1/write",
                                    "authorization": {"credentials": token},
                                    "queue_config": {"max_samples_per_send": args.samples_per_send,
                                                     **({"max_shards": args.max_shards} if args.max_shards
                                                        else {})}}]}
        (work / "prometheus.yml").write_text(json.dumps(config))
        prom = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{pport}"],
                                stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "wb"))
        procs.append(prom)
        wait_ready(f"http://127.0.0.1:{pport}/-/ready", prom, "prometheus")
        stored = f"http://127.0.0.1:{cport}/metrics"
        offered = f"http://127.0.0.1:{pport}/metrics"
        # Warm-up: every series created and written a few times (caches filled, shards scaled).
        deadline = time.monotonic() + 300
        def committed() -> float:
            if args.workers > 1:
                return sent_samples(offered)
            return scrape_metrics(stored, "fleetdeck_ingest_samples_total").get("fleetdeck_ingest_samples_total", 0)

        while committed() < 3 * args.series:
            if time.monotonic() > deadline:
                raise SystemExit("warm-up did not finish in 300 s")
            time.sleep(1)
        load0 = os.getloadavg()
        s0, o0, t0 = (committed(), scrape_metrics(offered, "prometheus_remote_storage_samples_in_total")[
                          "prometheus_remote_storage_samples_in_total"], time.perf_counter())
        cpu0 = cpu_seconds(console.pid)
        time.sleep(args.seconds)
        cpu1 = cpu_seconds(console.pid)
        s1 = committed()
        remote = scrape_metrics(offered, "prometheus_remote_storage_")
        t1 = time.perf_counter()
        o1 = remote["prometheus_remote_storage_samples_in_total"]
        lag = (remote["prometheus_remote_storage_highest_timestamp_in_seconds"]
               - remote["prometheus_remote_storage_queue_highest_sent_timestamp_seconds"])
        load = os.getloadavg()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    rate, offer = (s1 - s0) / (t1 - t0), (o1 - o0) / (t1 - t0)
    raw = baseline(int(min(s1 - s0, 2_000_000)) or 100_000, str(work / "baseline.db"))
    print(f"db={args.db} workers={args.workers} series={args.series} samples_per_send={args.samples_per_send} "
          f"seconds={t1 - t0:.1f}")
    print(f"offered by Prometheus: {offer:,.0f} samples/s; committed by the console: {rate:,.0f} samples/s")
    print(f"send lag at the end: {lag:.1f} s; failed: {remote['prometheus_remote_storage_samples_failed_total']:.0f}, "
          f"dropped: {remote['prometheus_remote_storage_samples_dropped_total']:.0f}, "
          f"retried: {remote['prometheus_remote_storage_samples_retried_total']:.0f}; "
          f"shards: {remote.get('prometheus_remote_storage_shards', 0):.0f}")
    print(f"console CPU: {cpu1 - cpu0:.1f} s for {s1 - s0:,.0f} samples = "
          f"{(s1 - s0) / max(cpu1 - cpu0, 1e-9):,.0f} samples per CPU-second")
    print(f"raw sqlite3 executemany (500-row commits): {raw:,.0f} samples/s  ratio: {rate / raw:.2f}x")
    print(f"load average: at the start {load0[0]:.2f}, at the end {load[0]:.2f}")
    if schema:
        drop_schema(os.environ["FLEETDECK_TEST_POSTGRES_URL"], schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
