"""WebSocket ``/api/v1/live``: clients send ``{"subscribe": [topics]}`` (or
``{"unsubscribe": [...]}``) and receive ``{"topic", "data"}`` frames from the live bus.
Cross-origin upgrades are refused (tornado's ``check_origin``), so a session cookie
cannot be used from another site. A socket keeps the credential it opened with and
checks it again whenever credentials are taken away anywhere (``SocketRegistry`` in
console/live.py): revoked, logged out, disabled or demoted, it closes with code 4401."""
from __future__ import annotations

from collections import deque
from typing import Any

import orjson
import tornado.websocket

from console.errors import ApiError
from console.handlers import ApiHandler, json_bytes
from console.i18n import localize_message, tx
from console.live import TOPIC_RE

MAX_TOPICS = 256
CLOSE_REVOKED = 4401  # application close code (RFC 6455 section 7.4.2: 4000-4999 are private)
MAX_HELD = 1000  # frames kept back while a recheck runs; beyond, the oldest are dropped


class LiveSocketHandler(ApiHandler, tornado.websocket.WebSocketHandler):
    async def get(self, *args: str, **kwargs: str) -> None:
        # A plain GET gets the API's JSON error, not tornado's text answer.
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "websocket_required", tx("this route speaks WebSocket only (Upgrade: websocket)"))
        await super().get(*args, **kwargs)

    def open(self) -> None:
        self._topics: set[str] = set()
        self._held: deque[str] | None = None  # frames kept back while the credential is rechecked
        self.services.sockets.add(self)

    def hold(self) -> None:
        if self._held is None:
            self._held = deque(maxlen=MAX_HELD)

    async def recheck(self) -> None:
        """Close when the credential this socket opened with no longer gives the same
        principal; else send the frames held back meanwhile."""
        if await self.principal_for(*self.credential) != self.current_user:
            self._held = None
            self.services.bus.unsubscribe_all(self._deliver)
            self.close(CLOSE_REVOKED, "credentials revoked")
            return
        held, self._held = self._held or (), None
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        for frame in held:
            self.write_message(frame)

    def on_message(self, message: str | bytes) -> None:
        try:
            doc = orjson.loads(message)
        except orjson.JSONDecodeError:
            return self._error("invalid_json", "frame is not valid JSON")
        if not isinstance(doc, dict):
            return self._error("invalid_frame", "a frame is a JSON object")
        bus = self.services.bus
        for topic in self._topics_in(doc.get("unsubscribe")):
            bus.unsubscribe(topic, self._deliver)
            self._topics.discard(topic)
        wanted = self._topics_in(doc.get("subscribe"))
        bad = [t for t in wanted if not isinstance(t, str) or not TOPIC_RE.fullmatch(t)]
        if bad:
            return self._error("invalid_topic", f"invalid topic {bad[0]!r}; use host:NAME, logs:NAME or deploy:ID")
        if len(self._topics | set(wanted)) > MAX_TOPICS:
            return self._error("too_many_topics", f"at most {MAX_TOPICS} topics per connection")
        for topic in wanted:
            bus.subscribe(topic, self._deliver)
            self._topics.add(topic)
        self.write_message(json_bytes({"subscribed": sorted(self._topics)}).decode("utf-8"))

    def _topics_in(self, value: Any) -> list:
        return list(value) if isinstance(value, list) else []

    def _deliver(self, topic: str, data: Any) -> None:
        if topic.startswith("deploy:") and isinstance(data, dict) and isinstance(data.get("data"), dict):
            # A deploy event in this socket's language (cookie or Accept-Language of its upgrade).
            data = localize_message(data, data["data"].get("i18n"), self.settings["i18n"].lookup(self.language))
        frame = json_bytes({"topic": topic, "data": data}).decode("utf-8")
        if self._held is not None:
            self._held.append(frame)
        else:
            self.write_message(frame)

    def _error(self, code: str, message: str) -> None:
        self.write_message(json_bytes({"error": {"code": code, "message": message}}).decode("utf-8"))

    def on_close(self) -> None:
        self.services.sockets.discard(self)
        self.services.bus.unsubscribe_all(self._deliver)
