"""Notification dispatch benchmark: ``--alerts`` firing alerts (default 10,000) in
``--groups`` groups (default 1,000) put into the alert store in batches of 500 (as API
clients post them), dispatched by the real Dispatcher running on an asyncio loop with
the wall clock, into the outbox of a real database. Each group must be queued exactly
once, within ``group_wait`` + 1 s of its first alert being put; then, during
``--watch`` seconds more (several group_intervals), nothing more may be queued.

Measured per group: the time from its first alert's put to the moment its row is
visible to another database connection (polled every 50 ms), and to the row's
``created_at`` (the round that decided it). PostgreSQL uses $FLEETDECK_TEST_POSTGRES_URL
(a fresh schema, dropped afterwards).

    python bench/notify_dispatch.py [--db sqlite|postgres] [--alerts 10000] [--groups 1000]
                                    [--group-wait 5] [--watch 12]
Target (issue 18): every group notified once within group_wait + 1 s; no duplicates.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.schema import CreateSchema, DropSchema  # noqa: E402

from console.notify.config import parse_notifications  # noqa: E402
from console.notify.dispatch import Dispatcher  # noqa: E402
from console.notify.inhibit import Inhibitor  # noqa: E402
from console.notify.model import NotifyAlert  # noqa: E402
from console.notify.muting import Muting  # noqa: E402
from console.notify.store import AlertStore  # noqa: E402
from console.storage.database import Database  # noqa: E402
from console.storage.models import Notification  # noqa: E402


def routing(group_wait: float) -> dict:
    return {"route": {"receiver": "bench", "group_by": ["alertname", "cluster"], "group_wait": f"{group_wait:g}s",
                      "group_interval": "4s", "repeat_interval": "4h"},
            "receivers": [{"name": "bench", "webhook_configs": [{"url": "http://127.0.0.1:9/bench"}]}]}


def run(url: str, alerts: int, groups: int, group_wait: float, watch: float) -> dict:
    db = Database(url)
    db.migrate()
    store, muting = AlertStore(), Muting()
    inhibitor = Inhibitor(store)
    muting.register(inhibitor)  # the shipped HostDown rule is consulted for every alert, as in the console
    dispatcher = Dispatcher(db, store, muting, parse_notifications(routing(group_wait), lambda loc: None, "bench"),
                            inhibitor=inhibitor)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(dispatcher.start)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the dispatcher's loop did not start")
    first_put: dict[str, float] = {}
    batch: list[NotifyAlert] = []
    per_group = alerts // groups
    started = time.time()
    for i in range(alerts):
        g = i % groups
        batch.append(NotifyAlert({"alertname": "BenchAlert", "cluster": f"c{g:04d}", "instance": f"i{i // groups}",
                                  "severity": "warning"}, {"summary": f"alert {i}"}, starts_at=time.time()))
        first_put.setdefault(f"c{g:04d}", 0.0)
        if len(batch) == 500 or i == alerts - 1:
            now = time.time()
            for a in batch:
                if not first_put[a.labels["cluster"]]:
                    first_put[a.labels["cluster"]] = now
            store.put(batch, now)
            batch = []
    put_s = time.time() - started
    seen: dict[str, float] = {}
    created: dict[str, float] = {}
    reader = create_engine(url)  # another connection: a row counts once it is committed
    deadline = started + put_s + group_wait + 10
    while len(seen) < groups and time.time() < deadline:
        with reader.connect() as conn:
            for group_key, created_at in conn.execute(select(Notification.group_key, Notification.created_at)):
                cluster = group_key.split('cluster="')[1].split('"')[0]
                if cluster not in seen:
                    seen[cluster], created[cluster] = time.time(), created_at
        time.sleep(0.05)
    time.sleep(watch)
    with reader.connect() as conn:
        rows = conn.execute(select(Notification.group_key, Notification.dedup_key, Notification.payload)).all()
        total = conn.execute(text("SELECT COUNT(*) FROM notifications")).scalar_one()
    loop.call_soon_threadsafe(dispatcher.close)  # cancels its task, then the loop stops
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    db.close()
    visible = [seen[c] - first_put[c] for c in seen]
    decided = [created[c] - first_put[c] for c in created]
    sizes = [p.count('"fingerprint"') for _, _, p in rows]
    return {"alerts": alerts, "groups": groups, "per_group": per_group, "put_s": put_s, "rows": total,
            "groups_notified": len(seen), "distinct_group_keys": len({r[0] for r in rows}),
            "distinct_dedup_keys": len({r[1] for r in rows}),
            "alerts_per_row_min": min(sizes, default=0), "alerts_per_row_max": max(sizes, default=0),
            "visible_after_s": {"min": min(visible, default=0), "median": statistics.median(visible or [0]),
                                "max": max(visible, default=0)},
            "decided_after_s": {"min": min(decided, default=0), "max": max(decided, default=0)},
            "target_s": group_wait + 1}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--group-wait", type=float, default=5.0)
    parser.add_argument("--watch", type=float, default=12.0, help="seconds to watch for duplicates afterwards")
    args = parser.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            result = run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.alerts, args.groups, args.group_wait,
                         args.watch)
    else:
        base = os.environ.get("FLEETDECK_TEST_POSTGRES_URL")
        if not base:
            print("set FLEETDECK_TEST_POSTGRES_URL", file=sys.stderr)
            return 2
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base)
        with admin.begin() as conn:
            conn.execute(CreateSchema(schema))
        try:
            sep = "&" if "?" in base else "?"
            result = run(f"{base}{sep}options=-csearch_path%3D{schema}", args.alerts, args.groups, args.group_wait,
                         args.watch)
        finally:
            with admin.begin() as conn:
                conn.execute(DropSchema(schema, cascade=True))
    for key, value in result.items():
        print(f"{key}: {value}")
    ok = (result["groups_notified"] == result["groups"] == result["rows"] == result["distinct_group_keys"]
          == result["distinct_dedup_keys"] and result["visible_after_s"]["max"] <= result["target_s"])
    print("target met" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
