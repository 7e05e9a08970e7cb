"""``fleetdeck hosts`` and ``hosts delete`` (through the console's API), ``hosts trust`` and
``hosts known`` (SSH host keys pinned in the install's database)."""
from __future__ import annotations

import argparse
import json
import sys
import urllib.parse

from console.cli.common import CliError, _admin_services, _actor, _ago, _fmt_time, admin_opts, print_table
from console.client import ApiClient
from console.i18n import tx


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def cmd_hosts(args: argparse.Namespace) -> int:
    hosts = ApiClient().get("/api/v1/hosts")
    if args.json:
        print(json.dumps(hosts, indent=2))
        return 0
    rows = [{"host": h["host"], "state": "up" if h["up"] else "DOWN", "cpu": _pct(h["summary"]["cpu_ratio"]),
             "memory": _pct(h["summary"]["memory_ratio"]), "disk": _pct(h["summary"]["disk_max_ratio"]),
             "load1": "-" if h["summary"]["load1"] is None else f"{h['summary']['load1']:.2f}",
             "seen": _ago(h["last_seen"]), "agent": h.get("agent_version") or "-"} for h in hosts]
    if not rows:
        print("no hosts yet: start an agent with `fleetdeck-agent --console URL --token TOKEN`")
        return 0
    print_table(rows, [("host", "HOST"), ("state", "STATE"), ("cpu", "CPU"), ("memory", "MEM"),
                       ("disk", "DISK"), ("load1", "LOAD1"), ("seen", "LAST SEEN"), ("agent", "AGENT")])
    return 0


def cmd_hosts_delete(args: argparse.Namespace) -> int:
    """Retire HOST through the API (``DELETE /api/v1/hosts/HOST``; admin token, audited)."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(tx("this deletes every sample and log line of {host}; add --yes to confirm", host=repr(args.host)), 2)
        if input(f"delete host {args.host!r} with all its samples and log lines? type yes: ").strip() != "yes":
            raise CliError(tx("nothing deleted"))
    result = ApiClient().request("DELETE", "/api/v1/hosts/" + urllib.parse.quote(args.host, safe=""))
    print(f"deleted host {result['host']}: {result['series']} series, {result['samples']} samples, "
          f"{result['rollups']} rollup rows, {result['logs']} log lines; "
          f"{result['revoked_tokens']} agent token(s) revoked")
    return 0


def cmd_hosts_trust(args: argparse.Namespace) -> int:
    """Pin HOST's SSH host key (audited ``hosts.trust``). The key comes from ``--key``
    (a .pub or known_hosts line checked out of band) or from the host itself, in which case
    ``--fingerprint`` must match what it presents (or a terminal user confirms it)."""
    from console.deploy.known_hosts import TrustError, fingerprint, parse_key_line, scan

    services = _admin_services(args)
    try:
        if args.host in services.inventory.groups:
            raise CliError(tx("{host} is a group; trust its hosts one by one", host=args.host), 2)
        host = services.inventory.resolve([args.host])[0]
        try:
            if args.key:
                key_type, key_b64 = parse_key_line(args.key)
                source = "given with --key"
            else:
                key_type, key_b64 = scan(host, timeout=args.timeout)
                source = f"presented by {host.address}:{host.port}"
            fp = fingerprint(key_b64)
            print(f"{host.name} ({host.known_hosts_name}): {key_type} {fp} ({source})", file=sys.stderr)
            if args.fingerprint and args.fingerprint != fp:
                raise CliError(tx("fingerprint mismatch: expected {expected}, the key is {actual}; nothing pinned",
                                  expected=args.fingerprint, actual=fp))
            if not args.key and not args.fingerprint:
                if not sys.stdin.isatty():
                    raise CliError(tx("check the fingerprint out of band (ssh-keygen -lf on the host) and pass "
                                      "--fingerprint SHA256:..., or give the key with --key; nothing pinned"), 2)
                if input("pin this key? type yes: ").strip() != "yes":
                    raise CliError(tx("not pinned"))
            result = services.db.run(services.known_hosts.trust, host, key_type, key_b64, _actor(), "cli",
                                     args.replace)
        except TrustError as exc:
            raise CliError(f"{exc.code}: {exc}") from None
        changed = f" (replaces {result['previous_fingerprint']})" if result["previous_fingerprint"] not in (
            None, result["fingerprint"]) else ""
        print(f"pinned {result['hostname']} {key_type} {result['fingerprint']}{changed}")
    finally:
        services.close()
    return 0


def cmd_hosts_known(args: argparse.Namespace) -> int:
    services = _admin_services(args)
    try:
        pins = services.db.run(services.known_hosts.list)
    finally:
        services.close()
    if args.json:
        print(json.dumps(pins, indent=2))
    else:
        print_table([{**p, "added": _fmt_time(p["added_at"])} for p in pins],
                    [("host", "HOST"), ("hostname", "KNOWN AS"), ("key_type", "TYPE"), ("fingerprint", "FINGERPRINT"),
                     ("added", "PINNED (UTC)"), ("added_by", "BY")])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``hosts`` commands on the ``fleetdeck`` parser."""
    hosts = sub.add_parser("hosts", help="list hosts (FLEETDECK_URL, FLEETDECK_TOKEN)")
    hosts.add_argument("--json", action="store_true", help="print JSON instead of a table")
    hosts.set_defaults(func=cmd_hosts)
    hosts_sub = hosts.add_subparsers(dest="hosts_command")
    trust = hosts_sub.add_parser("trust", help="pin HOST's SSH host key for the ssh deploy driver (admin, audited)")
    trust.add_argument("host", help="an inventory host name")
    trust.add_argument("--fingerprint", help="SHA256:... the key must have (check it on the host: ssh-keygen -lf)")
    trust.add_argument("--key", help="the public key itself ('TYPE BASE64' or a known_hosts line) instead of asking the host")
    trust.add_argument("--replace", action="store_true", help="replace a different key already pinned (a changed host key)")
    trust.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the host (default 10)")
    admin_opts(trust)
    trust.set_defaults(func=cmd_hosts_trust)
    hdelete = hosts_sub.add_parser("delete", help="retire HOST: delete its series, samples and log lines and "
                                   "revoke its agent tokens (admin token, audited)")
    hdelete.add_argument("host")
    hdelete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    hdelete.set_defaults(func=cmd_hosts_delete)
    known = hosts_sub.add_parser("known", help="list pinned SSH host keys")
    known.add_argument("--json", action="store_true", help="print JSON instead of a table")
    admin_opts(known)
    known.set_defaults(func=cmd_hosts_known)
