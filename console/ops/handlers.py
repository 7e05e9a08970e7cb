"""``/healthz`` (process up), ``/readyz`` (database reachable), ``/metrics`` (Prometheus)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from console.errors import ApiError
from console.handlers import ApiHandler


class HealthzHandler(ApiHandler):
    def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyzHandler(ApiHandler):
    async def get(self) -> None:
        db = self.services.db
        try:
            await db.read(db.ping)
        except SQLAlchemyError as exc:
            self.services.metrics.storage_errors.labels("readyz").inc()
            raise ApiError(503, "storage_unavailable", f"database unreachable: {type(exc).__name__}") from None
        self.write_json({"status": "ready", "database": db.dialect})


class MetricsHandler(ApiHandler):
    def get(self) -> None:
        metrics = self.services.metrics
        metrics.live_subscribers.set(self.services.bus.subscriber_count())
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.registry))
