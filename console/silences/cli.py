"""``fleetdeck silence add|list|expire`` (docs/alerting.md, "Silences"): silences through
the console's Alertmanager API v2 (``FLEETDECK_URL``, ``FLEETDECK_TOKEN``; adding and
expiring need a deployer token), with amtool's arguments: matchers such as
``alertname=HostDown instance=~"web-.*"`` (a first argument without an operator is the
alert name), ``--duration`` or ``--end``, ``--comment`` (required), ``--author``.
"""
from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

from console.client import ApiClient
from console.errors import FleetdeckError

AM = "/alertmanager/api/v2"


class Refused(Exception):
    """Bad arguments: printed, exit status 2."""


def _refusals(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that prints a Refused (exit status 2) rather than raising it."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except Refused as exc:
            print(f"fleetdeck: {exc}", file=sys.stderr)
            return 2
    return run


def _matchers(texts: list[str]) -> list[dict]:
    from console.matchers import parse_matchers

    if texts and not any(op in texts[0] for op in ("=", "!~")):
        texts = [f'alertname="{texts[0]}"'] + texts[1:]
    try:
        return [m.to_json() for text in texts for m in parse_matchers(text)]
    except FleetdeckError as exc:
        raise Refused(exc.message) from None


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _when(flag: str, value: str) -> float:
    """Unix seconds or RFC 3339 with an offset."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise Refused(f"{flag} must be Unix seconds or RFC 3339 (2024-05-01T12:00:00Z), got {value!r}")
    return when.timestamp()


def _duration(flag: str, value: str) -> float:
    """A Prometheus duration (30m, 1h30m, 2d)."""
    from console.alerting.rules import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise Refused(f"{flag} must be a duration such as 30m, 1h or 2d, got {value!r}")
    return seconds


def _parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _matcher_text(m: dict) -> str:
    op = ("=~" if m["isRegex"] else "=") if m.get("isEqual", True) else ("!~" if m["isRegex"] else "!=")
    return f'{m["name"]}{op}"{m["value"]}"'


@_refusals
def cmd_silence_add(args: argparse.Namespace) -> int:
    matchers = _matchers(args.matchers)
    if not matchers:
        raise Refused("no matchers given (e.g. alertname=HostDown instance=web-1)")
    if not args.comment:
        raise Refused("--comment is required: say why alerts are silenced")
    start = time.time() if args.start is None else _when("--start", args.start)
    end = _when("--end", args.end) if args.end else start + _duration("--duration", args.duration)
    if end <= start:
        raise Refused("the silence must end after it starts")
    body = {"matchers": matchers, "startsAt": _rfc3339(start), "endsAt": _rfc3339(end),
            "createdBy": args.author or getpass.getuser(), "comment": args.comment}
    print(ApiClient().request("POST", f"{AM}/silences", body=body)["silenceID"])
    return 0


@_refusals
def cmd_silence_list(args: argparse.Namespace) -> int:
    from console.cli import print_table

    client = ApiClient()
    filters = [_matcher_text(m) for m in _matchers(args.matchers)]
    url = f"{AM}/silences"
    if filters:
        from urllib.parse import urlencode

        url += "?" + urlencode([("filter", f) for f in filters])
    silences = client.get(url)
    expired = args.expired
    silences = [s for s in silences if (s["status"]["state"] == "expired") == expired]
    if args.json:
        print(json.dumps(silences, indent=2))
        return 0
    if not silences:
        print("no expired silences" if expired else "no active or pending silences")
        return 0
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_parse(t)))  # noqa: E731
    rows = [{"id": s["id"], "state": s["status"]["state"], "matchers": " ".join(_matcher_text(m) for m in s["matchers"]),
             "starts": stamp(s["startsAt"]), "ends": stamp(s["endsAt"]), "by": s["createdBy"], "comment": s["comment"]}
            for s in silences]
    print_table(rows, [("id", "ID"), ("state", "STATE"), ("matchers", "MATCHERS"), ("starts", "STARTS"),
                       ("ends", "ENDS"), ("by", "CREATED BY"), ("comment", "COMMENT")])
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    client = ApiClient()
    for sid in args.ids:
        client.request("DELETE", f"{AM}/silence/{sid}")
        print(f"expired {sid}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``silence`` command on the ``fleetdeck`` parser."""
    silence = sub.add_parser("silence", help="silences: add, list, expire (FLEETDECK_URL, FLEETDECK_TOKEN)")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="silence alerts matching all MATCHERs; prints the silence id (deployer)")
    add.add_argument("matchers", nargs="+", metavar="MATCHER",
                     help='name=value, name!=value, name=~regex, name!~regex; a bare first word is the alertname')
    add.add_argument("-c", "--comment", required=True, help="why (required)")
    add.add_argument("-a", "--author", help="who (default: your login name)")
    add.add_argument("-d", "--duration", default="1h", metavar="DURATION", help="how long (default 1h)")
    add.add_argument("--start", metavar="TIME", help="when it starts: Unix seconds or RFC 3339 (default now)")
    add.add_argument("--end", metavar="TIME", help="when it ends (instead of --duration)")
    add.set_defaults(func=cmd_silence_add)
    lst = silence_sub.add_parser("list", help="active and pending silences (--expired: expired ones)")
    lst.add_argument("matchers", nargs="*", metavar="MATCHER", help="only silences with these matchers")
    lst.add_argument("--expired", action="store_true", help="list expired silences instead")
    lst.add_argument("--json", action="store_true", help="print the API's silence objects as JSON")
    lst.set_defaults(func=cmd_silence_list)
    exp = silence_sub.add_parser("expire", help="end silences now (deployer)")
    exp.add_argument("ids", nargs="+", metavar="ID")
    exp.set_defaults(func=cmd_silence_expire)
