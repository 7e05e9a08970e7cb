"""Large answers over HTTP: a real ``fleetdeck serve`` answering 24 h x N series at a 1 m
step, per series, through the range API, as a browser asks for it (``Accept-Encoding:
gzip, deflate, br``), while a client polls ``/healthz`` every 10 ms on a keep-alive
connection, as an agent's batches and other viewers' requests arrive meanwhile.

After each console's first answer (not counted) its cache of closed rollup buckets
answers the closed part of the day, as for a dashboard's refresh or a second viewer;
``--no-cache`` (``query_cache_points: 0``) makes every answer a first load. ``--identity``
asks for it uncompressed (``Accept-Encoding: identity``), as curl without ``--compressed``
or a script asks.

Printed per console, medians over ``--runs`` runs: the answer's time (request to last
byte), its bytes on the wire, the longest ``/healthz`` answer during it (how long the
event loop served nothing else), and the console's CPU for it (/proc). ``--baseline-tree
PATH`` (a checkout of another commit, e.g. ``git worktree add /tmp/base HEAD~1``) runs
that tree's console beside this one, each on its own copy of one data set, alternating
run by run, so both share the machine's load.

The data set is bench/query.py's (24 h of 1m rollups per gauge, settled by the rollup
job into day blocks and hot rows; no raw samples, so PromQL's selectors, which read raw
samples within their lookback, find nothing in it); ``--keep PATH`` keeps it for the next run.

    python bench/large_answers.py [--series 500] [--runs 5] [--baseline-tree PATH] [--keep PATH] [--no-cache]
                                  [--identity]
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from ingest import proc_cpu, start_console, stop_console  # noqa: E402
from query import fold_hosts, load_rows, settle  # noqa: E402

from console.storage.database import Database  # noqa: E402
from console.storage.series_bounds import refresh_series_bounds  # noqa: E402


def make_data(path: Path, series: int) -> float:
    """The data set at ``path`` (made unless present); returns its "now" (Unix s)."""
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
        with db.engine.connect() as conn:
            made = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar()
        if made is None:
            load_rows(db, int(time.time() // 60 * 60 * 1000), series)
            db.run(refresh_series_bounds)
        fold_hosts(db)
        with db.engine.connect() as conn:
            now = conn.exec_driver_sql("SELECT done_until FROM rollup_watermarks WHERE tier = '1m'").scalar() / 1000
        settle(db, now)
        return now
    finally:
        db.close()
        db.engine.dispose()


class Console:
    """``fleetdeck serve`` of the tree ``tree`` on its own copy of the data set, with a
    viewer token made by its own CLI."""

    def __init__(self, name: str, tree: Path, data: Path, work: Path, cache: bool = True) -> None:
        self.name = name
        home = work / name
        home.mkdir()
        shutil.copy(data, home / "q.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETDECK_")}
        env.update(PYTHONPATH=str(tree), FLEETDECK_DATA_DIR=str(home),
                   FLEETDECK_DATABASE_URL=f"sqlite:///{home / 'q.db'}")
        cli = [sys.executable, "-m", "console.cli"]
        self.token = subprocess.run(cli + ["token", "create", "--name", "bench", "--role", "viewer"], env=env,
                                    cwd=tree, check=True, capture_output=True, text=True).stdout.split()[-1]
        if not cache:  # every answer then reads the tiers as a dashboard's first load does
            (home / "config.yaml").write_text("console:\n  query_cache_points: 0\n")
            env["FLEETDECK_CONFIG"] = str(home / "config.yaml")
        self.log = open(home / "console.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc, self.port = start_console(cli, env, self.log, cwd=tree)

    def stop(self) -> None:
        stop_console(self.proc)
        self.log.close()


def one_answer(console: Console, path: str, encoding: str) -> tuple[float, int, float, float, int]:
    """-> (seconds to the last byte, bytes on the wire, longest /healthz answer in s, the
    console's CPU s, status) of one GET of ``path``, /healthz polled meanwhile."""
    done = threading.Event()
    pings: list[float] = []

    def poll() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=60)
        while not done.is_set():
            t = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            pings.append(time.perf_counter() - t)
            time.sleep(0.01)
        conn.close()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.05)
    cpu = proc_cpu(console.proc.pid)
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=300)
    conn.request("GET", path, headers={"Authorization": f"Bearer {console.token}",
                                       "Accept-Encoding": encoding})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - started
    cpu = proc_cpu(console.proc.pid) - cpu
    conn.close()
    done.set()
    poller.join()
    return elapsed, len(body), max(pings), cpu, resp.status


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-tree", type=Path, help="another checkout whose console runs beside this one")
    ap.add_argument("--keep", type=Path, help="keep (or reuse) the data set in this SQLite file")
    ap.add_argument("--identity", action="store_true",
                    help="ask for the answer uncompressed (Accept-Encoding: identity), as curl without --compressed "
                         "or a script does, not as a browser")
    ap.add_argument("--no-cache", action="store_true",
                    help="query_cache_points: 0, so every answer is a first load, not one from the cache of closed buckets")
    args = ap.parse_args()
    if args.baseline_tree and not (args.baseline_tree / "console" / "cli").is_dir():
        ap.error(f"--baseline-tree {args.baseline_tree}: not a checkout of this project (no console/cli)")
    work = Path(tempfile.mkdtemp(prefix="fd-answers-"))
    data = args.keep or work / "data.db"
    now = make_data(data, args.series)
    trees = {"this tree": REPO}
    if args.baseline_tree:
        trees["baseline"] = args.baseline_tree.resolve()
    consoles = [Console(name.replace(" ", "-"), tree, data, work, cache=not args.no_cache) for name, tree in trees.items()]
    path = "/api/v1/metrics/range?" + urlencode({"metric": "q_gauge", "start": now - 86400, "end": now,
                                                 "step": 60, "fn": "avg"})
    encoding = "identity" if args.identity else "gzip, deflate, br"
    print(f"24 h x {args.series} series, 1 m step, Accept-Encoding {encoding}; runs={args.runs}; "
          f"{'no cache: every answer a first load' if args.no_cache else 'the cache of closed buckets on'}; "
          f"load average at start: {os.getloadavg()}", flush=True)
    results: dict[str, list[tuple]] = {c.name: [] for c in consoles}
    try:
        for c in consoles:
            one_answer(c, path, encoding)  # each console's first answer (its caches, the pages of its file) not counted
        for _ in range(args.runs):
            for c in consoles:
                got = one_answer(c, path, encoding)
                if got[4] != 200:
                    raise SystemExit(f"{c.name}: status {got[4]}")
                results[c.name].append(got)
    finally:
        for c in consoles:
            c.stop()
    for name, runs in results.items():
        med = [statistics.median(r[i] for r in runs) for i in range(4)]
        print(f"range API, per series [{name}]: answer p50 {med[0] * 1000:.0f} ms "
              f"(runs {', '.join(f'{r[0] * 1000:.0f}' for r in runs)}), {med[1] / 1e6:.1f} MB on the wire, "
              f"longest /healthz p50 {med[2] * 1000:.0f} ms (runs {', '.join(f'{r[2] * 1000:.0f}' for r in runs)}), "
              f"console CPU p50 {med[3] * 1000:.0f} ms")
    print(f"load average at end: {os.getloadavg()}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
