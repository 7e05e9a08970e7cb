"""``alertmanager``: forward the group's alerts to another Alertmanager's ``POST
/api/v2/alerts`` (its ``postableAlerts``: labels, annotations, startsAt, generatorURL, and
endsAt once resolved; a firing alert is sent without endsAt so that Alertmanager keeps it
for its resolve_timeout). Alertmanager answers 200, or 400 for invalid alerts."""
from __future__ import annotations

from console.notify.receivers.base import Attempt, SendContext, post_json


def alerts(payload: dict) -> list[dict]:
    out = []
    for a in payload.get("alerts") or ():
        alert = {"labels": a["labels"], "annotations": a.get("annotations") or {}, "startsAt": a["startsAt"]}
        if a.get("generatorURL"):
            alert["generatorURL"] = a["generatorURL"]
        if a.get("status") == "resolved":
            alert["endsAt"] = a["endsAt"]
        out.append(alert)
    return out


def send(ctx: SendContext) -> Attempt:
    return post_json(ctx, ctx.url(), alerts(ctx.payload))[0]
