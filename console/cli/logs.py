"""``fleetdeck logs``: search and follow log lines through the console's API."""
from __future__ import annotations

import argparse
import json
import sys
import time

from console.cli.common import enum_option, parse_since, positive_int, visible
from console.client import ApiClient
from console.logs.levels import LEVELS


FOLLOW_LOOKBACK_MS = 120_000
FOLLOW_WINDOW_LINES = 10_000  # per poll; a busier window prints its newest lines only


def _log_line(record: dict) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["ts"] / 1000)) + f".{record['ts'] % 1000:03d}Z"
    level = (record.get("level") or "-").upper()
    return f"{stamp} {visible(record['host'])} {visible(record['source'])} {level:5} {visible(record['line'])}"


def _fetch_logs(client: ApiClient, params: dict, limit: int) -> list[dict]:
    """Up to ``limit`` newest matching records, following cursors; oldest first."""
    out: list[dict] = []
    cursor = None
    while len(out) < limit:
        page = client.get("/api/v1/logs", **params, limit=min(1000, limit - len(out)), cursor=cursor)
        out += page["logs"]
        cursor = page["next"]
        if not cursor:
            break
    return out[::-1]


def cmd_logs(args: argparse.Namespace) -> int:
    client = ApiClient()
    params = {"host": args.host, "source": args.source, "q": args.grep, "level": args.level}
    since = parse_since(args.since) if args.since else None
    if since is not None:
        params["start"] = f"{time.time() - since:.3f}"

    def show(record: dict) -> None:
        if args.json:
            print(json.dumps(record, ensure_ascii=True), flush=True)  # escapes control characters too
        else:
            print(_log_line(record), flush=True)

    # Follow by polling: look back a window before the newest line seen (agents stamp
    # lines when read, and batches may arrive late), print what was not printed yet.
    # The window ends at this machine's clock at the latest, so one line stamped ahead
    # cannot move it past every line that follows.
    newest = int(time.time() * 1000)

    def window() -> list[dict]:
        start = max(0, min(newest, int(time.time() * 1000)) - FOLLOW_LOOKBACK_MS)
        return _fetch_logs(client, dict(params, start=f"{start / 1000:.3f}"), FOLLOW_WINDOW_LINES)

    # Lines already in the window but left out by --limit are old news, not new lines;
    # read before the first page, so a line stored in between is printed, not skipped.
    seen: dict[int, None] = {r["id"]: None for r in window()} if args.follow else {}
    records = _fetch_logs(client, params, args.limit)
    for record in records:
        show(record)
        seen[record["id"]] = None
    if not args.follow:
        if not records and not args.json:
            print("no matching log lines", file=sys.stderr)
        return 0
    newest = max((r["ts"] for r in records), default=newest)
    while True:
        time.sleep(args.poll)
        for record in window():
            if record["id"] in seen:
                continue
            seen[record["id"]] = None
            newest = max(newest, record["ts"])
            show(record)
        while len(seen) > 100_000:  # bounded: forget the oldest ids
            seen.pop(next(iter(seen)))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``logs`` command on the ``fleetdeck`` parser."""
    logs = sub.add_parser("logs", help="search and follow log lines (FLEETDECK_URL, FLEETDECK_TOKEN)")
    logs.add_argument("--host", help="only this host (comma-separated for several)")
    logs.add_argument("--source", help="only this source file (a trailing * matches a prefix)")
    logs.add_argument("--grep", metavar="TEXT", help="only lines containing every word of TEXT")
    enum_option(logs, "--level", LEVELS, many=True, fold=True,
                help=f"only these levels ({', '.join(LEVELS)}), e.g. error or warn,error")
    logs.add_argument("--since", metavar="DURATION", help="only lines newer than this, e.g. 15m, 1h, 2d")
    logs.add_argument("--limit", type=positive_int, default=100, help="at most this many lines before following (default 100)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    logs.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    logs.set_defaults(func=cmd_logs)
