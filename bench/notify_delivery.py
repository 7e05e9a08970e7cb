"""Outbox drain benchmark: ``--count`` notifications queued at once in a real console
(in-process, on SQLite) are
delivered to a local webhook receiver; prints the notifications/s from the first
claim to the last one recorded ``sent``, and checks that each arrived exactly once.
Target (issue 18): >= 200 notifications/s, no duplicates.

    python bench/notify_delivery.py [--count 2000] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from console.notify.outbox import SENT, enqueue  # noqa: E402
from console.storage.models import Notification  # noqa: E402
from tests.harness import ConsoleHarness  # noqa: E402
from tests.integration.notify_peers import HttpReceiver, alerting_config, v4_payload  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    peer = HttpReceiver().start()
    with tempfile.TemporaryDirectory() as tmp:
        console = ConsoleHarness(Path(tmp), alerting=alerting_config(
            [{"name": "bench", "webhook_configs": [{"url": peer.url}]}], concurrency=args.concurrency,
            poll_interval=0.5)).start()
        try:
            now = time.time()
            payloads = [json.dumps(v4_payload("bench", [{"labels": {"alertname": "Bench", "instance": f"h{i}"},
                                                         "starts_at": now - 60}],
                                              {"alertname": "Bench", "instance": f"h{i}"})) for i in range(args.count)]

            def add(session) -> None:  # noqa: ANN001
                for i, payload in enumerate(payloads):
                    enqueue(session, receiver="bench", integration="webhook[0]", group_key=f"g{i}",
                            dedup_key=f"bench:{i}", payload=payload, now=now)
            console.services.db.run(add)
            start = time.monotonic()
            def sent_count(session) -> int:  # noqa: ANN001
                return session.execute(select(func.count()).select_from(Notification)
                                       .where(Notification.status == SENT)).scalar_one()
            while True:
                sent = console.services.db.run(sent_count)
                if sent >= args.count or time.monotonic() - start > 300:
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - start
        finally:
            console.close()
    seen = Counter(json.dumps(r.json()["groupLabels"], sort_keys=True) for r in peer.received)
    peer.close()
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    print(json.dumps({"count": args.count, "concurrency": args.concurrency, "sent": sent,
                      "received": len(peer.received), "distinct": len(seen), "duplicates": duplicates,
                      "seconds": round(elapsed, 2), "per_second": round(sent / elapsed, 1)}))
    return 0 if sent == args.count and duplicates == 0 and len(seen) == args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
