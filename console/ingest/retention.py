"""The idempotency window: ``ingest_batches`` rows older than ``batch_id_retention_days``
are deleted hourly. A batch replayed after its id was pruned would be stored again, so
the window must cover the agents' ``spool_max_age`` (agents drop older batches unsent)."""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from console.storage.database import execute_dml
from console.storage.models import IngestBatch

log = logging.getLogger(__name__)
PRUNE_EVERY = 3600.0  # seconds


def prune_batch_ids(session: Session, cutoff: float) -> int:
    """Delete batch ids received before ``cutoff`` (Unix s); returns how many
    (the ``received_at`` index makes this a range delete)."""
    result = execute_dml(session, delete(IngestBatch).where(IngestBatch.received_at < cutoff))
    return max(result.rowcount or 0, 0)


async def prune_forever(services, every: float = PRUNE_EVERY) -> None:
    """Prune now and then every ``every`` seconds until cancelled; storage errors are
    logged and counted (``fleetdeck_storage_errors_total{operation="prune_batch_ids"}``)
    and retried at the next round."""
    days = services.config.console.batch_id_retention_days
    while True:
        cutoff = services.clock() - days * 86400.0
        try:
            if not services.leader.is_leader:  # another console of the same database prunes
                await asyncio.sleep(every)
                continue
            removed = await services.db.write(prune_batch_ids, cutoff)
            if removed:
                log.info("pruned %d ingest batch id(s) older than %g days", removed, days)
        except SQLAlchemyError as exc:
            services.metrics.storage_errors.labels("prune_batch_ids").inc()
            log.warning("pruning ingest batch ids failed: %s", exc)
        await asyncio.sleep(every)
