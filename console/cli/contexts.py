"""``fleetdeck context add|use|list|remove``: named consoles (URL and where the token
comes from) in the user's contexts file, :mod:`console.contexts`."""
from __future__ import annotations

import argparse
import json
import os
import sys

from console.cli.common import CliError, print_table
from console.i18n import message_of


def _token_from_stdin() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("Token: ").strip()
    return sys.stdin.readline().strip()


def cmd_context(args: argparse.Namespace) -> int:
    from console import contexts

    path = contexts.contexts_path()
    try:
        if args.context_command == "add":
            token = _token_from_stdin() if args.token_stdin else None
            current = contexts.add(path, args.name, args.url, args.token_env, token)
            print(f"context {args.name!r} saved in {path}" + (" (current)" if current else ""))
        elif args.context_command == "use":
            contexts.use(path, args.name)
            print(f"now using context {args.name!r}")
        elif args.context_command == "remove":
            contexts.remove(path, args.name)
            print(f"context {args.name!r} removed")
        else:
            _list(contexts.load(path), args.json)
    except contexts.ContextError as exc:
        raise CliError(message_of(exc), 2) from None
    return 0


def _list(doc: dict, as_json: bool) -> None:
    rows = []
    for name, ctx in sorted(doc["contexts"].items()):
        token = (f"${ctx['token_env']}" + ("" if os.environ.get(ctx["token_env"]) else " (unset)")
                 if ctx.get("token_env") else "in file" if ctx.get("token") else "none")
        rows.append({"current": "*" if name == doc["current"] else "", "name": name, "url": ctx["url"],
                     "token": token})
    if as_json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print_table(rows, [("current", "CURRENT"), ("name", "NAME"), ("url", "URL"), ("token", "TOKEN")])
    else:
        print("no contexts; add one with `fleetdeck context add NAME --url URL --token-env VAR`", file=sys.stderr)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``context`` commands on the ``fleetdeck`` parser."""
    context = sub.add_parser("context", help="named consoles for the client commands (~/.config/fleetdeck/"
                             "contexts.yaml); FLEETDECK_URL and FLEETDECK_TOKEN override them")
    csub = context.add_subparsers(dest="context_command", required=True, metavar="ACTION")
    add = csub.add_parser("add", help="add or replace a context (the first one becomes current)")
    add.add_argument("name")
    add.add_argument("--url", required=True, help="the console's URL, e.g. https://fleetdeck.example.com")
    token = add.add_mutually_exclusive_group()
    token.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable")
    token.add_argument("--token-stdin", action="store_true",
                       help="read the token from stdin and keep it in the file (mode 0600)")
    use = csub.add_parser("use", help="make a context current")
    use.add_argument("name")
    lst = csub.add_parser("list", help="list contexts (never tokens)")
    lst.add_argument("--json", action="store_true")
    rm = csub.add_parser("remove", help="delete a context")
    rm.add_argument("name")
    context.set_defaults(func=cmd_context)
