"""The services the server-side administrative commands use (``fleetdeck init``, ``db
upgrade``, ``token``, ``user``, ``audit``, ``secrets``, ``hosts``): the database (its
migrations applied), users, tokens, sessions and logins, the audit log, the secret store
and the pinned SSH host keys, and the ``inventory:`` section.

They are the first part of what :func:`console.services.build_services` wires for the
server, built by the same code; a command builds only these, so it does not import or
construct the ingest, query, alerting, notification and deploy services (a command starts
in about half the time).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable

from console.audit.anchor import HeadAnchor
from console.audit.service import AuditService
from console.auth.service import AuthService
from console.auth.sessions import SessionService
from console.auth.tokens import TokenService
from console.auth.users import UserService
from console.config import Config
from console.deploy.inventory import Inventory, parse_inventory
from console.deploy.known_hosts import KnownHostsService
from console.secrets import SecretBox, SecretService, load_keys
from console.storage.database import Database, private_data_dir


@dataclass(kw_only=True)  # built by build_admin_services, by keyword
class AdminServices:
    config: Config
    db: Database
    users: UserService
    tokens: TokenService
    audit: AuditService
    auth: AuthService
    secrets: SecretService
    inventory: Inventory
    known_hosts: KnownHostsService

    def close(self) -> None:
        self.users.passwords.close()
        self.db.close()
        self.audit.close()


def build_admin_services(config: Config, migrate: bool = True,
                         clock: Callable[[], float] = time.time) -> AdminServices:
    """Open the database (applying migrations unless ``migrate`` is False) and wire the
    administrative services. Raises ConfigError for an invalid ``inventory:`` section
    before touching the database, and for an unreadable ``secret_key_file``."""
    inventory = parse_inventory(config.inventory, config.source_of("inventory"))
    private_data_dir(config.data_dir)
    db = Database(config.database_url, read_url=config.console.database_read_url)
    if migrate:
        db.migrate()
    users, tokens = UserService(clock=clock), TokenService(db.sessions, clock=clock)
    audit = AuditService(clock=clock, anchor=HeadAnchor(config.data_dir), db=db)
    db.run(functools.partial(audit.bind, db.sessions))
    c = config.console
    auth = AuthService(users, tokens, SessionService(c.session_days * 86400, clock=clock), audit, db=db,
                       login_failures_per_user=c.login_failures_per_user,
                       login_failures_per_ip=c.login_failures_per_ip, login_window_s=c.login_window_seconds,
                       clock=clock)
    return AdminServices(config=config, db=db, users=users, tokens=tokens, audit=audit, auth=auth,
                         secrets=SecretService(SecretBox(load_keys(config.secret_key_file)), audit, clock=clock,
                                               db=db),
                         inventory=inventory, known_hosts=KnownHostsService(audit, clock=clock))
