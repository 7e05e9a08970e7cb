"""``fleetdeck notify log`` and ``fleetdeck notify test RECEIVER`` (docs/alerting.md,
"Receivers"); both talk to a running console (``FLEETDECK_URL``, ``FLEETDECK_TOKEN``)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from console.client import ApiClient


def _stamp(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _answer(e: dict) -> str:
    parts = [str(e["last_status"]) if e.get("last_status") is not None else "", e.get("last_error") or "",
             (e.get("answer") or "").replace("\n", " ")[:200]]
    return " ".join(p for p in parts if p)


def cmd_notify_log(args: argparse.Namespace) -> int:
    from console.cli.common import _duration_arg, print_table

    now = time.time()
    doc = ApiClient().get("/api/v1/notifications", since=f"{now - _duration_arg('--since', args.since):.3f}",
                          until=f"{now:.3f}", receiver=args.receiver, status=args.status, limit=args.limit)
    entries = doc["notifications"]
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no notifications in that window")
        return 0
    rows = [{"time": _stamp(e["created_at"]), "receiver": e["receiver"], "integration": e["integration"],
             "alerts": f"{e.get('alert_status') or ''} {e['alerts']} {','.join(e['alertnames'])}".strip(),
             "status": e["status"], "attempts": e["attempts"], "answer": _answer(e)} for e in entries]
    print_table(rows, [("time", "TIME"), ("receiver", "RECEIVER"), ("integration", "INTEGRATION"),
                       ("alerts", "ALERTS"), ("status", "STATUS"), ("attempts", "ATTEMPTS"), ("answer", "ANSWER")])
    return 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Exit 0 when every integration took the message, 1 otherwise."""
    entries = ApiClient(timeout=120).request("POST", "/api/v1/notifications/test",
                                             body={"receiver": args.receiver})["notifications"]
    if args.json:
        print(json.dumps(entries, indent=2, ensure_ascii=False))
    else:
        for e in entries:
            status = {"sent": "sent", "failed": "FAILED"}.get(e["status"], "not yet sent (retrying)")
            print(f"{e['receiver']} {e['integration']}: {status}")
            if e.get("last_status") is not None:
                print(f"  status: {e['last_status']}")
            if e.get("last_error"):
                print(f"  error: {e['last_error']}")
            if e.get("answer"):
                print(f"  answer: {e['answer']}")
    if any(e["status"] != "sent" for e in entries):
        if not args.json:
            print("see `fleetdeck notify log` for later attempts", file=sys.stderr)
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``notify`` commands on the ``fleetdeck`` parser."""
    notify = sub.add_parser("notify", help="the notification log (`notify log`) and test messages "
                                           "(`notify test RECEIVER`) (FLEETDECK_URL, FLEETDECK_TOKEN)")
    notify_sub = notify.add_subparsers(dest="notify_command", required=True)
    log_p = notify_sub.add_parser("log", help="notifications sent, failed and queued, newest first")
    log_p.add_argument("--since", default="24h", metavar="DURATION", help="this far back (default 24h)")
    log_p.add_argument("--receiver", help="only this receiver")
    log_p.add_argument("--status", choices=("pending", "sent", "failed"), help="only notifications in this status")
    log_p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    log_p.add_argument("--json", action="store_true", help="print the log entries as JSON")
    log_p.set_defaults(func=cmd_notify_log)
    test_p = notify_sub.add_parser("test", help="send a test message to each integration of RECEIVER and print "
                                                "the answers; exit 1 unless all took it (admin)")
    test_p.add_argument("receiver", metavar="RECEIVER")
    test_p.add_argument("--json", action="store_true", help="print the log entries as JSON")
    test_p.set_defaults(func=cmd_notify_test)
