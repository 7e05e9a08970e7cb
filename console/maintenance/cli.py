"""``fleetdeck maintenance add|list|delete|next`` (docs/alerting.md, "Maintenance
windows"): talk to a running console (``FLEETDECK_URL``, ``FLEETDECK_TOKEN``; adding and
deleting need a deployer token)."""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from urllib.parse import quote

from console.client import ApiClient

PATH = "/api/v1/maintenance/windows"


def _until(text: str) -> float:
    """``--until``: Unix seconds or RFC 3339 with an offset (argparse refuses others, exit 2)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be Unix seconds or RFC 3339 with an offset, got {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError("needs an offset (e.g. 2027-01-01T00:00:00+08:00 or ...Z)")
    return ts.timestamp()


def _scope(w: dict) -> str:
    parts = list(w["matchers"])
    for key in ("hosts", "apps", "environments"):
        if w[key]:
            parts.append(f"{key}={','.join(w[key])}")
    return " ".join(parts)


def cmd_add(args: argparse.Namespace) -> int:
    body = {"name": args.name, "dtstart": args.start, "duration": args.duration, "rrule": args.rrule,
            "timezone": args.timezone, "matchers": args.matcher or [], "hosts": args.host or [],
            "apps": args.app or [], "environments": args.environment or [], "comment": args.comment or ""}
    if args.until is not None:
        body["until"] = args.until
    w = ApiClient().request("POST", PATH, body=body)
    nxt = w["next"]
    print(f"maintenance window {w['name']} added; " + (f"next: {nxt['start_local']} to {nxt['end_local']}"
                                                        if nxt else "it has no further occurrence"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from console.cli import print_table

    windows = ApiClient().get(PATH)["windows"]
    if args.json:
        print(json.dumps(windows, indent=2))
        return 0
    if not windows:
        print("no maintenance windows")
        return 0
    rows = [{"name": w["name"], "state": "open" if w["active"] else "scheduled" if w["next"] else "ended",
             "next": f"{w['next']['start_local']} .. {w['next']['end_local']}" if w["next"] else "-",
             "rrule": w["rrule"], "timezone": w["timezone"], "scope": _scope(w)} for w in windows]
    print_table(rows, [("name", "NAME"), ("state", "STATE"), ("next", "NEXT (LOCAL TIME)"), ("rrule", "RRULE"),
                       ("timezone", "TIME ZONE"), ("scope", "SCOPE")])
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    ApiClient().request("DELETE", f"{PATH}/{quote(args.name, safe='')}")
    print(f"maintenance window {args.name} deleted")
    return 0


def cmd_next(args: argparse.Namespace) -> int:
    from console.cli import print_table

    w = ApiClient().get(f"{PATH}/{quote(args.name, safe='')}", count=args.count)
    if args.json:
        print(json.dumps(w["occurrences"], indent=2))
        return 0
    if not w["occurrences"]:
        print(f"maintenance window {w['name']} has no further occurrence")
        return 0
    rows = [{"start": o["start_local"], "end": o["end_local"]} for o in w["occurrences"]]
    print(f"{w['name']} ({w['rrule']}, {w['timezone']}):")
    print_table(rows, [("start", "START (LOCAL TIME)"), ("end", "END")])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``maintenance`` command on the ``fleetdeck`` parser."""
    m = sub.add_parser("maintenance", help="recurring maintenance windows: add, list, delete, next "
                                           "(FLEETDECK_URL, FLEETDECK_TOKEN)")
    m_sub = m.add_subparsers(dest="maintenance_command", required=True)
    add = m_sub.add_parser("add", help="add a window (deployer)")
    add.add_argument("name")
    add.add_argument("--start", required=True, metavar="LOCAL_TIME",
                     help="first start as local wall-clock time, e.g. 2026-11-28T02:00:00")
    add.add_argument("--duration", required=True, help="how long each occurrence lasts, e.g. 2h or 90m")
    add.add_argument("--rrule", required=True, help="RFC 5545 recurrence, e.g. 'FREQ=WEEKLY;BYDAY=SA'")
    add.add_argument("--timezone", required=True, help="IANA time zone, e.g. Asia/Shanghai")
    add.add_argument("--matcher", action="append", metavar='NAME="VALUE"',
                     help="Alertmanager matcher (= != =~ !~); repeatable, all must match")
    add.add_argument("--host", action="append", help="only alerts on this host; repeatable")
    add.add_argument("--app", action="append", help="only alerts of this app or on its hosts; repeatable")
    add.add_argument("--environment", action="append", help="only alerts in this environment; repeatable")
    add.add_argument("--until", type=_until, help="no occurrence after this time (Unix seconds or RFC 3339)")
    add.add_argument("--comment")
    add.set_defaults(func=cmd_add)
    ls = m_sub.add_parser("list", help="windows, open now or next")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    rm = m_sub.add_parser("delete", help="delete a window (deployer)")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_delete)
    nxt = m_sub.add_parser("next", help="the next occurrences of a window, in its local time")
    nxt.add_argument("name")
    nxt.add_argument("--count", type=int, default=5, help="how many (1 to 100, default 5)")
    nxt.add_argument("--json", action="store_true")
    nxt.set_defaults(func=cmd_next)
