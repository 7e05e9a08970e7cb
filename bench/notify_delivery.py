"""Outbox drain benchmark: ``--count`` notifications queued at once in a real console
(in-process; SQLite, or a private schema of ``--database-url``'s PostgreSQL) are
delivered to a webhook receiver running as a process of its own on loopback (as a real
receiver would be); prints the notifications/s from the queueing to the last one
recorded ``sent`` (after the rows were committed), and checks that each arrived exactly
once.
Target (issue 18): >= 200 notifications/s, no duplicates.

    python bench/notify_delivery.py [--count 2000] [--concurrency 16] [--database-url postgresql+psycopg://...]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from console.notify.outbox import SENT, enqueue  # noqa: E402
from console.storage.models import Notification  # noqa: E402
from tests.harness import ConsoleHarness  # noqa: E402
from tests.integration.notify_peers import alerting_config, v4_payload  # noqa: E402
from tests.integration.procs import free_port  # noqa: E402
from tests.pg import schema_if_url  # noqa: E402

# The receiver process: answers each POST 200 and keeps its groupLabels; GET returns them.
RECEIVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
seen = []
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seen.append(json.dumps(json.loads(body)["groupLabels"], sort_keys=True))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        out = json.dumps(seen).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(out))); self.end_headers()
        self.wfile.write(out)
    def log_message(self, *args):
        pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--database-url", help="PostgreSQL to run on (a private schema, dropped after); default SQLite")
    args = ap.parse_args()
    port = free_port()
    receiver_url = f"http://127.0.0.1:{port}"
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        for _ in range(100):
            try:
                get(receiver_url)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp, schema_if_url(args.database_url) as url:
            console = ConsoleHarness(Path(tmp), database_url=url, alerting=alerting_config(
                [{"name": "bench", "webhook_configs": [{"url": receiver_url}]}], concurrency=args.concurrency,
                poll_interval=0.5)).start()
            try:
                now = time.time()
                payloads = [json.dumps(v4_payload("bench", [{"labels": {"alertname": "Bench", "instance": f"h{i}"},
                                                             "starts_at": now - 60}],
                                                  {"alertname": "Bench", "instance": f"h{i}"}))
                            for i in range(args.count)]

                def add(session) -> None:  # noqa: ANN001
                    for i, payload in enumerate(payloads):
                        enqueue(session, receiver="bench", integration="webhook[0]", group_key=f"g{i}",
                                dedup_key=f"bench:{i}", payload=payload, now=now)

                def sent_count(session) -> int:  # noqa: ANN001
                    return session.execute(select(func.count()).select_from(Notification)
                                           .where(Notification.status == SENT)).scalar_one()
                t0 = time.monotonic()
                console.services.db.run(add)  # one transaction; the worker polls every 0.5 s
                start = time.monotonic()
                enqueue_s = start - t0
                while True:
                    sent = console.services.db.run(sent_count)
                    if sent >= args.count or time.monotonic() - start > 300:
                        break
                    time.sleep(0.05)
                elapsed = time.monotonic() - start
            finally:
                console.close()
        received = json.loads(get(receiver_url))
    finally:
        receiver.terminate()
        receiver.wait(10)
    seen = Counter(received)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    print(json.dumps({"count": args.count, "db": "postgresql" if args.database_url else "sqlite",
                      "concurrency": args.concurrency, "sent": sent, "received": len(received),
                      "distinct": len(seen), "duplicates": duplicates, "enqueue_seconds": round(enqueue_s, 2), "seconds": round(elapsed, 2),
                      "per_second": round(sent / elapsed, 1)}))
    return 0 if sent == args.count and duplicates == 0 and len(seen) == args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
