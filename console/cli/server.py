"""``fleetdeck run`` and ``fleetdeck serve``: the console, and with ``run`` the first-run
setup and a local agent kept alive for this host."""
from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import shutil
import signal
import subprocess
import sys
import time

from pathlib import Path

from console import __version__
from console.cli.common import CliError, _actor, _server_config, _services, local_host_name
from console.config import Config, ConfigError
from console.i18n import tx


def cmd_serve(args: argparse.Namespace) -> int:
    config = _server_config(args)
    if config.console.workers > 1:
        return serve_workers(config)
    asyncio.run(_serve(config, with_agent=False, config_path=args.config))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _server_config(args)
    if config.console.workers > 1:
        raise CliError(f"workers is {config.console.workers} (from {config.sources.get('workers', 'the default')}), but "
                       "`fleetdeck run` runs one process; use `fleetdeck serve` for several workers", 2)
    if not args.no_agent:
        check_local_agent_settings(config)
    asyncio.run(_serve(config, with_agent=not args.no_agent, config_path=args.config, first_run=True))
    return 0


def check_local_agent_settings(config: Config) -> None:
    """Refuse to start (CliError, exit 2) when the local agent would refuse the config
    file's ``agent:`` section, with the agent's own message naming the key and its file
    and line: before anything is created, rather than a console whose agent exits and is
    restarted every 10 s."""
    from agents.config import ConfigError as AgentConfigError
    from agents.config import load_agent_config

    try:
        # The agent's command line sets these two (LocalAgent.start): any valid URL stands in.
        load_agent_config(config.path, {"console_url": "http://127.0.0.1:8700", "host": local_host_name()})
    except AgentConfigError as exc:
        raise CliError(f"the local agent cannot start: {exc}", 2) from None


log = logging.getLogger(__name__)
CONSOLE_LOG = "console.log"  # in the data directory, written by `fleetdeck run`
CONSOLE_LOG_BYTES = 10 * 1024 * 1024  # rotated (renamed to console.log.1, .2) beyond this
# Common system logs the local agent tails where they exist (Debian and Ubuntu names).
SYSTEM_LOGS = ("/var/log/syslog", "/var/log/auth.log")
JOURNAL_DIRECTORIES = ("/var/log/journal", "/run/log/journal")


def log_to_file(config: Config) -> Path:
    """Also write the console's own log to ``<data_dir>/console.log`` (Python logging's
    format, rotated at :data:`CONSOLE_LOG_BYTES`), for the local agent to send."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = (config.data_dir / CONSOLE_LOG).resolve()
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=CONSOLE_LOG_BYTES, backupCount=2,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return path


def journal_present() -> bool:
    """Whether this machine has a systemd journal journalctl can read."""
    return shutil.which("journalctl") is not None and any(
        Path(d).is_dir() and any(Path(d).iterdir()) for d in JOURNAL_DIRECTORIES)


def local_agent_logs(console_log: Path) -> dict:
    """The ``logs`` settings of the local agent when the config file sets none: the
    console's own log (read from its start at the first run), the common system logs
    (absent ones are picked up if they appear) and the journal where there is one."""
    return {"paths": [str(console_log), *SYSTEM_LOGS], "from_start": [str(console_log)],
            "journal": journal_present()}


def print_admin_password(password: str) -> None:
    print("The password of user 'admin':\n\n"
          f"    {password}\n\n"
          "This password is shown only once. Change it with `fleetdeck user set-password admin`.",
          flush=True)


def ensure_local_agent_token(services, config: Config, host: str) -> str:
    """The agent token of this host's local agent, kept in ``<data_dir>/agent/token`` (0600);
    a new one is created (audited as the person running ``fleetdeck run``) when the file is
    missing or its token no longer works."""
    path = config.data_dir / "agent" / "token"
    if path.exists():
        token = path.read_text().strip()
        if services.db.run(services.tokens.find_agent_token_host, token) == host:
            return token
    token = services.db.run(services.auth.create_agent_token, _actor(), "cli", host)["token"]
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

    console_log = log_to_file(config) if first_run else None
    try:
        services = _services(config)
    except ConfigError:
        raise  # an invalid apps:, inventory: or probes: section, not a database problem
    except Exception as exc:  # the database URL is wrong or unreachable
        raise CliError(tx("cannot open the database {database}: {reason}", database=config.database_url,
                          reason=str(exc))) from None
    backend = services.db.dialect
    print(f"Fleetdeck {__version__}: data in {config.data_dir.resolve()} ({backend})", flush=True)
    app = make_app(services)
    host, port = config.listen_host_port
    try:
        server, bound = start_http(app, services, host, port)
    except OSError as exc:
        services.close()
        raise CliError(tx("cannot listen on {listen}: {reason}; choose another with --listen HOST:PORT or "
                          "FLEETDECK_LISTEN", listen=config.console.listen, reason=exc.strerror), 2) from None
    if first_run:
        # Only once the socket is bound: a start that fails creates no admin, so the next
        # one still creates it and prints its password.
        password = services.db.run(services.auth.ensure_admin, _actor(), "cli",
                                   os.environ.get("FLEETDECK_ADMIN_PASSWORD"))
        if password:
            print("First run: created user 'admin'.", flush=True)
            print_admin_password(password)
    if port == 0:
        config.console.listen = f"{host}:{bound}"
    url = config.public_url
    agent = None
    log.info("console %s listening on %s (data in %s)", __version__, url, config.data_dir.resolve())
    if with_agent:
        agent = LocalAgent(services, config, config_path, url, console_log)
        agent.start()
    print(f"Dashboard: {url}/", flush=True)
    await _until_stopped(services, server, agent)


async def _until_stopped(services, server, agent: "LocalAgent | None" = None, quiet: bool = False) -> None:  # noqa: ANN001
    """Serve until SIGINT or SIGTERM, then stop the server and the services (SIGHUP
    re-reads the rule files and notifications, as Prometheus)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if services.alerting is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(services.reload()))
    try:
        while not stop.is_set():
            if agent is not None:
                agent.check()
            try:
                await asyncio.wait_for(stop.wait(), timeout=2.0)
            except asyncio.TimeoutError:
                pass
    finally:
        if not quiet:
            print("Stopping…", flush=True)
        if agent is not None:
            agent.stop()
        server.stop()
        await server.close_all_connections()
        services.close()


def serve_workers(config: Config) -> int:
    """``serve`` with ``workers`` > 1 (console/cluster/workers.py): check the database and
    apply migrations here once, bind the port, then fork the workers and supervise them."""
    from console.cluster.workers import metrics_dir

    with metrics_dir() as metrics:  # before prometheus_client is imported (console.app imports it)
        return _supervise(config, metrics)


def _supervise(config: Config, metrics: Path) -> int:
    import threading

    import console.app  # noqa: F401 - imported before the fork, so the workers share it
    from console.cluster.workers import Supervisor, bind_slots, clear_metrics

    try:
        services = _services(config)
    except ConfigError:
        raise
    except Exception as exc:
        raise CliError(f"cannot open the database {config.database_url}: {exc}") from None
    backend = services.db.dialect
    services.close()
    for thread in threading.enumerate():  # executors shut down without waiting (the leader's) end now
        if thread is not threading.current_thread():
            thread.join(10)
    if threading.active_count() > 1:  # a fork copies this thread only: nothing else may run yet
        raise CliError(f"cannot fork workers: threads are running ({threading.enumerate()})")
    clear_metrics(metrics)
    host, port = config.listen_host_port
    try:
        slots, bound = bind_slots(host, port, config.console.workers)
    except OSError as exc:
        raise CliError(f"cannot listen on {config.console.listen}: {exc.strerror}; "
                       "choose another with --listen HOST:PORT or FLEETDECK_LISTEN", 2) from None
    if port == 0:
        config.console.listen = f"{host}:{bound}"
    print(f"Fleetdeck {__version__}: data in {config.data_dir.resolve()} ({backend}), "
          f"{config.console.workers} workers", flush=True)
    print(f"Dashboard: {config.public_url}/", flush=True)
    status = Supervisor(slots, lambda slot, sockets: asyncio.run(_serve_worker(config, slot, sockets, metrics)),
                        metrics=metrics).run()
    print("Stopped.", flush=True)
    return status


async def _serve_worker(config: Config, slot: int, sockets: list, metrics: Path) -> int:
    """One worker of :func:`serve_workers`: a whole console on the sockets of its slot,
    its metrics in the run's shared ``metrics`` directory."""
    from console.app import make_app
    from console.server import start_http
    from console.services import build_services

    services = build_services(config, migrate=False, metrics_dir=metrics)
    server, _ = start_http(make_app(services), services, "", 0, sockets=sockets)
    log.info("worker %d (pid %d) serving on %s", slot, os.getpid(), config.public_url)
    await _until_stopped(services, server, quiet=True)
    return 0


class LocalAgent:
    """The agent child process that ``fleetdeck run`` keeps alive for this host.

    Its settings are the config file's ``agent:`` section; when that names no log paths
    and no journal, the agent also reads :func:`local_agent_logs` (the section plus those
    sources are written to ``<data_dir>/agent/agent.yaml``, mode 0600, and handed to it)."""

    def __init__(self, services, config: Config, config_path: str | None, url: str,
                 console_log: Path | None = None) -> None:
        self.host = local_host_name()
        self.token = ensure_local_agent_token(services, config, self.host)
        # The spool and log positions live beside the console's data (where its token is),
        # not in the directory `fleetdeck run` was started from, unless the agent section
        # of the config file names a state_dir.
        agent_section = (config.document.data.get("agent") if config.document is not None else None) or {}
        self.state_dir = None if agent_section.get("state_dir") else str((config.data_dir / "agent").resolve())
        logs = agent_section.get("logs") if isinstance(agent_section, dict) else None
        logs = logs if isinstance(logs, dict) else {}
        if console_log is not None and isinstance(agent_section, dict) and not (logs.get("paths") or logs.get("journal")):
            # The section's other log options (exclude, multiline, ...) stay; the sources are added.
            config_path = self._write_settings(config, {**agent_section,
                                                        "logs": {**logs, **local_agent_logs(console_log)}})
        self.config_path = config_path
        self.url = url
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @staticmethod
    def _write_settings(config: Config, settings: dict) -> str:
        import yaml

        path = config.data_dir / "agent" / "agent.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the section may hold a token
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# Written by `fleetdeck run` at each start: the agent: section of the config file,\n"
                     "# with the logs it reads when that section sets none (docs/logs.md).\n")
            yaml.safe_dump(settings, fh, sort_keys=True)
        os.replace(tmp, path)
        return str(path)

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
        log.info("local agent for host %s started (pid %d)", self.host, self.proc.pid)

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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``run`` and ``serve`` commands on the ``fleetdeck`` parser."""
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
    serve.add_argument("--workers", type=int, metavar="N",
                       help="console processes on the port and database (default $FLEETDECK_WORKERS or 1)")
    serve.set_defaults(func=cmd_serve)
