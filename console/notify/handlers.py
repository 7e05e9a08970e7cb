"""The notification log and test messages (docs/alerting.md, "Receivers")."""
from __future__ import annotations

import datetime

from console.errors import ApiError
from console.handlers import ApiHandler, PageHandler
from console.i18n import tx


class NotificationsHandler(ApiHandler):
    """``GET /api/v1/notifications?receiver&status&since&until&limit&before``: the
    notification log, newest first: ``{"notifications": [{"id", "created_at",
    "receiver", "integration", "group_key", "status" (pending, sent, failed),
    "attempts", "next_attempt_at", "last_attempt_at", "last_status", "last_error",
    "answer", "sent_at", "alert_status", "alerts", "alertnames", "group_labels"}],
    "next"}``. ``since``/``until``: Unix seconds or RFC 3339 (default the last 24 hours);
    ``before``: the ``next`` of the previous page."""

    async def get(self) -> None:
        args = self.query()  # console/schemas.py NotificationsQuery
        until = self.services.clock() if args.until is None else args.until
        since = until - 86400 if args.since is None else args.since
        if since > until:
            raise ApiError(422, "invalid_range", tx("since must not be after until"), {"parameter": "since"})
        self.write_json(await self.services.delivery.log(args.receiver or None, args.status, since, until,
                                                         args.limit, args.before))


class NotificationTestHandler(ApiHandler):
    """``POST /api/v1/notifications/test`` ``{"receiver": NAME}``: send a test message to
    every integration of the receiver (audited) and answer with their log entries (the
    receiver's status and answer): ``{"notifications": [...]}``. 404 ``unknown_receiver``."""

    async def post(self) -> None:
        body = self.body()  # console/schemas.py NotificationTest
        entries = await self.services.delivery.send_test(body.receiver, self.services.config.public_url,
                                                         self.principal.actor, self.client_ip)
        self.write_json({"notifications": entries})


class NotificationsPageHandler(PageHandler):
    """``/notifications``: the last day's notifications, newest first, with each
    receiver's answer."""

    async def get(self) -> None:
        now = self.services.clock()
        page = await self.services.delivery.log(self.get_query_argument("receiver", None) or None,
                                                self.get_query_argument("status", None) or None,
                                                now - 86400, now, 500, None)
        self.render("notifications.html", entries=page["notifications"], datetime=datetime)
