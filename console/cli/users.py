"""``fleetdeck user list|create|set-password|set|disable|enable``, acting on the install's
database directly (audited as ``cli:<login name>``)."""
from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys

from console.cli.common import CliError, _admin_services, _actor, admin_opts, print_table, visible
from console.i18n import message_of, tx


def _read_password(args: argparse.Namespace) -> str:
    env = os.environ.get("FLEETDECK_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CliError(tx("the passwords differ"), 2)
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from console.auth.users import UNCHANGED, UserError

    services = _admin_services(args)
    auth, actor = services.auth, _actor()
    try:
        if args.user_command == "list":
            users = services.db.run(services.users.list)
            if args.json:
                print(json.dumps(users, indent=2))
            else:
                print_table([{**u, "apps": ",".join(u["apps"]) if u["apps"] is not None else "-",
                              "state": "disabled" if u["disabled"] else "enabled"} for u in users],
                            [("username", "USER"), ("role", "ROLE"), ("apps", "APPS"), ("state", "STATE")])
        elif args.user_command == "create":
            apps = [a.strip() for a in args.apps.split(",") if a.strip()] if args.apps else None
            services.db.run(auth.create_user, actor, "cli", args.username, _read_password(args), args.role, apps)
            print(f"created user {args.username!r} with role {args.role}")
        elif args.user_command == "set-password":
            services.db.run(auth.set_password, actor, "cli", args.username, _read_password(args))
            print(f"password of {args.username!r} changed; their sessions ended")
        else:
            role = args.role if getattr(args, "role", None) else UNCHANGED
            allowed: object = UNCHANGED
            if getattr(args, "apps", None) is not None:
                allowed = [a.strip() for a in args.apps.split(",") if a.strip()] or None
            disabled = {"disable": True, "enable": False}.get(args.user_command, UNCHANGED)
            # Database.run passes positional arguments only; the changes are keyword-only.
            user = services.db.run(functools.partial(auth.update_user, role=role, apps=allowed, disabled=disabled),
                                   actor, "cli", args.username)
            print(f"user {visible(user['username'])!r}: role {user['role']}, "
                  f"apps {','.join(user['apps']) if user['apps'] is not None else 'all'}, "
                  f"{'disabled' if user['disabled'] else 'enabled'}")
    except UserError as exc:
        raise CliError(message_of(exc), 2) from None
    finally:
        services.close()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``user`` commands on the ``fleetdeck`` parser."""
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    ulist = user.add_parser("list", help="list users")
    admin_opts(ulist)
    ulist.add_argument("--json", action="store_true")
    ulist.set_defaults(func=cmd_user)
    ucreate = user.add_parser("create", help="create a user (password from $FLEETDECK_PASSWORD, stdin or prompt)")
    ucreate.add_argument("username")
    ucreate.add_argument("--role", choices=("viewer", "deployer", "admin"), required=True)
    ucreate.add_argument("--apps", metavar="A,B", help="limit a deployer to these apps")
    admin_opts(ucreate)
    ucreate.set_defaults(func=cmd_user)
    upass = user.add_parser("set-password", help="set a user's password (ends their sessions)")
    upass.add_argument("username")
    admin_opts(upass)
    upass.set_defaults(func=cmd_user)
    uset = user.add_parser("set", help="change a user's role or app allow-list")
    uset.add_argument("username")
    uset.add_argument("--role", choices=("viewer", "deployer", "admin"))
    uset.add_argument("--apps", metavar="A,B", help="deployer app allow-list; an empty string allows every app")
    admin_opts(uset)
    uset.set_defaults(func=cmd_user)
    for name, help_text in (("disable", "disable a user (ends their sessions)"), ("enable", "enable a user")):
        p = user.add_parser(name, help=help_text)
        p.add_argument("username")
        admin_opts(p)
        p.set_defaults(func=cmd_user)
