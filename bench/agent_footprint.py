"""Agent footprint beside Debian's prometheus-node-exporter, measured in the same run.

Both read the same /proc and /sys of this machine. node_exporter is scraped over HTTP
every INTERVAL seconds; the agent (``python -m agents``, real spool with fsync, real
HTTP client) collects every INTERVAL seconds and pushes to a stdlib sink answering 200.
Reported: RSS at the end (psutil, bytes), CPU time (user + system) per collection cycle
vs per scrape, and the number of series each produces.

Usage: python bench/agent_footprint.py [--cycles 60] [--interval 1]
Targets (issue 5): agent RSS <= 1.25x node_exporter's; CPU per cycle <= 1.0x its CPU per
scrape; >= 300 series.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    """Accepts ingest bodies, remembers the series count of the last one."""

    def __init__(self) -> None:
        self.batches = 0
        self.series = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the console (Tornado) answers

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = json.loads(gzip.decompress(self.rfile.read(int(self.headers["Content-Length"]))))
                sink.batches += 1
                sink.series = len(body["metrics"])
                payload = b'{"accepted_samples": 0, "accepted_logs": 0, "duplicate": false}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    exporter_bin = shutil.which("prometheus-node-exporter")
    if not exporter_bin:
        print("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")
        return 2
    state = tempfile.mkdtemp(prefix="fleetdeck-footprint-")
    port = free_port()
    exporter = subprocess.Popen([exporter_bin, f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink = Sink()
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_AGENT_TOKEN="bench")
    agent = subprocess.Popen([sys.executable, "-m", "agents", "--console", sink.url, "--host", "bench",
                              "--interval", str(args.interval), "--log-level", "WARNING"],
                             env=env, cwd=state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # both warm up: imports, first reads, first scrape
        url = f"http://127.0.0.1:{port}/metrics"
        urllib.request.urlopen(url, timeout=10).read()
        ep, ap = psutil.Process(exporter.pid), psutil.Process(agent.pid)
        e0, a0, b0 = cpu_seconds(ep), cpu_seconds(ap), sink.batches
        exporter_series = 0
        for _ in range(args.cycles):
            started = time.monotonic()
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            exporter_series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        e1, a1, b1 = cpu_seconds(ep), cpu_seconds(ap), sink.batches
        e_rss, a_rss = ep.memory_info().rss, ap.memory_info().rss
        cycles = b1 - b0
        e_cpu = (e1 - e0) / args.cycles
        a_cpu = (a1 - a0) / max(cycles, 1)
        print(f"load average: {os.getloadavg()[0]:.2f}; {args.cycles} scrapes, {cycles} agent cycles, "
              f"interval {args.interval:g}s")
        print(f"{'':16}{'RSS MiB':>10}{'CPU ms/cycle':>14}{'series':>8}")
        print(f"{'node_exporter':16}{e_rss / 2**20:10.1f}{e_cpu * 1000:14.2f}{exporter_series:8d}")
        print(f"{'fleetdeck-agent':16}{a_rss / 2**20:10.1f}{a_cpu * 1000:14.2f}{sink.series:8d}")
        print(f"ratio agent/node_exporter: RSS {a_rss / e_rss:.2f}x (target <= 1.25x), "
              f"CPU {a_cpu / e_cpu:.2f}x (target <= 1.0x), series {sink.series} (target >= 300)")
    finally:
        agent.terminate()
        exporter.terminate()
        agent.wait(30)
        exporter.wait(30)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
