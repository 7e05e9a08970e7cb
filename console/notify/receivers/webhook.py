"""``webhook``: Alertmanager's version-4 JSON payload, POSTed as it is
(prometheus/alertmanager ``notify/webhook``), cut to ``max_alerts`` alerts with the rest
counted in ``truncatedAlerts``."""
from __future__ import annotations

from console.notify.receivers.base import Attempt, SendContext, post_json


def message(payload: dict, max_alerts: int) -> dict:
    """The payload to send: ``payload`` itself, or with its alerts cut to ``max_alerts``."""
    alerts = payload.get("alerts") or []
    if not max_alerts or len(alerts) <= max_alerts:
        return payload
    return {**payload, "alerts": alerts[:max_alerts],
            "truncatedAlerts": int(payload.get("truncatedAlerts") or 0) + len(alerts) - max_alerts}


def send(ctx: SendContext) -> Attempt:
    return post_json(ctx, ctx.url(), message(ctx.payload, ctx.config.max_alerts))[0]
