"""The ``fleetdeck`` command (the README lists every command).

Server-side commands (``run``, ``serve``, ``token``, ``user``, ``db``) act on the
configured database directly; client commands (``hosts``, ``apps``, ``deploys``,
``deploy``, ``rollback``, ``cancel``, ``logs``, ``query``, ``alerts``, ``rules``,
``maintenance``, ``silence``, ``notify``) talk to a running console
over HTTP with ``FLEETDECK_URL`` and ``FLEETDECK_TOKEN``, else the current ``context``
(:mod:`console.contexts`). ``completion`` prints shell completion code. Exit codes: 0 success,
1 the operation failed, 2 bad usage or configuration.

One module per command group, each with an ``add_commands(sub)`` that registers its
subparsers (console/alerting/cli.py registers ``alerts`` and ``rules`` the same way);
helpers shared by the groups are in :mod:`console.cli.common`.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from console import __version__
from console.cli import (audit, completion, contexts, database, deploys, hosts, logs, query, server, tokens,
                         users)
from console.cli.common import CliError, Parser, enum_option, parse_since, print_table, visible
from console.client import ClientError
from console.config import ConfigError
from console.i18n import cli_errors, message_of, tx

__all__ = ["CliError", "build_parser", "main", "parse_since", "print_table", "visible"]

# In the order `fleetdeck --help` lists them.
GROUPS = (server, tokens, users, audit, database, hosts, deploys, logs, query, contexts, completion)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def build_parser() -> Parser:
    parser = Parser(prog="fleetdeck", description="Fleetdeck console and command line.")
    parser.add_argument("--version", action="version", version=f"fleetdeck {__version__}")
    enum_option(parser, "--log-level", LOG_LEVELS, fold=True, default=os.environ.get("FLEETDECK_LOG_LEVEL", "INFO"),
                help=", ".join(LOG_LEVELS))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(sub)
    # Imported here: console.alerting.cli imports console.cli.common, which imports this package.
    from console.alerting.cli import add_commands as add_alerting_commands

    add_alerting_commands(sub)  # alerts, alerts history, rules, rules check, rules reload
    from console.maintenance.cli import add_commands as add_maintenance_commands

    add_maintenance_commands(sub)  # maintenance add, list, delete, next
    from console.silences.cli import add_commands as add_silence_commands

    add_silence_commands(sub)  # silence add, silence list, silence expire
    from console.notify.cli import add_commands as add_notify_commands

    add_notify_commands(sub)  # notify log, notify test
    from console.deploy.cli import add_commands as add_approval_commands

    add_approval_commands(sub)  # approve, reject, promote, apps reload
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    import argcomplete

    argcomplete.autocomplete(parser)  # answers and exits when the shell asks for completions
    args, extras = parser.parse_known_args(argv)
    parser.reject_unknown(args, extras)  # with "did you mean" for a mistyped option
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    said = cli_errors()  # messages in the terminal's language (console/i18n.py)
    try:
        return args.func(args)
    except CliError as exc:  # may carry stored text (a deploy's error) or the console's message
        print(f"fleetdeck: {visible(said(message_of(exc)))}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        problem = tx("configuration: {problem}", problem=message_of(exc))
        print(f"fleetdeck: {said(problem)}", file=sys.stderr)
        return 2
    except ClientError as exc:
        if exc.code == "bad_url":  # FLEETDECK_URL or a context: configuration, not a failed call
            print(f"fleetdeck: {visible(said(exc.message))}", file=sys.stderr)
            return 2
        # The console's own message arrives in this language already (Accept-Language).
        status = exc.status or "network"
        print(f"fleetdeck: {visible(f'{status} {exc.code}: {said(exc.message)}')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
