"""``fleetdeck approve``, ``reject``, ``promote`` and ``apps reload`` (docs/deploys.md,
"Approvals and environments"), through the console's API (``FLEETDECK_URL``,
``FLEETDECK_TOKEN``). ``deploy`` and ``rollback`` take ``--env`` (console/cli/deploys.py)."""
from __future__ import annotations

import argparse
import json

from console.cli.common import urllib_quote, visible
from console.client import ApiClient


def _decide(args: argparse.Namespace, verb: str) -> int:
    body = {"reason": args.reason} if args.reason else {}
    deploy = ApiClient().request("POST", f"/api/v1/deploys/{args.deploy_id}/{verb}", body=body)
    if args.json:
        print(json.dumps(deploy, indent=2))
        return 0
    where = f" ({deploy['environment']})" if deploy.get("environment") else ""
    print(visible(f"deploy #{deploy['id']} of {deploy['app']}{where} {deploy['version']}: {verb}d, "
                  f"now {deploy['state']}"))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject")


def cmd_promote(args: argparse.Namespace) -> int:
    from console.cli.deploys import _submit  # the deploy command's submit and --wait

    body = {"from": args.source, "to": args.to, "reason": args.reason or ""}
    return _submit(args, f"/api/v1/apps/{urllib_quote(args.app)}/promote", body, "promote")


def cmd_apps_reload(args: argparse.Namespace) -> int:
    changes = ApiClient().request("POST", "/api/v1/apps/reload", body={})  # a refusal names each key and line
    if args.json:
        print(json.dumps(changes, indent=2))
        return 0
    said = [f"{k}: {', '.join(changes[k])}" for k in ("added", "removed", "changed") if changes[k]]
    print(visible("apps reloaded; " + ("; ".join(said) if said else "nothing changed")))
    return 0


def _apps_or_reload(listing):  # noqa: ANN001, ANN202 - argparse's func
    def run(args: argparse.Namespace) -> int:
        return cmd_apps_reload(args) if args.action == "reload" else listing(args)

    return run


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``approve``, ``reject``, ``promote``; ``reload`` as an action of ``apps`` (which
    console/cli/deploys.py registers first)."""
    apps = sub.choices["apps"]
    apps.add_argument("action", nargs="?", choices=("reload",),
                      help="reload: read the apps: section of the console's file again (admin)")
    apps.set_defaults(func=_apps_or_reload(apps.get_default("func")))
    for verb, func in (("approve", cmd_approve), ("reject", cmd_reject)):
        p = sub.add_parser(verb, help=f"{verb} a deploy awaiting approval (another user with the approver role)")
        p.add_argument("deploy_id", type=int)
        p.add_argument("--reason", help="why, kept with the deploy and in the audit log")
        p.add_argument("--json", action="store_true", help="print the deploy as JSON")
        p.set_defaults(func=func)
    promote = sub.add_parser("promote", help="deploy to one environment the version running in another")
    promote.add_argument("app")
    promote.add_argument("--from", dest="source", required=True, metavar="ENV", help="e.g. staging")
    promote.add_argument("--to", required=True, metavar="ENV", help="e.g. production")
    promote.add_argument("--reason", help="why, kept in the history and the audit log")
    promote.add_argument("--wait", action="store_true", help="follow the deploy until it finishes")
    promote.add_argument("--json", action="store_true", help="print the deploy as JSON")
    promote.set_defaults(func=cmd_promote)
