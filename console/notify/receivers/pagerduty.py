"""``pagerduty``: PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event"):
``trigger`` while the group fires, ``resolve`` once it resolved, both with ``dedup_key``
= SHA-256 (hex) of the group key, as Alertmanager does, so one incident follows one
group. PagerDuty answers 202 ``{"status": "success", "dedup_key"}``; 400 for an invalid
event (not retried), 429 when rate limited."""
from __future__ import annotations

import hashlib

from console.notify.receivers.base import Attempt, SendContext, post_json

SEVERITIES = ("critical", "error", "warning", "info")


def dedup_key(group_key: str) -> str:
    return hashlib.sha256(group_key.encode("utf-8")).hexdigest()


def event(ctx: SendContext, routing_key: str) -> dict:
    payload, config = ctx.payload, ctx.config
    key = dedup_key(payload.get("groupKey", ""))
    if payload.get("status") == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    common = payload.get("commonLabels") or {}
    severity = config.severity or (common.get("severity") if common.get("severity") in SEVERITIES else "error")
    m = ctx.render("text")
    body: dict = {"summary": m.title[:1024], "severity": severity,
                  "source": config.source or common.get("instance") or common.get("host") or "Fleetdeck",
                  "custom_details": {"firing": m.body,
                                     "num_firing": sum(1 for a in payload.get("alerts", ()) if a["status"] == "firing"),
                                     "num_resolved": sum(1 for a in payload.get("alerts", ())
                                                         if a["status"] == "resolved")}}
    for name, value in (("component", config.component), ("group", config.group), ("class", config.class_)):
        if value:
            body[name] = value
    doc = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": key, "payload": body,
           "client": "Fleetdeck"}
    if payload.get("externalURL"):
        doc["client_url"] = payload["externalURL"]
        doc["links"] = [{"href": payload["externalURL"].rstrip("/") + "/alerts", "text": "Fleetdeck alerts"}]
    return doc


def send(ctx: SendContext) -> Attempt:
    url = ctx.url(ctx.integration.globals.pagerduty_url)
    doc = event(ctx, ctx.secret(ctx.config.routing_key_secret))
    return post_json(ctx, url, doc)[0]
