"""``fleetdeck apps``, ``deploys``, ``deploy``, ``rollback`` and ``cancel``, through the
console's API (``FLEETDECK_URL``, ``FLEETDECK_TOKEN``)."""
from __future__ import annotations

import argparse
import json
import sys
import time

from console.cli.common import CliError, positive_int, print_table, urllib_quote, visible
from console.client import ApiClient


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def app_target(app: dict) -> tuple[str, str]:
    """(where, how) of an app summary from ``GET /api/v1/apps``, in its driver's terms:
    Docker ``image (N replicas)`` and the strategy; SSH ``deploy_to on hosts`` and the
    batches; Kubernetes ``namespace/deployment (image)`` and the Deployment's own rollout.
    The summaries differ per driver (docs/deploys.md), so nothing here assumes Docker's."""
    t = app.get("target") or {}
    driver = app.get("driver")
    if driver == "ssh":
        batches = t.get("batches") or {}
        kind, size = batches.get("type", "serial"), batches.get("size", 1)
        how = {"fixed": f"batches of {size}", "percent": f"batches of {size}%"}.get(kind, "serial")
        return f"{t.get('deploy_to', '?')} on {', '.join(t.get('hosts') or ())}", how
    if driver == "kubernetes":
        namespace = t.get("namespace") or ""
        where = f"{namespace}/{t.get('deployment')}" if namespace and not namespace.startswith("(") \
            else f"{t.get('deployment')} (context namespace)"
        return f"{where} ({t.get('image')})", "the Deployment's rollout"
    strategy = (app.get("strategy") or {}).get("type", "-")
    return f"{t.get('image', '?')} ({t.get('replicas', '?')} replicas)", strategy


def _current(app: dict) -> str:
    """The current version, or each environment's (``staging=1.2 production=1.1``)."""
    if app.get("environments"):
        return " ".join(f"{name}={(env.get('current') or {}).get('version') or '-'}"
                        for name, env in app["environments"].items())
    return (app["current"] or {}).get("version") or "-"


def cmd_apps(args: argparse.Namespace) -> int:
    apps = ApiClient().get("/api/v1/apps")
    if args.json:
        print(json.dumps(apps, indent=2))
        return 0
    if not apps:
        print("no apps configured: define them under `apps:` in the console's config file (see docs/deploys.md)")
        return 0
    rows = [{"name": a["name"], "driver": a["driver"],
             "target": app_target(a)[0] if a.get("target") else "per environment",
             "strategy": app_target(a)[1] if a.get("target") else "-", "current": _current(a),
             "active": f"#{a['active']['id']} {a['active']['version']} {a['active']['state']}" if a["active"] else "-"}
            for a in apps]
    print_table(rows, [("name", "APP"), ("driver", "DRIVER"), ("target", "TARGET"), ("strategy", "STRATEGY"),
                       ("current", "CURRENT"), ("active", "IN PROGRESS")])
    return 0


def cmd_deploys(args: argparse.Namespace) -> int:
    result = ApiClient().get("/api/v1/deploys", app=args.app, limit=args.limit)
    deploys = result["deploys"]
    if args.json:
        print(json.dumps(deploys, indent=2))
        return 0
    if not deploys:
        print("no deploys yet" + (f" of {args.app}" if args.app else ""))
        return 0
    rows = [{"id": d["id"], "app": d["app"], "version": d["version"], "kind": d["kind"], "state": d["state"],
             "by": d["requested_by"], "when": _when(d["created_at"]), "took": _duration(d["duration_s"]),
             "reason": (d["reason"] or "")[:40]} for d in deploys]
    print_table(rows, [("id", "ID"), ("app", "APP"), ("version", "VERSION"), ("kind", "KIND"), ("state", "STATE"),
                       ("by", "BY"), ("when", "WHEN"), ("took", "DURATION"), ("reason", "REASON")])
    return 0


def follow_deploy(client: ApiClient, deploy_id: int, out=sys.stdout, poll: float = 0.5) -> dict:
    """Print the deploy's events as they arrive until it finishes; returns the final deploy."""
    after = 0
    while True:
        page = client.get(f"/api/v1/deploys/{deploy_id}/events", after=after)
        for e in page["events"]:
            stamp = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
            where = f"[{visible(e['step'])}] " if e.get("step") else ""
            mark = {"warning": "! ", "error": "x "}.get(e["level"], "  ")
            print(f"{stamp} {mark}{where}{visible(e['message'])}", file=out, flush=True)
        after = page["last_seq"]
        if page["finished"] and not page["events"]:
            return client.get(f"/api/v1/deploys/{deploy_id}")
        if not page["events"]:
            time.sleep(poll)


def _submit(args: argparse.Namespace, path: str, body: dict, what: str) -> int:
    client = ApiClient()
    deploy = client.request("POST", path, body=body)
    if args.json and not args.wait:
        print(json.dumps(deploy, indent=2))
        return 0
    print(visible(f"{what} #{deploy['id']}: {deploy['app']} {deploy['version']} "
                  f"(from {deploy['previous_version'] or 'nothing'}) {deploy['state']}"), flush=True)
    if not args.wait:
        print(visible(f"follow it with: fleetdeck deploys {deploy['app']}  (or the dashboard at "
                      f"{client.url}/deploys/{deploy['id']})"))
        return 0
    try:
        final = follow_deploy(client, deploy["id"])
    except KeyboardInterrupt:
        print(f"\nstopped following; {what} #{deploy['id']} goes on in the console", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(final, indent=2))
    if final.get("canary"):
        print(visible(f"canary verdict: {final['canary']['verdict']} ({final['canary']['message']})"))
    summary = f"{what} #{final['id']} of {final['app']} {final['version']}: {final['state']}"
    if final["duration_s"] is not None:
        summary += f" in {_duration(final['duration_s'])}"
    if final["state"] == "succeeded":
        print(visible(summary))
        return 0
    raise CliError(summary + (f" ({final['error']})" if final.get("error") else ""), 1)


def cmd_deploy(args: argparse.Namespace) -> int:
    body = {"version": args.version, "reason": args.reason or "", **({"force": True} if args.force else {})}
    if args.env:
        body["environment"] = args.env
    return _submit(args, f"/api/v1/apps/{urllib_quote(args.app)}/deploys", body, "deploy")


def cmd_rollback(args: argparse.Namespace) -> int:
    body = {"reason": args.reason or ""}
    if args.to:
        body["to"] = args.to
    if args.env:
        body["environment"] = args.env
    return _submit(args, f"/api/v1/apps/{urllib_quote(args.app)}/rollback", body, "rollback")


def cmd_cancel(args: argparse.Namespace) -> int:
    deploy = ApiClient().request("POST", f"/api/v1/deploys/{args.deploy_id}/cancel", body={})
    print(visible(f"deploy #{deploy['id']} of {deploy['app']}: cancel requested ({deploy['state']})"))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``apps``, ``deploys``, ``deploy``, ``rollback`` and ``cancel`` commands."""
    apps = sub.add_parser("apps", help="list apps and their current versions")
    apps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    apps.set_defaults(func=cmd_apps)
    deploys = sub.add_parser("deploys", help="deploy history, newest first")
    deploys.add_argument("app", nargs="?", help="only this app")
    deploys.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")
    deploys.add_argument("--json", action="store_true", help="print JSON instead of a table")
    deploys.set_defaults(func=cmd_deploys)
    dep = sub.add_parser("deploy", help="deploy VERSION of APP (exit 0 only when it succeeded, with --wait)")
    dep.add_argument("app")
    dep.add_argument("version", help="image tag (or sha256:DIGEST) to deploy")
    dep.add_argument("--reason", help="why, kept in the history and the audit log")
    dep.add_argument("--env", metavar="ENV", help="the environment (required for an app with environments:)")
    dep.add_argument("--force", action="store_true",
                     help="ssh apps: build the release again on every host, even where it is complete")
    dep.add_argument("--wait", action="store_true", help="follow the deploy's steps until it finishes")
    dep.add_argument("--json", action="store_true", help="print the deploy as JSON")
    dep.set_defaults(func=cmd_deploy)
    rb = sub.add_parser("rollback", help="deploy the previous (or a chosen) successful version of APP")
    rb.add_argument("app")
    rb.add_argument("--to", metavar="VERSION", help="an earlier successful version (default: the previous one)")
    rb.add_argument("--reason", help="why, kept in the history and the audit log")
    rb.add_argument("--env", metavar="ENV", help="the environment (required for an app with environments:)")
    rb.add_argument("--wait", action="store_true", help="follow the rollback until it finishes")
    rb.add_argument("--json", action="store_true", help="print the deploy as JSON")
    rb.set_defaults(func=cmd_rollback)
    cancel = sub.add_parser("cancel", help="cancel a queued or running deploy (a running one rolls back)")
    cancel.add_argument("deploy_id", type=int)
    cancel.set_defaults(func=cmd_cancel)
