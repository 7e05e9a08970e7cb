"""A host's agent health, read from the self-metrics its agent pushes with every batch
(``fleetdeck_agent_*``, see docs/agent.md)."""
from __future__ import annotations

from typing import Any, Callable

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from console.storage.blocks import latest_samples
from console.storage.models import Series

HEALTH_METRICS = ("fleetdeck_agent_spool_bytes", "fleetdeck_agent_batches_queued",
                  "fleetdeck_agent_dropped_samples_total", "fleetdeck_agent_dropped_log_lines_total",
                  "fleetdeck_agent_send_errors_total", "fleetdeck_agent_collector_success",
                  "fleetdeck_agent_collect_duration_seconds", "fleetdeck_agent_spool_torn_records_total",
                  "fleetdeck_agent_dead_letter_batches_total")
BACKLOG_BATCHES = 3  # more queued than this: the agent is behind


def agent_health(session: Session, host_id: int) -> dict:
    """``{"status": "ok"|"degraded"|"unknown", "problems": [str], "ts": Unix ms|None,
    "spool_bytes", "batches_queued", "dropped_samples", "relabel_dropped_samples",
    "dropped_log_lines", "torn_records", "dead_letter_batches": numbers|None,
    "send_errors": {code: count}, "failing_collectors": [name],
    "collect_duration_seconds": {collector: seconds}}``.

    Counters are the agent process's totals since it started. ``dropped_samples`` are
    the samples lost (every ``reason`` but ``relabel``); ``relabel_dropped_samples`` those
    the agent's ``metric_relabel_configs`` drop on purpose, which are no problem.
    ``unknown``: the agent never reported self-metrics (an older agent)."""
    rows = session.execute(select(Series.id, Series.name, Series.labels).where(
        Series.host_id == host_id, Series.name.in_(HEALTH_METRICS))).all()
    latest: dict[str, list[tuple[dict, int, float]]] = {}
    for sid, name, labels_json in rows:
        points = latest_samples(session, sid, 1)
        if points:
            point = points[0]
            latest.setdefault(name, []).append((orjson.loads(labels_json), point[0], point[1]))
    if not latest:
        return {"status": "unknown", "problems": [], "ts": None, "spool_bytes": None, "batches_queued": None,
                "dropped_samples": None, "relabel_dropped_samples": None, "dropped_log_lines": None, "torn_records": None,
                "dead_letter_batches": None, "send_errors": {}, "failing_collectors": [],
                "collect_duration_seconds": {}}
    newest = max(ts for values in latest.values() for _, ts, _ in values)

    def current(name: str) -> list[tuple[dict, float]]:
        # Series the agent stopped reporting (a collector removed) do not count.
        return [(labels, value) for labels, ts, value in latest.get(name, []) if ts == newest]

    def total(name: str, chosen: Callable[[dict], bool] = lambda labels: True) -> float | None:
        values = [v for labels, v in current(name) if chosen(labels)]
        return sum(values) if values else None

    def relabelled(labels: dict) -> bool:
        return labels.get("reason") == "relabel"

    health: dict[str, Any] = {  # the JSON answer
        "ts": newest,
        "spool_bytes": total("fleetdeck_agent_spool_bytes"),
        "batches_queued": total("fleetdeck_agent_batches_queued"),
        "dropped_samples": total("fleetdeck_agent_dropped_samples_total", lambda labels: not relabelled(labels)),
        "relabel_dropped_samples": total("fleetdeck_agent_dropped_samples_total", relabelled),
        "dropped_log_lines": total("fleetdeck_agent_dropped_log_lines_total"),
        "torn_records": total("fleetdeck_agent_spool_torn_records_total"),
        "dead_letter_batches": total("fleetdeck_agent_dead_letter_batches_total"),
        "send_errors": {l.get("code", ""): v for l, v in current("fleetdeck_agent_send_errors_total")},
        "failing_collectors": sorted(l.get("collector", "") for l, v in current("fleetdeck_agent_collector_success")
                                     if v < 1),
        "collect_duration_seconds": {l.get("collector", ""): v
                                     for l, v in current("fleetdeck_agent_collect_duration_seconds")},
    }
    # English words the dashboard translates by their form (web/static/js/overview.js problemText).
    problems: list[str] = []
    if health["failing_collectors"]:
        problems.append("collector failing: " + ", ".join(health["failing_collectors"]))
    if (health["batches_queued"] or 0) > BACKLOG_BATCHES:
        problems.append(f"{health['batches_queued']:.0f} batches queued")
    if health["dropped_samples"]:
        problems.append(f"{health['dropped_samples']:.0f} samples dropped")
    if health["dead_letter_batches"]:
        problems.append(f"{health['dead_letter_batches']:.0f} batches refused")
    if health["torn_records"]:
        problems.append(f"{health['torn_records']:.0f} torn spool records")
    return {"status": "degraded" if problems else "ok", "problems": problems, **health}
