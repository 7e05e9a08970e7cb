"""Fleetdeck console: the Tornado server that stores metrics and logs and runs deploys."""

__version__ = "0.1.0"
