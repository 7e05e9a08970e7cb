"""``/healthz`` (process up), ``/readyz`` (database reachable and writable), ``/metrics``
(Prometheus)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.handlers import ApiHandler


class HealthzHandler(ApiHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyzHandler(ApiHandler):
    async def get(self) -> None:
        self.write_json(await self.services.readiness.check())  # 503 storage_unavailable when not


class MetricsHandler(ApiHandler):
    def get(self) -> None:
        # With several workers the registry answers for all of them (console/telemetry.py).
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.services.metrics.registry))
