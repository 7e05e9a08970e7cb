"""``fleetdeck-agent`` command line (also ``python -m agents``).

Exit status: 0 on success (``--once``: the console accepted the batch;
otherwise: stopped by SIGTERM/SIGINT), 1 when a worker thread of the running
agent died (systemd's ``Restart=on-failure`` and ``fleetdeck run`` start it
again), 2 on a configuration error or, with ``--once``, when the batch was not
accepted. Errors are one line on stderr starting with ``fleetdeck-agent:``.

Subcommands: ``enrol`` (exchange an enrolment token) and ``dead-letter list|replay``
(batches the console refused for their content).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading

from agents import __version__
from agents.agent import Agent, WorkerDied, install_signal_handlers
from agents.client import IngestClient, PushError
from agents.config import AgentConfig, ConfigError, load_agent_config, read_token_file
from agents.spool import Spool
from collectors import build_collectors

PROG = "fleetdeck-agent"
EXIT_ERROR = 2
EXIT_WORKER_DIED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] | {PROG} enrol --console URL --enrol-token T [--host NAME] | {PROG} dead-letter list|replay",
        description="Collect host metrics and push them to a Fleetdeck console. "
        f"`{PROG} enrol` first exchanges a one-time enrolment token (`fleetdeck token create --enrol`) "
        f"for this host's agent token; see `{PROG} enrol --help`. `{PROG} dead-letter list|replay` shows "
        "or resends the batches the console refused for their content.",
        epilog="Environment: FLEETDECK_CONFIG (default --config), FLEETDECK_AGENT_CONSOLE, "
        "FLEETDECK_AGENT_TOKEN, FLEETDECK_AGENT_HOST, FLEETDECK_AGENT_INTERVAL, FLEETDECK_AGENT_STATE_DIR. "
        "Command-line options win over the environment, which wins over the file.",
    )
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("FLEETDECK_CONFIG") or None,
                        help="YAML file: agent settings, or a config.yaml with an 'agent:' section")
    parser.add_argument("--console", metavar="URL", help="console base URL, e.g. http://127.0.0.1:8700")
    parser.add_argument("--token", metavar="T",
                        help="agent token (prefer FLEETDECK_AGENT_TOKEN: argv is visible in ps)")
    parser.add_argument("--host", metavar="NAME", help="host name to report (default: this machine's hostname)")
    parser.add_argument("--interval", metavar="SECONDS", type=float, help="seconds between collections")
    parser.add_argument("--once", action="store_true",
                        help="collect and push one batch, print the console's answer, exit")
    parser.add_argument("--log-level", metavar="LEVEL", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="DEBUG, INFO (default), WARNING or ERROR")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_ERROR


def describe_push_error(exc: PushError, console_url: str) -> str:
    """One line for a failed push, e.g. ``console rejected the batch: 401 invalid_token: ...``."""
    if exc.status is None:
        return f"cannot reach the console at {console_url}: {exc.message}"
    return f"console rejected the batch: {exc.status} {exc.code}: {exc.message}"


def collector_options(config: AgentConfig) -> dict[str, dict]:
    """``collector_options`` plus the settings of the inputs that have their own section
    (``prometheus:``, ``textfile:``), as keyword arguments of their collector classes."""
    options = dict(config.collector_options)
    if "prometheus" in config.collectors:
        options["prometheus"] = {"options": config.prometheus, "agent_interval": config.interval}
    if "textfile" in config.collectors:
        options["textfile"] = {"options": config.textfile}
    return options


def build_enrol_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} enrol",
        description="Exchange a one-time enrolment token (`fleetdeck token create --enrol`) for this "
                    "host's agent token, written with mode 0600 to the token file the agent reads.")
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("FLEETDECK_CONFIG") or None)
    parser.add_argument("--console", metavar="URL", help="console base URL")
    parser.add_argument("--enrol-token", metavar="T", default=os.environ.get("FLEETDECK_ENROL_TOKEN") or None,
                        help="one-time enrolment token (or $FLEETDECK_ENROL_TOKEN)")
    parser.add_argument("--host", metavar="NAME", help="host name to enrol (default: this machine's hostname)")
    parser.add_argument("--token-file", metavar="PATH", help="where to write the agent token "
                        "(default: token_file from the config, else <state_dir>/token)")
    return parser


def main_enrol(argv: list[str]) -> int:
    """``fleetdeck-agent enrol``: 0 when the token file was written, 2 otherwise."""
    from agents.enrol import enrol, write_token_file  # urllib.request: only when enrolling

    args = build_enrol_parser().parse_args(argv)
    if not args.enrol_token:
        return _fail("enrol: --enrol-token (or FLEETDECK_ENROL_TOKEN) is required")
    try:
        config = load_agent_config(args.config, {"console_url": args.console, "host": args.host,
                                                 "token_file": args.token_file})
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    try:
        token = enrol(config.console_url, args.enrol_token, config.host, config.timeout)
    except PushError as exc:
        if exc.status is None:
            return _fail(f"cannot reach the console at {config.console_url}: {exc.message}")
        return _fail(f"enrolment refused: {exc.status} {exc.code}: {exc.message}")
    try:
        write_token_file(config.token_path, token)
    except OSError as exc:
        return _fail(f"cannot write the token file {config.token_path}: {exc.strerror or exc}")
    print(f"enrolled host {config.host!r}; agent token written to {config.token_path}")
    return 0


def build_dead_letter_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} dead-letter",
        description="Batches the console refused for their content (400, 413, 422, ...), kept in "
                    "<state_dir>/dead-letter.jsonl. `list` prints them; `replay` sends them again under their "
                    "own batch_id (the console stores a batch once) and removes those it accepts.")
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("FLEETDECK_CONFIG") or None)
    parser.add_argument("--console", metavar="URL", help="console base URL (replay)")
    parser.add_argument("--token", metavar="T", help="agent token (replay; prefer FLEETDECK_AGENT_TOKEN)")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per line")
    return parser


def main_dead_letter(argv: list[str]) -> int:
    """``fleetdeck-agent dead-letter list|replay``: 0 when every entry was listed or
    accepted, 1 when some replay was refused again (they stay in the file), 2 on errors."""
    from datetime import datetime, timezone

    from agents.delivery import DeadLetterFile

    args = build_dead_letter_parser().parse_args(argv)
    try:
        config = load_agent_config(args.config, {"console_url": args.console, "token": args.token})
        if not config.token:
            config.token = read_token_file(config)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    dead = DeadLetterFile(os.path.join(config.state_dir, "dead-letter.jsonl"))
    try:
        entries = dead.entries()
    except OSError as exc:
        return _fail(f"cannot read {dead.path}: {exc.strerror or exc}")
    if args.action == "list":
        for _, _, entry in entries:
            batch = entry.get("batch") or {}
            if args.json:
                print(json.dumps({k: entry.get(k) for k in ("failed_at", "seq", "status", "code", "message")}
                                 | {"batch_id": batch.get("batch_id"), "samples": _samples(batch),
                                    "logs": len(batch.get("logs") or [])}, sort_keys=True))
                continue
            when = datetime.fromtimestamp(float(entry.get("failed_at") or 0), timezone.utc)
            print(f"{when:%Y-%m-%dT%H:%M:%SZ}  seq={entry.get('seq')}  {entry.get('status')} {entry.get('code')}"
                  f"  batch_id={batch.get('batch_id', '?')}  samples={_samples(batch)}"
                  f"  logs={len(batch.get('logs') or [])}  {entry.get('message', '')}")
        if not args.json:
            print(f"{len(entries)} dead-lettered batch(es) in {dead.path}", file=sys.stderr)
        return 0
    client = IngestClient(config.console_url, config.token, config.timeout, config.ca_file,
                          config.client_cert, config.client_key)
    with dead.locked():
        entries = dead.entries()  # again, under the lock: the agent may have added some
        keep, accepted = [], 0
        for item in entries:
            try:
                client.push_body(DeadLetterFile.body(item[2]))
                accepted += 1
            except PushError as exc:
                keep.append(item)
                print(f"seq={item[2].get('seq')}: {describe_push_error(exc, config.console_url)}", file=sys.stderr)
            except (KeyError, ValueError, TypeError) as exc:
                keep.append(item)
                print(f"seq={item[2].get('seq')}: unusable entry ({exc})", file=sys.stderr)
        if entries:
            try:
                dead.rewrite(keep)
            except OSError as exc:
                return _fail(f"cannot rewrite {dead.path}: {exc.strerror or exc} ({accepted} batch(es) were "
                             "accepted; a second replay is answered as duplicates)")
    print(f"replayed {accepted} of {len(entries)} dead-lettered batch(es); {len(keep)} kept in {dead.path}")
    return 0 if not keep else 1


def _samples(batch: dict) -> int:
    return sum(len(m.get("points") or []) for m in batch.get("metrics") or [] if isinstance(m, dict))


def main(argv: list[str] | None = None) -> int:
    """Run the agent (or, with ``enrol`` or ``dead-letter`` first, that command); return
    the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["enrol"]:
        return main_enrol(argv[1:])
    if argv[:1] == ["dead-letter"]:
        logging.basicConfig(level="WARNING", stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        return main_dead_letter(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {"console_url": args.console, "token": args.token, "host": args.host, "interval": args.interval}
    try:
        config = load_agent_config(args.config, overrides)
    except ConfigError as exc:
        return _fail(f"config error: {exc}")
    try:
        collectors = build_collectors(config.collectors, collector_options(config))
    except ValueError as exc:
        return _fail(f"config error: {exc}")
    token_source = None
    if not config.token:
        try:
            config.token = read_token_file(config)
        except ConfigError as exc:
            return _fail(f"config error: {exc}")
        # A refused token is read again from its file before each retry: a new one written
        # there (a new `enrol`, or by hand) resumes sending without a restart.
        token_source = lambda: read_token_file(config)  # noqa: E731
    if not config.token:
        logging.getLogger(__name__).warning(
            "no agent token configured (token, FLEETDECK_AGENT_TOKEN or %s); run `%s enrol` first",
            config.token_path, PROG)

    spool = None
    if not args.once:
        try:
            spool = Spool(os.path.join(config.state_dir, "spool"), config.spool_max_bytes, config.spool_max_age,
                          config.spool_fsync)
        except OSError as exc:
            return _fail(f"cannot open the spool in {config.state_dir}: {exc}")
    log_tail = None
    if config.logs.enabled:
        from collectors.logs import LogCollector

        # The newest positions travel inside spool records; they win over an older positions file.
        log_tail = LogCollector(config.logs, config.state_dir,
                                recovered=spool.last_extension() if spool is not None else None)
        if spool is not None and log_tail.spool_seq is not None:
            spool.advance_seq(log_tail.spool_seq)
        collectors.append(log_tail)
    try:
        client = IngestClient(config.console_url, config.token, config.timeout, config.ca_file,
                              config.client_cert, config.client_key)
    except OSError as exc:  # ssl.SSLError is an OSError
        return _fail(f"config error: cannot load the TLS files: {exc}")
    if args.once:
        agent = Agent(config, collectors, client, logs=log_tail)
        try:
            answer = agent.run_once()
        except PushError as exc:
            return _fail(describe_push_error(exc, config.console_url))
        finally:
            if log_tail is not None:
                log_tail.close()
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0

    agent = Agent(config, collectors, client, logs=log_tail, spool=spool, token_source=token_source)
    stop = threading.Event()
    restore = install_signal_handlers(stop)
    try:
        agent.run_forever(stop)
    except WorkerDied as exc:
        print(f"{PROG}: {exc}; exiting to be restarted", file=sys.stderr)
        return EXIT_WORKER_DIED
    finally:
        restore()
        if log_tail is not None:
            log_tail.close()  # open files, and the journalctl child when the journal is read
    return 0


if __name__ == "__main__":
    sys.exit(main())
