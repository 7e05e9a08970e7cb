"""The API's error type: rendered as ``{"error": {"code", "message", "details"}}``."""
from __future__ import annotations


class ApiError(Exception):
    """An error answer: HTTP ``status``, snake_case ``code``, human ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
    422: "unprocessable", 429: "too_many_requests", 503: "unavailable",
}
