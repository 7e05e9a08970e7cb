"""``fleetdeck audit [verify]`` and ``fleetdeck secrets list|rotate|set``, acting on the
install's database directly."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from console.cli.common import CliError, _admin_services, _actor, _fmt_time, admin_opts, positive_int, print_table
from console.i18n import message_of, tx

SECRET_KINDS = ("ssh_key", "kubeconfig", "registry_password", "webhook_url", "generic")


def cmd_audit(args: argparse.Namespace) -> int:
    services = _admin_services(args)
    try:
        if getattr(args, "audit_command", None) == "verify":
            result = services.db.run(services.audit.verify)
            if result.ok:
                anchored = (f"head anchored at entry {result.anchored_id}" if result.anchored_id is not None
                            else "no head anchored yet")
                print(f"audit log intact: {result.entries} entries verified ({anchored})")
                return 0
            where = f"entry {result.first_bad_id}: " if result.first_bad_id is not None else ""
            print(f"audit log TAMPERED: {where}{result.reason}", file=sys.stderr)
            return 1
        entries = services.db.run(services.audit.entries, args.limit)
    finally:
        services.close()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    print_table([{**e, "time": _fmt_time(e["ts"]),
                  "details": json.dumps(e["details"], sort_keys=True) if e["details"] else ""} for e in entries],
                [("id", "ID"), ("time", "TIME (UTC)"), ("actor", "ACTOR"), ("action", "ACTION"),
                 ("target", "TARGET"), ("source", "SOURCE"), ("details", "DETAILS")])
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from console.secrets import SecretError

    services = _admin_services(args)
    try:
        if args.secrets_command == "rotate":
            count = services.db.run(services.secrets.rotate_all, _actor())
            print(f"re-encrypted {count} secret(s) under the first key")
        elif args.secrets_command == "set":
            try:
                value = Path(args.file).read_text() if args.file else sys.stdin.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(tx("cannot read the value: {reason}", reason=str(exc)), 2) from None
            meta = services.db.run(services.secrets.put, args.name, args.kind, value, _actor(), "cli")
            print(f"stored secret {meta['name']!r} ({meta['kind']})")
        else:
            secrets_ = services.db.run(services.secrets.list)
            if args.json:
                print(json.dumps(secrets_, indent=2))
            else:
                print_table([{**s_, "updated": _fmt_time(s_["updated_at"])} for s_ in secrets_],
                            [("name", "NAME"), ("kind", "KIND"), ("updated", "UPDATED (UTC)"),
                             ("updated_by", "BY")])
    except SecretError as exc:  # a refused value (e.g. a kubeconfig with an exec plugin) is a usage error
        raise CliError(message_of(exc), 2 if exc.field or exc.reason.startswith("invalid") else 1) from None
    finally:
        services.close()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``audit`` and ``secrets`` commands on the ``fleetdeck`` parser."""
    audit = sub.add_parser("audit", help="read the audit log; `audit verify` checks the hash chain")
    admin_opts(audit)
    audit.add_argument("--limit", type=positive_int, default=50, help="newest entries to show (default 50)")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(func=cmd_audit)
    audit_sub = audit.add_subparsers(dest="audit_command")
    verify = audit_sub.add_parser("verify", help="exit 1 naming the first tampered entry, else 0")
    admin_opts(verify, default=argparse.SUPPRESS)
    verify.set_defaults(func=cmd_audit)

    secrets_p = sub.add_parser("secrets", help="list stored secrets or re-encrypt them after a key rotation"
                               ).add_subparsers(dest="secrets_command", required=True)
    slist = secrets_p.add_parser("list", help="names and kinds (never values)")
    admin_opts(slist)
    slist.add_argument("--json", action="store_true")
    slist.set_defaults(func=cmd_secrets)
    srotate = secrets_p.add_parser("rotate", help="re-encrypt every secret under the first key")
    admin_opts(srotate)
    srotate.set_defaults(func=cmd_secrets)
    sset = secrets_p.add_parser("set", help="store or replace a secret; the value is read from --file or stdin")
    sset.add_argument("name")
    # console.secrets.SECRET_KINDS (not imported here: it loads cryptography and SQLAlchemy)
    sset.add_argument("--kind", required=True, choices=SECRET_KINDS)
    sset.add_argument("--file", help="read the value from this file instead of stdin")
    sset.add_argument("--config")
    sset.set_defaults(func=cmd_secrets)
