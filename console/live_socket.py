"""WebSocket ``/api/v1/live``: clients send ``{"subscribe": [topics]}`` (or
``{"unsubscribe": [...]}``) and receive ``{"topic", "data"}`` frames from the live bus.
Cross-origin upgrades are refused (tornado's ``check_origin``), so a session cookie
cannot be used from another site."""
from __future__ import annotations

from typing import Any

import orjson
import tornado.websocket

from console.errors import ApiError
from console.handlers import ApiHandler, json_bytes
from console.live import TOPIC_RE

MAX_TOPICS = 256


class LiveSocketHandler(ApiHandler, tornado.websocket.WebSocketHandler):
    async def get(self, *args: str, **kwargs: str) -> None:
        # A plain GET gets the API's JSON error, not tornado's text answer.
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "websocket_required", "this route speaks WebSocket only (Upgrade: websocket)")
        await super().get(*args, **kwargs)

    def open(self) -> None:
        self._topics: set[str] = set()

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
        self.write_message(json_bytes({"topic": topic, "data": data}).decode("utf-8"))

    def _error(self, code: str, message: str) -> None:
        self.write_message(json_bytes({"error": {"code": code, "message": message}}).decode("utf-8"))

    def on_close(self) -> None:
        self.services.bus.unsubscribe_all(self._deliver)
