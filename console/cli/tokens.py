"""``fleetdeck token create|list|revoke``: agent, API and enrolment tokens, acting on the
install's database directly (audited as ``cli:<login name>``)."""
from __future__ import annotations

import argparse
import json
import time

from console.cli.common import CliError, _admin_services, _actor, _ago, _fmt_time, admin_opts, parse_duration, \
    print_table, visible
from console.i18n import message_of, tx


def cmd_token_create(args: argparse.Namespace) -> int:
    from console.auth.tokens import TokenError

    modes = [bool(args.agent), bool(args.name), bool(args.enrol)]
    if sum(modes) != 1:
        raise CliError(tx("give one of --agent HOST, --name NAME --role ROLE, or --enrol [--host HOST]"), 2)
    services = _admin_services(args)
    auth, actor = services.auth, _actor()
    try:
        if args.agent:
            created = services.db.run(auth.create_agent_token, actor, "cli", args.agent)
        elif args.enrol:
            expires = parse_duration(args.expires) if args.expires else 3600.0
            created = services.db.run(auth.create_enrol_token, actor, "cli", expires, args.host)
        else:
            if not args.role:
                raise CliError(tx("--role is required with --name (viewer, deployer or admin)"), 2)
            days = args.expires_days
            if args.expires:
                days = parse_duration(args.expires) / 86400
            apps = [a.strip() for a in args.apps.split(",") if a.strip()] if args.apps else None
            created = services.db.run(auth.create_api_token, actor, "cli", args.name, args.role, days, apps)
    except TokenError as exc:
        raise CliError(message_of(exc), 2) from None
    finally:
        services.close()
    print(created["token"])
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    services = _admin_services(args)
    try:
        tokens = services.db.run(services.tokens.list, args.all)
    finally:
        services.close()
    if args.json:
        print(json.dumps(tokens, indent=2))
        return 0
    rows = [{**t, "role": t["role"] or "-", "host": t["host"] or "-", "owner": t["owner"] or "-",
             "apps": ",".join(t["apps"]) if t["apps"] is not None else "-",
             "expires": _fmt_time(t["expires_at"]), "used": _ago(t["last_used_at"]),
             "state": "revoked" if t["revoked_at"] else "expired" if t["expires_at"] and t["expires_at"] <= time.time()
             else "active"} for t in tokens]
    print_table(rows, [("id", "ID"), ("kind", "KIND"), ("name", "NAME"), ("role", "ROLE"), ("host", "HOST"),
                       ("apps", "APPS"), ("owner", "OWNER"), ("expires", "EXPIRES (UTC)"), ("used", "LAST USED"),
                       ("state", "STATE")])
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from console.auth.tokens import TokenNotFound

    services = _admin_services(args)
    try:
        revoked = services.db.run(services.auth.revoke_token, _actor(), "cli", args.id)
    except TokenNotFound as exc:
        raise CliError(message_of(exc), 1) from None
    finally:
        services.close()
    print(f"revoked token {revoked['id']} ({revoked['kind']} {visible(revoked['name'])})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``token`` commands on the ``fleetdeck`` parser."""
    token = sub.add_parser("token", help="create, list and revoke tokens").add_subparsers(
        dest="token_command", required=True)
    create = token.add_parser("create", help="create an agent token (--agent), an API token (--name, --role) "
                                            "or a one-time enrolment token (--enrol)")
    admin_opts(create)
    create.add_argument("--agent", metavar="HOST", help="bind a new agent token to HOST")
    create.add_argument("--name", help="name of a new API token")
    create.add_argument("--role", choices=("viewer", "deployer", "admin"), help="role cap of the API token")
    create.add_argument("--apps", metavar="A,B", help="limit a deployer API token to these apps")
    create.add_argument("--enrol", action="store_true",
                        help="one-time enrolment token for `fleetdeck-agent enrol` (default lifetime 1h)")
    create.add_argument("--host", metavar="HOST", help="with --enrol: only this host may enrol with it")
    create.add_argument("--expires", metavar="DURATION", help="lifetime, e.g. 15m, 1h, 30d")
    create.add_argument("--expires-days", type=float, help="API token lifetime in days (default: no expiry)")
    create.set_defaults(func=cmd_token_create)
    tlist = token.add_parser("list", help="list tokens (never their secrets)")
    admin_opts(tlist)
    tlist.add_argument("--all", action="store_true", help="include revoked tokens")
    tlist.add_argument("--json", action="store_true")
    tlist.set_defaults(func=cmd_token_list)
    trevoke = token.add_parser("revoke", help="revoke a token by id")
    trevoke.add_argument("id", type=int)
    admin_opts(trevoke)
    trevoke.set_defaults(func=cmd_token_revoke)
