"""Silences (``service``, ``matchers``), Alertmanager's HTTP API v2 (``api``), the silence
pages and ``fleetdeck silence`` (docs/alerting.md, "Silences", "Alertmanager API")."""
