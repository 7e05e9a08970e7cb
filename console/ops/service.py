"""Readiness of the console for ``/readyz``: the database reachable and writable."""
from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from console.errors import Unavailable
from console.storage.database import Database
from console.telemetry import ConsoleMetrics


class ReadinessService:
    """``retry_after``: seconds a client is told to wait when storage cannot be written."""

    def __init__(self, db: Database, metrics: ConsoleMetrics, retry_after: int) -> None:
        self.db = db
        self.metrics = metrics
        self.retry_after = retry_after

    async def check(self) -> dict:
        """``{"status": "ready", "database": "sqlite" | "postgresql"}``; raises Unavailable
        (503 ``storage_unavailable``) when the database cannot be read, or the last write
        failed (disk full, read-only, server down) and a probe write fails too."""
        db = self.db
        try:
            await db.read(db.ping)
        except SQLAlchemyError as exc:
            self.metrics.storage_errors.labels("readyz").inc()
            raise Unavailable(f"database unreachable: {type(exc).__name__}", code="storage_unavailable") from None
        if db.write_failure is not None:
            # Ready again once a write succeeds, an agent's or this probe's, so a load
            # balancer that stops sending traffic here still sees the recovery.
            failure = db.write_failure
            try:
                await db.write(db.write_probe)
            except (SQLAlchemyError, OSError):
                self.metrics.storage_errors.labels("readyz").inc()
                raise Unavailable(f"storage cannot be written: {failure}", code="storage_unavailable",
                                  headers={"Retry-After": str(self.retry_after)}) from None
        return {"status": "ready", "database": db.dialect}
