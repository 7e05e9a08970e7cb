"""``fleetdeck init`` and ``fleetdeck db upgrade``: create the database and its admin user,
or bring an existing database to the newest schema."""
from __future__ import annotations

import argparse
import os

from console.cli.common import _actor, _admin_build, _admin_services, _server_config, admin_opts, database_exists, \
    database_location
from console.cli.server import print_admin_password


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
    services = _admin_build(config)  # creates the SQLite file and applies the migrations
    try:
        password = services.db.run(services.auth.ensure_admin, _actor(), "cli",
                                   os.environ.get("FLEETDECK_ADMIN_PASSWORD"))
    finally:
        services.close()
    print(f"{'database already initialised, schema at head' if existed else 'created the database'}: {where}")
    if password:
        print_admin_password(password)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``init`` and ``db upgrade`` commands on the ``fleetdeck`` parser."""
    init = sub.add_parser("init", help="create the database and the admin user (prints its password once); "
                          "an existing database is brought to the newest schema")
    admin_opts(init)
    init.set_defaults(func=cmd_init)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    admin_opts(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)
    from console.db_cli import add_commands as add_db_commands

    add_db_commands(db)  # db heads, db revision
