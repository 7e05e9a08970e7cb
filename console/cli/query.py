"""``fleetdeck query``: a PromQL query through the console's Prometheus API."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime

from console.cli.common import CliError, _duration_arg, print_table
from console.client import ApiClient
from console.i18n import tx


def _time_arg(value: str | None) -> float:
    """``--time``: Unix seconds or RFC 3339 (``2024-05-01T12:00:00Z``); default now."""
    if value is None:
        return time.time()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise CliError(tx("--time must be Unix seconds or RFC 3339, got {value}", value=repr(value)), 2) from None
    if parsed.tzinfo is None:
        raise CliError(tx("--time needs a time zone (e.g. a trailing Z), got {value}", value=repr(value)), 2)
    return parsed.timestamp()


def _series_name(metric: dict) -> str:
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric.get('__name__', '')}{{{labels}}}"


def cmd_query(args: argparse.Namespace) -> int:
    """A PromQL query through the console's Prometheus API: at one time, or with --range
    at every --step (default: 60 steps over the range) up to --time."""
    at = _time_arg(args.time)
    client = ApiClient(timeout=150.0)
    if args.range:
        span = _duration_arg("--range", args.range)
        step = _duration_arg("--step", args.step) if args.step else max(1.0, math.ceil(span / 60))
        doc = client.get("/prometheus/api/v1/query_range", query=args.expr, start=f"{at - span:.3f}",
                         end=f"{at:.3f}", step=f"{step:g}")
    else:
        if args.step:
            raise CliError(tx("--step needs --range"), 2)
        doc = client.get("/prometheus/api/v1/query", query=args.expr, time=f"{at:.3f}")
    data = doc["data"]
    for warning in doc.get("warnings", ()):
        print(f"fleetdeck: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        print(result[1])
        return 0
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(float(t))) + "Z"  # noqa: E731
    if kind == "vector":
        rows = [{"series": _series_name(r["metric"]), "value": r["value"][1]} for r in result]
        columns = [("series", "SERIES"), ("value", "VALUE")]
    else:
        rows = [{"series": _series_name(r["metric"]), "time": stamp(t), "value": v}
                for r in result for t, v in r["values"]]
        columns = [("series", "SERIES"), ("time", "TIME"), ("value", "VALUE")]
    if not rows:
        print("no data", file=sys.stderr)
        return 0
    print_table(rows, columns)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``query`` command on the ``fleetdeck`` parser."""
    query = sub.add_parser("query", help="run a PromQL query (FLEETDECK_URL, FLEETDECK_TOKEN)")
    query.add_argument("expr", metavar="PROMQL")
    query.add_argument("--range", metavar="DURATION", help="a range query over this long up to --time, e.g. 1h")
    query.add_argument("--step", metavar="DURATION", help="the range query's resolution (default: range / 60)")
    query.add_argument("--time", metavar="TIME", help="evaluation (or range end) time: Unix seconds or RFC 3339")
    query.add_argument("--json", action="store_true", help="print Prometheus' data object as JSON")
    query.set_defaults(func=cmd_query)
