"""The console's error tree, rendered by the API as ``{"error": {"code", "message", "details"}}``.

Services raise a subclass of :class:`FleetdeckError`; the HTTP status and the default
JSON ``code`` belong to the class, so the mapping lives here and nowhere else (handlers
render any ``FleetdeckError`` the same way, console/handlers.py ``write_error``).
``ApiError`` is the same error with an explicit status, for HTTP-level refusals raised
by handlers themselves (body too large, unsupported media type, throttled).

A domain error subclasses the class of its status and names its own ``default_code``
(``UserExists(Conflict, UserError)``: 409 ``user_exists``). ``InvalidInput`` is also a
``ValueError`` and ``NotFound`` a ``LookupError``, so code that catches the builtin keeps
working.
"""
from __future__ import annotations


class FleetdeckError(Exception):
    """Base of every error the console reports to a client.

    ``message``: one human sentence; ``code``: snake_case, stable for clients (defaults
    to the class's); ``details``: a JSON object; ``headers``: extra HTTP answer headers
    (e.g. ``Retry-After``)."""

    status = 500
    default_code = "internal_error"

    def __init__(self, message: str, details: dict | None = None, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def __reduce__(self) -> tuple:
        # Subclasses take other arguments than the message (ApiError's status, code first):
        # rebuild without calling __init__, then restore the attributes.
        return _restore, (type(self), self.args), self.__dict__


def _restore(cls: type[FleetdeckError], args: tuple) -> FleetdeckError:
    exc = cls.__new__(cls)
    exc.args = args
    return exc


class InvalidInput(FleetdeckError, ValueError):
    """The request is malformed or refers to something that cannot be (400)."""

    status, default_code = 400, "bad_request"


class Unprocessable(InvalidInput):
    """Well-formed, but a value the console refuses (422, RFC 9110 section 15.5.21)."""

    status, default_code = 422, "unprocessable"


class Forbidden(FleetdeckError):
    """The caller may not do this (403)."""

    status, default_code = 403, "forbidden"


class NotFound(FleetdeckError, LookupError):
    """The named object does not exist (404)."""

    status, default_code = 404, "not_found"


class Conflict(FleetdeckError):
    """The object's current state does not allow this (409)."""

    status, default_code = 409, "conflict"


class Unavailable(FleetdeckError):
    """A dependency (database, peer, pool) cannot serve now; retry later (503)."""

    status, default_code = 503, "unavailable"


class DriverFailure(FleetdeckError):
    """A deploy target or remote peer answered with an error (502)."""

    status, default_code = 502, "driver_failed"


class ApiError(FleetdeckError):
    """An error answer with an explicit HTTP ``status``, snake_case ``code``, human
    ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, details, code=code, headers=headers)
        self.status = status


STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
    422: "unprocessable", 429: "too_many_requests", 502: "driver_failed", 503: "unavailable",
}
