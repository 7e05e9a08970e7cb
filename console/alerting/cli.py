"""``fleetdeck alerts`` and ``fleetdeck rules`` (docs/alerting.md, "Command line").

``alerts``, ``alerts history``, ``rules`` and ``rules reload`` talk to a running console
(``FLEETDECK_URL``, ``FLEETDECK_TOKEN``); ``rules check FILE...`` validates files
locally, as the console loads them, and exits 1 on any error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime

from console.cli.common import _ago, _duration_arg, print_table
from console.client import ApiClient, ClientError


def _since(active_at: str) -> str:
    try:
        ts = datetime.fromisoformat(active_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return active_at
    return _ago(ts)


def _labels(labels: dict, skip: tuple = ("alertname", "instance")) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in skip)


def _state(alert: dict) -> str:
    """``firing``, or ``firing (silenced)`` while a silence (else an inhibition, else
    another muter) mutes its notifications."""
    reasons = alert.get("mutedBy") or []
    if not reasons:
        return alert["state"]
    kind = "silenced" if any(r.startswith("silence:") for r in reasons) else \
        "inhibited" if any(r.startswith("inhibited:") for r in reasons) else "muted"
    return f"{alert['state']} ({kind})"


def cmd_alerts(args: argparse.Namespace) -> int:
    alerts = ApiClient().get("/prometheus/api/v1/alerts")["data"]["alerts"]
    if args.state:
        alerts = [a for a in alerts if a["state"] == args.state]
    if args.json:
        print(json.dumps(alerts, indent=2))
        return 0
    if not alerts:
        print(f"no {args.state or 'active'} alerts")
        return 0
    rows = [{"alertname": a["labels"].get("alertname"), "state": _state(a), "instance": a["labels"].get("instance", "-"),
             "value": f"{float(a['value']):g}", "since": _since(a["activeAt"]), "labels": _labels(a["labels"]),
             "summary": a["annotations"].get("summary", "")} for a in alerts]
    print_table(rows, [("alertname", "ALERT"), ("state", "STATE"), ("instance", "INSTANCE"), ("value", "VALUE"),
                       ("since", "ACTIVE SINCE"), ("labels", "LABELS"), ("summary", "SUMMARY")])
    return 0


def cmd_alerts_history(args: argparse.Namespace) -> int:
    now = time.time()
    since = now - _duration_arg("--since", args.since)
    doc = ApiClient().get("/api/v1/alerts/history", since=f"{since:.3f}", until=f"{now:.3f}",
                          alertname=args.alertname, instance=args.instance, limit=args.limit)
    transitions = doc["transitions"]
    if args.json:
        print(json.dumps(transitions, indent=2))
        return 0
    if not transitions:
        print("no alert transitions in that window")
        return 0
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + "Z"  # noqa: E731
    rows = [{"time": stamp(t["ts"]), "alertname": t["alertname"], "state": t["state"],
             "instance": t["labels"].get("instance", "-"),
             "value": "-" if t["value"] is None else f"{t['value']:g}", "labels": _labels(t["labels"]),
             "muted_by": ",".join(t.get("muted_by") or ()) or "-"}
            for t in transitions]
    print_table(rows, [("time", "TIME"), ("alertname", "ALERT"), ("state", "STATE"), ("instance", "INSTANCE"),
                       ("value", "VALUE"), ("labels", "LABELS"), ("muted_by", "MUTED BY")])
    return 0


def _print_file_errors(errors: list[dict]) -> None:
    for e in errors:
        print(f"rule file refused (its previous rules keep running): {e['error']}", file=sys.stderr)


def cmd_rules(args: argparse.Namespace) -> int:
    data = ApiClient().get("/prometheus/api/v1/rules")["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [{"group": g["name"], "rule": r["name"], "state": r.get("state", "recording"), "health": r["health"],
             "alerts": len(r.get("alerts", ())), "for": f"{r['duration']:g}s" if "duration" in r else "-",
             "error": r.get("lastError", "")}
            for g in data["groups"] for r in g["rules"]]
    if rows:
        print_table(rows, [("group", "GROUP"), ("rule", "RULE"), ("state", "STATE"), ("health", "HEALTH"),
                           ("alerts", "ALERTS"), ("for", "FOR"), ("error", "LAST ERROR")])
    else:
        print("no rules loaded")
    _print_file_errors(data.get("fileErrors", []))
    return 1 if data.get("fileErrors") else 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from console.alerting.rules import RuleFileError, load_file

    failed = False
    for path in args.files:
        try:
            groups = load_file(path)
        except RuleFileError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{path}: SUCCESS: {sum(len(g.rules) for g in groups)} rules found")
    return 1 if failed else 0


def cmd_rules_reload(args: argparse.Namespace) -> int:
    client = ApiClient()
    try:
        client.request("POST", "/-/reload")
    except ClientError as exc:
        if exc.code not in ("rule_files_refused", "config_refused"):
            raise
        print(f"fleetdeck: {exc.message}", file=sys.stderr)
        _print_file_errors(client.get("/prometheus/api/v1/rules")["data"].get("fileErrors", []))
        return 1
    print("rules reloaded")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``alerts`` and ``rules`` commands on the ``fleetdeck`` parser."""
    alerts = sub.add_parser("alerts", help="active alerts; `alerts history` lists transitions "
                                           "(FLEETDECK_URL, FLEETDECK_TOKEN)")
    alerts.add_argument("--state", choices=("firing", "pending"), help="only alerts in this state")
    alerts.add_argument("--json", action="store_true", help="print Prometheus' alert objects as JSON")
    alerts.set_defaults(func=cmd_alerts)
    alerts_sub = alerts.add_subparsers(dest="alerts_command")
    hist = alerts_sub.add_parser("history", help="alert state transitions, newest first")
    hist.add_argument("--since", default="24h", metavar="DURATION", help="this far back (default 24h)")
    hist.add_argument("--alertname", help="only this alert")
    hist.add_argument("--instance", help="only alerts with this instance label")
    hist.add_argument("--limit", type=int, default=1000, help="at most this many transitions (default 1000)")
    hist.add_argument("--json", action="store_true", help="print the transitions as JSON")
    hist.set_defaults(func=cmd_alerts_history)
    rules = sub.add_parser("rules", help="loaded rule groups; `rules check FILE...`, `rules reload`")
    rules.add_argument("--json", action="store_true", help="print Prometheus' rules data as JSON")
    rules.set_defaults(func=cmd_rules)
    rules_sub = rules.add_subparsers(dest="rules_command")
    check = rules_sub.add_parser("check", help="validate rule files locally; exit 1 on any error")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=cmd_rules_check)
    reload_p = rules_sub.add_parser("reload", help="make the console re-read its rule files (admin)")
    reload_p.set_defaults(func=cmd_rules_reload)
