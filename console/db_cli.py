"""``fleetdeck db heads`` and ``fleetdeck db revision``: the one way to add a migration
(CONTRIBUTING.md, "Adding a migration").

The migrations are one line of Alembic history (console/storage/migrations/versions/):
``db revision -m MSG`` writes a new revision file whose ``down_revision`` is the current
head, empty or, with ``--autogenerate``, holding the operations that bring a database at
the head to the models of console/storage/models.py. It writes into the migrations folder
of the console it runs from, so run it from a checkout installed editable
(``pip install -e .``). Neither command opens the console's database.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # alembic is imported when a command runs, not for every `fleetdeck` call
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

# Revision ids become file names and Python strings: letters, digits and underscores,
# starting with a letter or digit (e.g. ``notif_0001_channels``).
REV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,63}")


def _alembic_config() -> Config:
    from alembic.config import Config

    from console.storage.database import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def single_head(script: ScriptDirectory) -> str:
    """The one head of the migration history; raises CliError naming every head when the
    history has forked (two migrations with the same ``down_revision``)."""
    from console.cli import CliError

    heads = script.get_heads()
    if len(heads) != 1:
        raise CliError(f"the migrations have {len(heads)} heads ({', '.join(sorted(heads))}); there must be one: "
                       "set the down_revision of the newer migration to the other head, so they form one line")
    return heads[0]


def cmd_db_heads(args: argparse.Namespace) -> int:
    from alembic.script import ScriptDirectory

    for head in sorted(ScriptDirectory.from_config(_alembic_config()).get_heads()):
        print(head)
    return 0


def cmd_db_revision(args: argparse.Namespace) -> int:
    from alembic import command
    from alembic.script import ScriptDirectory

    from console.cli import CliError

    cfg = _alembic_config()
    script = ScriptDirectory.from_config(cfg)
    head = single_head(script)
    if args.rev_id is not None:
        if not REV_ID.fullmatch(args.rev_id):
            raise CliError(f"--rev-id {args.rev_id!r}: use letters, digits and underscores (at most 64), "
                           "e.g. AREA_0001_what")
        if args.rev_id in {s.revision for s in script.walk_revisions()}:
            raise CliError(f"--rev-id {args.rev_id!r}: a revision with this id exists already")
    if not args.message.strip():
        raise CliError("-m/--message must say what the migration changes")
    if args.autogenerate:
        result = _autogenerate(cfg, args.message, args.rev_id)
    else:
        result = command.revision(cfg, message=args.message, head=head, rev_id=args.rev_id)
    if result is None or isinstance(result, list):  # several files: only with several heads, refused above
        raise CliError(f"expected one new revision, alembic wrote {result!r}")
    written = result
    print(f"{written.path} (revision {written.revision}, down_revision {head})")
    return 0


def _autogenerate(cfg: Config, message: str, rev_id: str | None) -> Script | list[Script | None] | None:
    """Compare the models with a scratch SQLite database brought to the head (SQLite's
    batch operations render, which work on PostgreSQL too) and write the difference."""
    from alembic import command

    from console.storage.database import make_engine, upgrade_schema

    with tempfile.TemporaryDirectory(prefix="fleetdeck-revision-") as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            upgrade_schema(engine)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                return command.revision(cfg, message=message, autogenerate=True, head="head", rev_id=rev_id)
        finally:
            engine.dispose()


def add_commands(db: argparse._SubParsersAction) -> None:
    """Register ``heads`` and ``revision`` under the ``fleetdeck db`` group (``db`` is the
    group's sub-command action, as ``add_subparsers`` returns it)."""
    heads = db.add_parser("heads", help="print the head revision of the migrations (one, unless they forked)")
    heads.set_defaults(func=cmd_db_heads)
    rev = db.add_parser("revision", help="write a new migration after the current head "
                        "(in console/storage/migrations/versions/ of this checkout)")
    rev.add_argument("-m", "--message", required=True, help="what the migration changes (the file's docstring)")
    rev.add_argument("--rev-id", help="the revision id, prefixed by its area, e.g. notif_0002_channels "
                     "(default: a random id)")
    rev.add_argument("--autogenerate", action="store_true",
                     help="fill in the operations that bring the head's schema to console/storage/models.py")
    rev.set_defaults(func=cmd_db_revision)
