"""Retiring a host: ``DELETE /api/v1/hosts/HOST`` and ``fleetdeck hosts delete HOST``.

A decommissioned host would otherwise stay on the overview as DOWN for ever. Retiring it
deletes, in one transaction, its series with their raw samples and 1m/1h rollups (cold
blocks of both included), its
log records (with their search index entries), its rejection
counters and remembered batch ids, then the host row; its agent tokens are revoked so a
forgotten agent cannot bring it back silently (its batches answer 401; a new token or
enrolment brings it back as a new host). Audited as ``hosts.delete`` with the counts.
"""
from __future__ import annotations

from sqlalchemy import Executable, delete, func, select, update
from sqlalchemy.orm import Session

from console.audit.service import AuditService
from console.errors import NotFound
from console.i18n import tx
from console.logs.store import delete_host_logs
from console.storage.database import execute_dml
from console.storage.hot_samples import hot_filter
from console.storage.models import (Host, IngestBatch, IngestRejection, Rollup1h, Rollup1m, Rollup1mBlock,
                                    Sample, SampleBlock, Series, Token)


class HostNotFound(NotFound):
    """No host of that name has ever reported (404 ``host_not_found``)."""

    default_code = "host_not_found"


def retire_host(session: Session, audit: AuditService, now: float, actor: str, source: str, name: str) -> dict:
    """Delete host ``name`` and everything stored for it (see the module docstring).
    Returns ``{"host", "host_id", "series", "samples", "rollups", "logs", "revoked_tokens"}``
    (row counts). Raises HostNotFound."""
    host = session.execute(select(Host).where(Host.name == name)).scalar_one_or_none()
    if host is None:
        raise HostNotFound(tx("no host named {host}", host=repr(name)))
    series = select(Series.id).where(Series.host_id == host.id).scalar_subquery()

    def gone(stmt: Executable) -> int:  # a DELETE or UPDATE
        return max(execute_dml(session, stmt).rowcount or 0, 0)

    def packed_samples() -> int:  # the samples in cold blocks, counted as samples, then deleted
        count = session.execute(select(func.coalesce(func.sum(SampleBlock.count), 0))
                                .where(SampleBlock.series_id.in_(series))).scalar()
        gone(delete(SampleBlock).where(SampleBlock.series_id.in_(series)))
        return int(count or 0)

    def packed_rollups() -> int:  # the 1m rows in cold blocks, counted as rollups, then deleted
        count = session.execute(select(func.coalesce(func.sum(Rollup1mBlock.count), 0))
                                .where(Rollup1mBlock.series_id.in_(series))).scalar()
        gone(delete(Rollup1mBlock).where(Rollup1mBlock.series_id.in_(series)))
        return int(count or 0)

    counts = {
        # No session sync: it would fetch the rows' primary key, whose ``bucket`` is SQLite's only.
        "samples": gone(delete(Sample).where(hot_filter(session.get_bind().dialect.name), Sample.series_id.in_(series))
                        .execution_options(synchronize_session=False)) + packed_samples(),
        "rollups": gone(delete(Rollup1m).where(Rollup1m.series_id.in_(series))) + packed_rollups()
        + gone(delete(Rollup1h).where(Rollup1h.series_id.in_(series))),
        "logs": delete_host_logs(session, host.id),
        "series": gone(delete(Series).where(Series.host_id == host.id)),
        "revoked_tokens": gone(update(Token).where(Token.kind == "agent", Token.host_name == name,
                                                   Token.revoked_at.is_(None)).values(revoked_at=now)),
    }
    session.execute(delete(IngestRejection).where(IngestRejection.host_id == host.id))
    session.execute(delete(IngestBatch).where(IngestBatch.host_id == host.id))
    host_id = host.id
    session.delete(host)
    session.flush()
    audit.record(session, actor, "hosts.delete", f"host:{name}", counts, source)
    return {"host": name, "host_id": host_id, **counts}
