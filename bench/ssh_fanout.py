"""Benchmark: fan one command out to N SSH hosts with the ssh driver's connection pool
and command runner, parallel (up to --parallel at once) against serial, in the same run.

    python bench/ssh_fanout.py [--hosts 24] [--parallel 24] [--command "sleep 0.5"] [--runs 3]

Each host is its own real OpenSSH sshd on a loopback port with its own host key and
client key (tests/sshd.py), pinned known_hosts and RejectPolicy, as in a deploy. One
round = open a connection to every host (TCP, key exchange, host key check, public-key
authentication), run the command, close. Prints the connection setup time per host
(median, p95, max, for each mode), the wall time of each mode, and the ratio serial/parallel
(target: at least 8x). Two cores are shared by both ends here (client and every sshd), so
the CPU-bound handshakes overlap less than across a real network.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.deploy.apps import parse_app  # noqa: E402
from console.deploy.drivers.ssh import ConnectionPool, SshDriver  # noqa: E402
from console.deploy.inventory import parse_inventory  # noqa: E402
from tests.sshd import SshServer  # noqa: E402


def one_round(driver: SshDriver, hosts: list, known: list, keys: dict, argv: list[str], parallel: int) -> tuple[float, list[float]]:
    pool = ConnectionPool(known, keys.__getitem__, timeout=30)
    setups: list[float] = []

    def work(host) -> None:
        _, took = pool.client(host)
        setups.append(took)
        code = driver.run(pool, host, argv, "/", 60, lambda stream, line: None)
        if code != 0:
            raise RuntimeError(f"{host.name}: exit {code}")

    started = time.perf_counter()
    try:
        if parallel == 1:
            for h in hosts:
                work(h)
        else:
            with ThreadPoolExecutor(parallel) as ex:
                list(ex.map(work, hosts))
    finally:
        pool.close()
    return time.perf_counter() - started, setups


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=24)
    ap.add_argument("--parallel", type=int, default=24)
    ap.add_argument("--command", default="sleep 0.5", help="command run on every host (split with shlex)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    argv = shlex.split(args.command)
    with tempfile.TemporaryDirectory() as tmp:
        servers = []
        try:
            for i in range(args.hosts):
                servers.append(SshServer(Path(tmp) / f"h{i}").start())
            inventory = parse_inventory({"hosts": {f"h{i}": {"address": "127.0.0.1", "port": s.port, "user": s.user,
                                                             "key": f"key-{i}"} for i, s in enumerate(servers)}})
            hosts = inventory.resolve([f"h{i}" for i in range(args.hosts)])
            keys = {f"key-{i}": s.client_key.read_text() for i, s in enumerate(servers)}
            known = [(f"[127.0.0.1]:{s.port}", *s.known_hosts_line.split()[1:3]) for s in servers]
            app = parse_app("bench", {"driver": "ssh", "target": {"hosts": list(inventory.hosts), "deploy_to": "/tmp"}})
            driver = SshDriver(app, inventory, lambda: known, keys.__getitem__)
            print(f"{args.hosts} sshd instances on loopback; command: {shlex.join(argv)}; {args.runs} run(s) per mode")
            results: dict[str, list[float]] = {"serial": [], "parallel": []}
            setups: dict[str, list[float]] = {"serial": [], "parallel": []}
            for run in range(args.runs):
                for mode, width in (("serial", 1), ("parallel", args.parallel)):
                    wall, per_host = one_round(driver, hosts, known, keys, argv, width)
                    results[mode].append(wall)
                    setups[mode].extend(per_host)
                    print(f"run {run + 1} {mode:8s} wall {wall:7.3f} s")
            for mode in ("serial", "parallel"):
                s = setups[mode]
                print(f"{mode:8s} connection setup per host: median {statistics.median(s):6.1f} ms, "
                      f"p95 {pct(s, 0.95):6.1f} ms, max {max(s):6.1f} ms (n={len(s)})")
            serial, parallel = statistics.median(results["serial"]), statistics.median(results["parallel"])
            print(f"median wall: serial {serial:.3f} s, parallel ({args.parallel} at once) {parallel:.3f} s, "
                  f"speed-up {serial / parallel:.1f}x (target >= 8x)")
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
