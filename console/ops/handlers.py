"""``/healthz`` (process up), ``/readyz`` (database reachable and writable), ``/metrics``
(Prometheus)."""
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
        if db.write_failure is not None:
            # A write failed (disk full, read-only, server down): ready again once one
            # succeeds, an agent's or this probe's, so a load balancer that stops sending
            # traffic here still sees the recovery.
            failure = db.write_failure
            try:
                await db.write(db.write_probe)
            except SQLAlchemyError:
                self.services.metrics.storage_errors.labels("readyz").inc()
                raise ApiError(503, "storage_unavailable", f"storage cannot be written: {failure}",
                               headers={"Retry-After": str(self.services.config.console.storage_retry_after)}
                               ) from None
        self.write_json({"status": "ready", "database": db.dialect})


class MetricsHandler(ApiHandler):
    def get(self) -> None:
        metrics = self.services.metrics
        metrics.live_subscribers.set(self.services.bus.subscriber_count())
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.registry))
