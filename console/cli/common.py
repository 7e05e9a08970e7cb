"""Helpers shared by the ``fleetdeck`` commands: finding the install a server-side command
acts on, the error every command reports as one line, durations, and printing stored text
(tables, cells) with terminal control characters made visible."""
from __future__ import annotations

import argparse
import getpass
import os
import re
import socket
import sys
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from console.config import Config, load_config
from console.i18n import cli_errors, cli_text, tx


class CliError(Exception):
    """A failure to report as one line on stderr with exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _config(args: argparse.Namespace) -> Config:
    overrides = {}
    if getattr(args, "listen", None):
        overrides["listen"] = args.listen  # validated with the rest, named as the flag
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    return load_config(args.config, overrides=overrides)


# Where the console role and docs/install.md put the configuration of an installed console.
SYSTEM_CONFIG = Path("/etc/fleetdeck/config.yaml")


def locate_install(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> tuple[Config | None, str, list[str]]:
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
        return url.database is not None and url.database != "" and Path(url.database).is_file()
    engine = create_engine(url)
    try:
        return inspect(engine).has_table("alembic_version")
    except SQLAlchemyError as exc:
        raise CliError(tx("cannot open the database {database}: {reason}", database=database_location(config),
                          reason=exc.__class__.__name__)) from None
    finally:
        engine.dispose()


def _admin_services(args: argparse.Namespace):
    """Services of an existing install (see :func:`locate_install`); never creates a
    database: raises CliError (2) saying where it looked and that ``fleetdeck init``
    creates one. With ``-v``, names the database on stderr."""
    config, found, looked = locate_install(args)
    if config is None:
        raise CliError(tx("no Fleetdeck install found; looked at {places}. "
                          "`fleetdeck init` creates one (here in ./var, or where --config, "
                          "$FLEETDECK_CONFIG or $FLEETDECK_DATA_DIR say)", places=", ".join(looked)), 2)
    where = database_location(config)
    if not database_exists(config):
        raise CliError(tx("no Fleetdeck database at {database} (found through {found}); "
                          "`fleetdeck init` creates one", database=where, found=found), 2)
    if getattr(args, "verbose", False):
        print(f"fleetdeck: using the database {where} (found through {found})", file=sys.stderr)
    return _admin_build(config)


def _server_config(args: argparse.Namespace) -> Config:
    """The install ``run`` and ``serve`` start: found as admin commands find it, else the
    defaults (``./var``, created on first run)."""
    config, _, _ = locate_install(args)
    return config if config is not None else _config(args)


def _services(config: Config):
    from console.services import build_services  # server-side imports stay out of client commands

    return build_services(config)


def _admin_build(config: Config):
    """The administrative services only (console/admin/services.py): a command that manages users,
    tokens or the database does not build the server's other services."""
    from console.admin.services import build_admin_services  # server-side imports stay out of client commands

    return build_admin_services(config)


def local_host_name() -> str:
    """This machine's name, reduced to the characters host names may carry."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "localhost"
    return name[:253]


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """Print ``rows`` as an aligned text table; ``columns`` are (key, heading). Cells are
    stored text (names, reasons, log excerpts): shown through :func:`visible_cell`."""
    tr = cli_text()  # headings in the terminal's language (console/i18n.py)
    cells = [[tr(h) for _, h in columns]] + [["" if r.get(k) is None else visible_cell(str(r.get(k))) for k, _ in columns]
                                             for r in rows]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(row, widths)).rstrip())


def display_width(text: str) -> int:
    """Terminal columns of ``text``: wide and fullwidth characters (CJK, Unicode UAX #11
    East Asian Width W/F) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _ago(ts: float | None) -> str:
    tr = cli_text()
    if ts is None:
        return tr("never")
    seconds = max(0, int(time.time() - ts))
    if seconds < 120:
        return tr("{n}s ago").format(n=seconds)
    return tr("{n}m ago").format(n=seconds // 60) if seconds < 7200 else tr("{n}h ago").format(n=seconds // 3600)


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
        raise CliError(tx("invalid duration {value}: use e.g. 90s, 15m, 1h or 7d", value=repr(text)), 2)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


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
        raise CliError(tx("{flag} must be a duration such as 30s, 15m, 1h or 2d, got {value}", flag="--since",
                          value=repr(value)), 2)
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


def _duration_arg(flag: str, value: str) -> float:
    match = _DURATION.match(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise CliError(tx("{flag} must be a duration such as 30s, 15m, 1h or 2d, got {value}", flag=flag,
                          value=repr(value)), 2)
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def positive_int(raw: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(cli_errors()(tx("{value} is not an integer", value=repr(raw)))) from None
    if value < 1:
        raise argparse.ArgumentTypeError(cli_errors()(tx("must be at least 1, not {value}", value=value)))
    return value


def admin_opts(p: argparse.ArgumentParser, default: object = None) -> None:
    """``--config`` and ``-v`` of the server-side commands that act on an existing install."""
    # default=SUPPRESS on a nested parser keeps the values given to its parent.
    p.add_argument("--config", default=default,
                   help="config file (default: $FLEETDECK_CONFIG, $FLEETDECK_DATA_DIR, "
                   f"{SYSTEM_CONFIG}, then ./var if it exists)")
    p.add_argument("-v", "--verbose", action="store_true", default=default if default else False,
                   help="print which database is used (on stderr)")


class Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped command, choice or option (the closest of
    the valid values by :func:`difflib.get_close_matches`), which Python's argparse
    gained only in 3.14 (``suggest_on_error``). Sub-parsers inherit the class."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        choices = action.choices
        if choices is None or value in choices:
            return
        import difflib

        names = [str(c) for c in choices]
        close = difflib.get_close_matches(str(value), names, n=1)
        said = cli_errors()  # argparse's messages are plain str: translated here, in the terminal's language
        hint = said(tx("; did you mean {value}?", value=repr(close[0]))) if close else ""
        raise argparse.ArgumentError(action, said(tx("invalid choice: {value}{hint} (choose from {choices})",
                                                     value=repr(value), hint=hint, choices=", ".join(names))))

    def reject_unknown(self, parsed: argparse.Namespace, extras: list[str]) -> None:
        """After :meth:`parse_known_args`: argparse's "unrecognized arguments" usage error for
        ``extras``, with "did you mean" the closest option of the command they were given to
        (found by following the sub-commands ``parsed`` names)."""
        if not extras:
            return
        import difflib

        options: list[str] = []
        parser: argparse.ArgumentParser | None = self
        while parser is not None:
            options = [o for o in parser._option_string_actions if o.startswith("--")] + options
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = getattr(parsed, subs[0].dest, None) if subs and subs[0].dest else None
            parser = subs[0].choices.get(chosen) if subs and isinstance(chosen, str) else None
        said = cli_errors()  # argparse's messages are plain str: translated here, in the terminal's language
        close = next((c[0] for c in (difflib.get_close_matches(e.split("=", 1)[0], options, n=1)
                                     for e in extras if e.startswith("--")) if c), None)
        hint = said(tx("; did you mean {value}?", value=repr(close))) if close else ""
        self.error(said(tx("unrecognized arguments: {args}{hint}", args=" ".join(extras), hint=hint)))

    def error(self, message: str) -> NoReturn:
        """argparse's usage error (exit 2), its "error" word in the terminal's language."""
        self.print_usage(sys.stderr)
        self.exit(2, cli_errors()(tx("{prog}: error: {message}", prog=self.prog, message=message)) + "\n")


def one_of(*values: str, many: bool = False, fold: bool = False):
    """argparse type of an enum option: one of ``values`` (``many``: a comma-separated list
    of them; ``fold``: case-insensitive, returned lower-case). A value outside them is a
    usage error (exit 2) that lists the valid ones, so a typo never reads as "nothing
    matched"."""
    def check(raw: str) -> str:
        given = [v.strip() for v in raw.split(",")] if many else [raw]
        for value in given:
            if (value.lower() if fold else value) not in values:
                import difflib

                close = difflib.get_close_matches(value.lower() if fold else value, values, n=1)
                said = cli_errors()
                hint = said(tx("; did you mean {value}?", value=repr(close[0]))) if close else ""
                raise argparse.ArgumentTypeError(said(tx("{value} is not one of {choices}{hint}", value=repr(value),
                                                         choices=", ".join(values), hint=hint)))
        return ",".join(v.lower() if fold else v for v in given)

    check.__name__ = "value"  # argparse names the type in its message: "invalid value value"
    return check


def enum_option(parser: argparse.ArgumentParser, flag: str, values: tuple[str, ...], *, many: bool = False,
                fold: bool = False, **kwargs: Any) -> argparse.Action:
    """Add ``flag`` typed :func:`one_of` ``values``, completed with them in the shell."""
    action = parser.add_argument(flag, type=one_of(*values, many=many, fold=fold), **kwargs)
    # argcomplete reads an action's `completer` attribute, which argparse's Action does not declare.
    vars(action).update(completer=lambda **_: list(values))
    return action
