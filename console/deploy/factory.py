"""Builds the driver an app's ``driver:`` names, handing each what it needs from the
console (inventory, pinned host keys, secrets) as plain callables, so drivers never
touch the database themselves."""
from __future__ import annotations

from console.deploy.apps import AppDefinition
from console.deploy.drivers.base import DeployDriver
from console.deploy.inventory import Inventory
from console.deploy.known_hosts import KnownHostsService
from console.secrets import SecretService
from console.storage.database import Database


class DriverFactory:
    """``factory(app) -> DeployDriver``; the deploy service calls it once per app."""

    def __init__(self, db: Database, inventory: Inventory, known_hosts: KnownHostsService,
                 secrets: SecretService | None) -> None:
        self.db = db
        self.inventory = inventory
        self.known_hosts = known_hosts
        self.secrets = secrets

    def reveal(self, name: str) -> str:
        """A stored secret's plaintext (blocking; called on driver threads). Raises
        SecretError (a ValueError) when missing or undecryptable."""
        if self.secrets is None:
            raise LookupError("no secret store configured")
        return self.db.run(self.secrets.reveal, name)

    def __call__(self, app: AppDefinition) -> DeployDriver:
        if app.driver == "ssh":
            from console.deploy.drivers.ssh import SshDriver  # paramiko only where SSH deploys run

            return SshDriver(app, self.inventory, lambda: self.db.run(self.known_hosts.entries), self.reveal)
        if app.driver == "kubernetes":
            from console.deploy.drivers.kubernetes import KubernetesDriver  # the kubernetes client, likewise

            return KubernetesDriver(app, self.reveal)
        from console.deploy.service import default_driver

        return default_driver(app)
