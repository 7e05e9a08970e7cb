"""Agent steady state at the default interval: resident memory and CPU share of one real
agent process pushing this machine's host metrics to a real console, the figures
docs/install.md quotes for sizing a host (bench/agent_footprint.py, on the spool branch,
compares the agent with node_exporter per cycle instead).

    python bench/agent_steady_state.py [--interval 10] [--seconds 120]

The console runs in this process (tests/harness.py ConsoleHarness); the agent is a
separate ``python -m agents`` process whose RSS (VmRSS, VmHWM from /proc/PID/status) and
CPU time (utime + stime from /proc/PID/stat) are read after a warm-up of two intervals.
Baseline measured in the same run: a bare ``python -c 'import time; time.sleep(...)'``
interpreter, to separate the interpreter's own RSS from the agent's.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import ConsoleHarness  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()

    baseline = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(1)
    baseline_rss = status_kib(baseline.pid, "VmRSS")
    baseline.terminate()
    baseline.wait()

    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp) / "console").start()
        try:
            env = dict(os.environ, FLEETDECK_AGENT_TOKEN=console.agent_token("footprint"),
                       PYTHONPATH=str(REPO))
            agent = subprocess.Popen([sys.executable, "-m", "agents", "--console", console.url,
                                      "--host", "footprint", "--interval", str(args.interval),
                                      "--log-level", "WARNING"], env=env, cwd=tmp)
            try:
                time.sleep(2 * args.interval)  # warm-up: imports, first cycles
                cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
                time.sleep(args.seconds)
                cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
                rss, hwm = status_kib(agent.pid, "VmRSS"), status_kib(agent.pid, "VmHWM")
                series = console.count("series")
            finally:
                agent.terminate()
                agent.wait(10)
        finally:
            console.close()
    cpu_share = (cpu1 - cpu0) / (t1 - t0)
    print(f"python {sys.version.split()[0]}, interval {args.interval:g} s, measured {t1 - t0:.0f} s, "
          f"{series} series per batch")
    print(f"agent RSS {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB); "
          f"bare interpreter baseline {baseline_rss / 1024:.1f} MiB")
    print(f"agent CPU {cpu_share * 100:.2f}% of one core "
          f"({(cpu1 - cpu0) / ((t1 - t0) / args.interval) * 1000:.0f} ms per cycle)")


if __name__ == "__main__":
    main()
