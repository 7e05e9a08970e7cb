"""The ``fleetdeck`` command (the README lists every command).

Server-side commands (``run``, ``serve``, ``token``, ``user``, ``db``) act on the
configured database directly; client commands (``hosts``, ``apps``, ``deploys``,
``deploy``, ``rollback``, ``cancel``, ``logs``, ``query``, ``alerts``, ``rules``) talk to a running console
over HTTP with ``FLEETDECK_URL`` and ``FLEETDECK_TOKEN``. Exit codes: 0 success,
1 the operation failed, 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import Sequence

from console import __version__
from console.client import ApiClient, ClientError
from console.config import Config, ConfigError, load_config

log = logging.getLogger("fleetdeck")


class CliError(Exception):
    """A failure to report as one line on stderr with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- helpers ----------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    overrides = {}
    if getattr(args, "listen", None):
        overrides["listen"] = args.listen  # validated with the rest, named as the flag
    return load_config(args.config, overrides=overrides)


# Where the console role and docs/install.md put the configuration of an installed console.
SYSTEM_CONFIG = Path("/etc/fleetdeck/config.yaml")


def locate_install(args: argparse.Namespace, env: dict | None = None) -> tuple[Config | None, str, list[str]]:
    """Find the install a command acts on: ``--config``, ``$FLEETDECK_CONFIG``,
    ``$FLEETDECK_DATA_DIR`` or ``$FLEETDECK_DATABASE_URL``, :data:`SYSTEM_CONFIG`, then
    ``./var`` only if that directory exists. Returns the configuration (None when nothing
    was found), how it was found, and the places looked at before. Raises ConfigError."""
    env = os.environ if env is None else env
    if getattr(args, "config", None):
        return _config(args), f"--config {args.config}", []
    looked = ["--config"]
    if env.get("FLEETDECK_CONFIG"):
        return _config(args), f"$FLEETDECK_CONFIG ({env['FLEETDECK_CONFIG']})", looked
    looked.append("$FLEETDECK_CONFIG")
    for name in ("FLEETDECK_DATA_DIR", "FLEETDECK_DATABASE_URL"):
        if env.get(name):
            return _config(args), f"${name}", looked
    looked.append("$FLEETDECK_DATA_DIR and $FLEETDECK_DATABASE_URL")
    if SYSTEM_CONFIG.is_file():
        args.config = str(SYSTEM_CONFIG)
        return _config(args), str(SYSTEM_CONFIG), looked
    looked.append(str(SYSTEM_CONFIG))
    if Path("var").is_dir():
        return _config(args), f"./var ({Path('var').resolve()})", looked
    looked.append(f"./var ({Path('var').resolve()})")
    return None, "", looked


def database_location(config: Config) -> str:
    """The database as a person reads it: a SQLite file's path, or the URL without its password."""
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def database_exists(config: Config) -> bool:
    """Whether the database holds a Fleetdeck schema, without creating anything: a SQLite
    file that exists, or a server database with Alembic's version table. Raises CliError
    when the server cannot be reached."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(config.database_url)
    if url.get_backend_name() == "sqlite":
        return bool(url.database) and Path(url.database).is_file()
    engine = create_engine(url)
    try:
        return inspect(engine).has_table("alembic_version")
    except SQLAlchemyError as exc:
        raise CliError(f"cannot open the database {database_location(config)}: {exc.__class__.__name__}") from None
    finally:
        engine.dispose()


def _admin_services(args: argparse.Namespace):
    """Services of an existing install (see :func:`locate_install`); never creates a
    database: raises CliError (2) saying where it looked and that ``fleetdeck init``
    creates one. With ``-v``, names the database on stderr."""
    config, found, looked = locate_install(args)
    if config is None:
        raise CliError(f"no Fleetdeck install found; looked at {', '.join(looked)}. "
                       "`fleetdeck init` creates one (here in ./var, or where --config, "
                       "$FLEETDECK_CONFIG or $FLEETDECK_DATA_DIR say)", 2)
    where = database_location(config)
    if not database_exists(config):
        raise CliError(f"no Fleetdeck database at {where} (found through {found}); "
                       "`fleetdeck init` creates one", 2)
    if getattr(args, "verbose", False):
        print(f"fleetdeck: using the database {where} (found through {found})", file=sys.stderr)
    return _services(config)


def _server_config(args: argparse.Namespace) -> Config:
    """The install ``run`` and ``serve`` start: found as admin commands find it, else the
    defaults (``./var``, created on first run)."""
    config, _, _ = locate_install(args)
    return config if config is not None else _config(args)


def _services(config: Config):
    from console.services import build_services  # server-side imports stay out of client commands

    return build_services(config)


def local_host_name() -> str:
    """This machine's name, reduced to the characters host names may carry."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "localhost"
    return name[:253]


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """Print ``rows`` as an aligned text table; ``columns`` are (key, heading). Cells are
    stored text (names, reasons, log excerpts): shown through :func:`visible_cell`."""
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else visible_cell(str(r.get(k))) for k, _ in columns]
                                         for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    seconds = max(0, int(time.time() - ts))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago" if seconds < 7200 else f"{seconds // 3600}h ago"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


# -- server ------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    config = _server_config(args)
    asyncio.run(_serve(config, with_agent=False, config_path=args.config))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _server_config(args)
    asyncio.run(_serve(config, with_agent=not args.no_agent, config_path=args.config, first_run=True))
    return 0


def print_admin_password(password: str) -> None:
    print("The password of user 'admin':\n\n"
          f"    {password}\n\n"
          "This password is shown only once. Change it with `fleetdeck user set-password admin`.",
          flush=True)


def ensure_local_agent_token(services, config: Config, host: str) -> str:
    """The agent token of this host's local agent, kept in ``<data_dir>/agent/token`` (0600);
    a new one is created when the file is missing or its token no longer works."""
    path = config.data_dir / "agent" / "token"
    if path.exists():
        token = path.read_text().strip()
        if services.db.run(services.tokens.find_agent_token_host, token) == host:
            return token
    token = services.db.run(services.tokens.create_agent_token, host)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


async def _serve(config: Config, with_agent: bool, config_path: str | None, first_run: bool = False) -> None:
    from console.app import make_app
    from console.server import start_http

    try:
        services = _services(config)
    except ConfigError:
        raise  # an invalid apps:, inventory: or probes: section, not a database problem
    except Exception as exc:  # the database URL is wrong or unreachable
        raise CliError(f"cannot open the database {config.database_url}: {exc}") from None
    backend = services.db.dialect
    print(f"Fleetdeck {__version__}: data in {config.data_dir.resolve()} ({backend})", flush=True)
    app = make_app(services)
    host, port = config.listen_host_port
    try:
        server, bound = start_http(app, services, host, port)
    except OSError as exc:
        services.close()
        raise CliError(f"cannot listen on {config.console.listen}: {exc.strerror}; "
                       "choose another with --listen HOST:PORT or FLEETDECK_LISTEN", 2) from None
    if first_run:
        # Only once the socket is bound: a start that fails creates no admin, so the next
        # one still creates it and prints its password.
        password = services.db.run(services.users.ensure_admin, os.environ.get("FLEETDECK_ADMIN_PASSWORD"))
        if password:
            print("First run: created user 'admin'.", flush=True)
            print_admin_password(password)
    if port == 0:
        config.console.listen = f"{host}:{bound}"
    url = config.public_url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if services.alerting is not None:  # SIGHUP re-reads the rule files, as Prometheus
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(services.alerting.reload()))
    agent = None
    if with_agent:
        agent = LocalAgent(services, config, config_path, url)
        agent.start()
    print(f"Dashboard: {url}/", flush=True)
    try:
        while not stop.is_set():
            if agent is not None:
                agent.check()
            try:
                await asyncio.wait_for(stop.wait(), timeout=2.0)
            except asyncio.TimeoutError:
                pass
    finally:
        print("Stopping…", flush=True)
        if agent is not None:
            agent.stop()
        server.stop()
        await server.close_all_connections()
        services.close()


class LocalAgent:
    """The agent child process that ``fleetdeck run`` keeps alive for this host."""

    def __init__(self, services, config: Config, config_path: str | None, url: str) -> None:
        self.host = local_host_name()
        self.token = ensure_local_agent_token(services, config, self.host)
        # The spool and log positions live beside the console's data (where its token is),
        # not in the directory `fleetdeck run` was started from, unless the agent section
        # of the config file names a state_dir.
        agent_section = (config.document.data.get("agent") if config.document is not None else None) or {}
        self.state_dir = None if agent_section.get("state_dir") else str((config.data_dir / "agent").resolve())
        self.config_path = config_path
        self.url = url
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        argv = [sys.executable, "-m", "agents", "--console", self.url, "--host", self.host]
        if self.config_path:
            argv += ["--config", self.config_path]
        env = dict(os.environ, FLEETDECK_AGENT_TOKEN=self.token)
        if self.state_dir is not None:
            env["FLEETDECK_AGENT_STATE_DIR"] = self.state_dir
        self.proc = subprocess.Popen(argv, env=env)
        self.started_at = time.monotonic()
        print(f"Local agent for host '{self.host}' started (pid {self.proc.pid}).", flush=True)

    def check(self) -> None:
        """Restart the agent if it exited, at most every 10 s."""
        if self.proc is None or self.proc.poll() is None:
            return
        if time.monotonic() - self.started_at < 10:
            return
        print(f"Local agent exited with status {self.proc.returncode}; restarting it.", file=sys.stderr, flush=True)
        self.start()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _actor() -> str:
    """How the audit log names a server-side CLI user: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` or plain seconds -> seconds; raises CliError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise CliError(f"invalid duration {text!r}: use e.g. 90s, 15m, 1h or 7d", 2)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def cmd_token_create(args: argparse.Namespace) -> int:
    from console.auth.tokens import TokenError

    modes = [bool(args.agent), bool(args.name), bool(args.enrol)]
    if sum(modes) != 1:
        raise CliError("give one of --agent HOST, --name NAME --role ROLE, or --enrol [--host HOST]", 2)
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
                raise CliError("--role is required with --name (viewer, deployer or admin)", 2)
            days = args.expires_days
            if args.expires:
                days = parse_duration(args.expires) / 86400
            apps = [a.strip() for a in args.apps.split(",") if a.strip()] if args.apps else None
            created = services.db.run(auth.create_api_token, actor, "cli", args.name, args.role, days, apps)
    except TokenError as exc:
        raise CliError(str(exc), 2) from None
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
        raise CliError(str(exc), 1) from None
    finally:
        services.close()
    print(f"revoked token {revoked['id']} ({revoked['kind']} {visible(revoked['name'])})")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    env = os.environ.get("FLEETDECK_PASSWORD")
    if env:
        return env
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CliError("the passwords differ", 2)
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
            apps = UNCHANGED
            if getattr(args, "apps", None) is not None:
                apps = [a.strip() for a in args.apps.split(",") if a.strip()] or None
            disabled = {"disable": True, "enable": False}.get(args.user_command, UNCHANGED)
            # Database.run passes positional arguments only; the changes are keyword-only.
            user = services.db.run(functools.partial(auth.update_user, role=role, apps=apps, disabled=disabled),
                                   actor, "cli", args.username)
            print(f"user {visible(user['username'])!r}: role {user['role']}, "
                  f"apps {','.join(user['apps']) if user['apps'] is not None else 'all'}, "
                  f"{'disabled' if user['disabled'] else 'enabled'}")
    except UserError as exc:
        raise CliError(str(exc), 2) from None
    finally:
        services.close()
    return 0


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
                raise CliError(f"cannot read the value: {exc}", 2) from None
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
        raise CliError(str(exc), 2 if exc.field or exc.code.startswith("invalid") else 1) from None
    finally:
        services.close()
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    services = _admin_services(args)  # building the services applies the migrations
    print(f"database at head: {database_location(services.config)}")
    services.close()
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Create the database (or bring an existing one to the newest schema) and the
    ``admin`` user, whose one-time password is printed when it is created here."""
    config = _server_config(args)
    where = database_location(config)
    existed = database_exists(config)
    services = _services(config)  # creates the SQLite file and applies the migrations
    try:
        password = services.db.run(services.users.ensure_admin, os.environ.get("FLEETDECK_ADMIN_PASSWORD"))
    finally:
        services.close()
    print(f"{'database already initialised, schema at head' if existed else 'created the database'}: {where}")
    if password:
        print_admin_password(password)
    return 0


# -- client ------------------------------------------------------------------------------
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
            raise CliError(f"this deletes every sample and log line of {args.host!r}; add --yes to confirm", 2)
        if input(f"delete host {args.host!r} with all its samples and log lines? type yes: ").strip() != "yes":
            raise CliError("nothing deleted")
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
            raise CliError(f"{args.host} is a group; trust its hosts one by one", 2)
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
                raise CliError(f"fingerprint mismatch: expected {args.fingerprint}, the key is {fp}; nothing pinned")
            if not args.key and not args.fingerprint:
                if not sys.stdin.isatty():
                    raise CliError("check the fingerprint out of band (ssh-keygen -lf on the host) and pass "
                                   "--fingerprint SHA256:..., or give the key with --key; nothing pinned", 2)
                if input("pin this key? type yes: ").strip() != "yes":
                    raise CliError("not pinned")
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


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def cmd_apps(args: argparse.Namespace) -> int:
    apps = ApiClient().get("/api/v1/apps")
    if args.json:
        print(json.dumps(apps, indent=2))
        return 0
    if not apps:
        print("no apps configured: define them under `apps:` in the console's config file (see docs/deploys.md)")
        return 0
    rows = [{"name": a["name"], "driver": a["driver"], "image": a["target"]["image"],
             "replicas": a["target"]["replicas"], "strategy": a["strategy"]["type"],
             "current": (a["current"] or {}).get("version") or "-",
             "active": f"#{a['active']['id']} {a['active']['version']} {a['active']['state']}" if a["active"] else "-"}
            for a in apps]
    print_table(rows, [("name", "APP"), ("driver", "DRIVER"), ("image", "IMAGE"), ("replicas", "REPLICAS"),
                       ("strategy", "STRATEGY"), ("current", "CURRENT"), ("active", "IN PROGRESS")])
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
    summary = f"{what} #{final['id']} of {final['app']} {final['version']}: {final['state']}"
    if final["duration_s"] is not None:
        summary += f" in {_duration(final['duration_s'])}"
    if final["state"] == "succeeded":
        print(visible(summary))
        return 0
    raise CliError(summary + (f" ({final['error']})" if final.get("error") else ""), 1)


def cmd_deploy(args: argparse.Namespace) -> int:
    return _submit(args, f"/api/v1/apps/{urllib_quote(args.app)}/deploys",
                   {"version": args.version, "reason": args.reason or ""}, "deploy")


def cmd_rollback(args: argparse.Namespace) -> int:
    body = {"reason": args.reason or ""}
    if args.to:
        body["to"] = args.to
    return _submit(args, f"/api/v1/apps/{urllib_quote(args.app)}/rollback", body, "rollback")


def cmd_cancel(args: argparse.Namespace) -> int:
    deploy = ApiClient().request("POST", f"/api/v1/deploys/{args.deploy_id}/cancel", body={})
    print(visible(f"deploy #{deploy['id']} of {deploy['app']}: cancel requested ({deploy['state']})"))
    return 0


def urllib_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# C0 and C1 control characters, DEL, and Unicode bidirectional overrides/isolates (which
# can make a terminal show text in another order than it is): shown as escapes.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def parse_since(value: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"2d"``, ``"1w"`` -> seconds; raises CliError (2)."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise CliError(f"--since must be a duration such as 30s, 15m, 1h or 2d, got {value!r}", 2)
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def visible(text: str) -> str:
    """``text`` with terminal control characters made visible (``\x1b`` as ``\\x1b``,
    CR as ``\\r``), so a log line can never move the cursor, recolour or retitle the
    terminal. Newlines of multiline records stay, indented, and tabs stay. Every line
    the CLI prints from stored text (logs, tables, deploy events, error messages) goes
    through it; ``--json`` output escapes control characters by itself."""
    def escape(match: re.Match) -> str:
        ch = match.group(0)
        return "\\r" if ch == "\r" else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"

    return _UNSAFE.sub(escape, text).replace("\n", "\n    ")


def visible_cell(text: str) -> str:
    """:func:`visible`, with newlines and tabs shown as ``\\n``/``\\t`` too (one table row
    stays one line)."""
    return visible(text.replace("\t", "\\t").replace("\n", "\\n"))


def _log_line(record: dict) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["ts"] / 1000)) + f".{record['ts'] % 1000:03d}Z"
    level = (record.get("level") or "-").upper()
    return f"{stamp} {visible(record['host'])} {visible(record['source'])} {level:5} {visible(record['line'])}"


def _fetch_logs(client: ApiClient, params: dict, limit: int) -> list[dict]:
    """Up to ``limit`` newest matching records, following cursors; oldest first."""
    out: list[dict] = []
    cursor = None
    while len(out) < limit:
        page = client.get("/api/v1/logs", **params, limit=min(1000, limit - len(out)), cursor=cursor)
        out += page["logs"]
        cursor = page["next"]
        if not cursor:
            break
    return out[::-1]


def cmd_logs(args: argparse.Namespace) -> int:
    client = ApiClient()
    params = {"host": args.host, "source": args.source, "q": args.grep, "level": args.level}
    since = parse_since(args.since) if args.since else None
    if since is not None:
        params["start"] = f"{time.time() - since:.3f}"

    def show(record: dict) -> None:
        if args.json:
            print(json.dumps(record, ensure_ascii=True), flush=True)  # escapes control characters too
        else:
            print(_log_line(record), flush=True)

    # Follow by polling: look back a window before the newest line seen (agents stamp
    # lines when read, and batches may arrive late), print what was not printed yet.
    # The window ends at this machine's clock at the latest, so one line stamped ahead
    # cannot move it past every line that follows.
    newest = int(time.time() * 1000)

    def window() -> list[dict]:
        start = max(0, min(newest, int(time.time() * 1000)) - FOLLOW_LOOKBACK_MS)
        return _fetch_logs(client, dict(params, start=f"{start / 1000:.3f}"), FOLLOW_WINDOW_LINES)

    # Lines already in the window but left out by --limit are old news, not new lines;
    # read before the first page, so a line stored in between is printed, not skipped.
    seen: dict[int, None] = {r["id"]: None for r in window()} if args.follow else {}
    records = _fetch_logs(client, params, args.limit)
    for record in records:
        show(record)
        seen[record["id"]] = None
    if not args.follow:
        if not records and not args.json:
            print("no matching log lines", file=sys.stderr)
        return 0
    newest = max((r["ts"] for r in records), default=newest)
    while True:
        time.sleep(args.poll)
        for record in window():
            if record["id"] in seen:
                continue
            seen[record["id"]] = None
            newest = max(newest, record["ts"])
            show(record)
        while len(seen) > 100_000:  # bounded: forget the oldest ids
            seen.pop(next(iter(seen)))


def _duration_arg(flag: str, value: str) -> float:
    match = _DURATION.match(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise CliError(f"{flag} must be a duration such as 30s, 15m, 1h or 2d, got {value!r}", 2)
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


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
        raise CliError(f"--time must be Unix seconds or RFC 3339, got {value!r}", 2) from None
    if parsed.tzinfo is None:
        raise CliError(f"--time needs a time zone (e.g. a trailing Z), got {value!r}", 2)
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
            raise CliError("--step needs --range", 2)
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


FOLLOW_LOOKBACK_MS = 120_000
FOLLOW_WINDOW_LINES = 10_000  # per poll; a busier window prints its newest lines only


def positive_int(raw: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetdeck", description="Fleetdeck console and command line.")
    parser.add_argument("--version", action="version", version=f"fleetdeck {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("FLEETDECK_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def admin_opts(p: argparse.ArgumentParser, default: object = None) -> None:
        # default=SUPPRESS on a nested parser keeps the values given to its parent.
        p.add_argument("--config", default=default,
                       help="config file (default: $FLEETDECK_CONFIG, $FLEETDECK_DATA_DIR, "
                       f"{SYSTEM_CONFIG}, then ./var if it exists)")
        p.add_argument("-v", "--verbose", action="store_true", default=default if default else False,
                       help="print which database is used (on stderr)")

    def server_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", help="config file (default $FLEETDECK_CONFIG)")
        return p

    run = server_cmd("run", "first-run setup, then the console plus a local agent; prints the URL")
    run.add_argument("--listen", help="HOST:PORT (default $FLEETDECK_LISTEN or 127.0.0.1:8700)")
    run.add_argument("--no-agent", action="store_true", help="do not start the local agent")
    run.set_defaults(func=cmd_run)
    serve = server_cmd("serve", "run the console")
    serve.add_argument("--listen", help="HOST:PORT (default $FLEETDECK_LISTEN or 127.0.0.1:8700)")
    serve.set_defaults(func=cmd_serve)

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
    sset.add_argument("--kind", required=True, help="ssh_key, kubeconfig, registry_password, webhook_url or generic")
    sset.add_argument("--file", help="read the value from this file instead of stdin")
    sset.add_argument("--config")
    sset.set_defaults(func=cmd_secrets)

    init = sub.add_parser("init", help="create the database and the admin user (prints its password once); "
                          "an existing database is brought to the newest schema")
    admin_opts(init)
    init.set_defaults(func=cmd_init)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    admin_opts(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)

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
    dep.add_argument("--wait", action="store_true", help="follow the deploy's steps until it finishes")
    dep.add_argument("--json", action="store_true", help="print the deploy as JSON")
    dep.set_defaults(func=cmd_deploy)
    rb = sub.add_parser("rollback", help="deploy the previous (or a chosen) successful version of APP")
    rb.add_argument("app")
    rb.add_argument("--to", metavar="VERSION", help="an earlier successful version (default: the previous one)")
    rb.add_argument("--reason", help="why, kept in the history and the audit log")
    rb.add_argument("--wait", action="store_true", help="follow the rollback until it finishes")
    rb.add_argument("--json", action="store_true", help="print the deploy as JSON")
    rb.set_defaults(func=cmd_rollback)
    cancel = sub.add_parser("cancel", help="cancel a queued or running deploy (a running one rolls back)")
    cancel.add_argument("deploy_id", type=int)
    cancel.set_defaults(func=cmd_cancel)
    logs = sub.add_parser("logs", help="search and follow log lines (FLEETDECK_URL, FLEETDECK_TOKEN)")
    logs.add_argument("--host", help="only this host (comma-separated for several)")
    logs.add_argument("--source", help="only this source file (a trailing * matches a prefix)")
    logs.add_argument("--grep", metavar="TEXT", help="only lines containing every word of TEXT")
    logs.add_argument("--level", help="only these levels, e.g. error or warn,error")
    logs.add_argument("--since", metavar="DURATION", help="only lines newer than this, e.g. 15m, 1h, 2d")
    logs.add_argument("--limit", type=positive_int, default=100, help="at most this many lines before following (default 100)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    logs.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    logs.set_defaults(func=cmd_logs)
    query = sub.add_parser("query", help="run a PromQL query (FLEETDECK_URL, FLEETDECK_TOKEN)")
    query.add_argument("expr", metavar="PROMQL")
    query.add_argument("--range", metavar="DURATION", help="a range query over this long up to --time, e.g. 1h")
    query.add_argument("--step", metavar="DURATION", help="the range query's resolution (default: range / 60)")
    query.add_argument("--time", metavar="TIME", help="evaluation (or range end) time: Unix seconds or RFC 3339")
    query.add_argument("--json", action="store_true", help="print Prometheus' data object as JSON")
    query.set_defaults(func=cmd_query)
    from console.alerting.cli import add_commands as add_alerting_commands

    add_alerting_commands(sub)  # alerts, alerts history, rules, rules check, rules reload
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except CliError as exc:  # may carry stored text (a deploy's error) or the console's message
        print(f"fleetdeck: {visible(str(exc))}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"fleetdeck: configuration: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"fleetdeck: {visible(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
