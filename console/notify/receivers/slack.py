"""``slack``: a Slack incoming webhook (api.slack.com/messaging/webhooks): ``text`` (the
title, also the notification's fallback) and one attachment coloured by status with the
alerts in mrkdwn. Slack answers ``ok``, or 4xx with a reason (``invalid_payload``,
``no_service``), 429 with Retry-After when rate limited."""
from __future__ import annotations

from console.notify.receivers.base import Attempt, PermanentError, SendContext, post_json

TEXT_LIMIT = 8000


def message(ctx: SendContext, channel: str | None, username: str | None) -> dict:
    m = ctx.render("slack", TEXT_LIMIT)
    doc: dict = {"text": m.title, "attachments": [{
        "color": "good" if ctx.payload.get("status") == "resolved" else "danger", "fallback": m.title,
        "title": m.title, "text": m.body, "mrkdwn_in": ["text"]}]}
    if channel:
        doc["channel"] = channel
    if username:
        doc["username"] = username
    return doc


def send(ctx: SendContext) -> Attempt:
    config = ctx.config
    if config.url is None and config.url_secret is None:
        name = ctx.integration.globals.slack_api_url_secret
        if name is None:
            raise PermanentError("no url_secret and no global slack_api_url_secret")
        url = ctx.secret(name)
    else:
        url = ctx.url()
    return post_json(ctx, url, message(ctx, config.channel, config.username))[0]
