"""What every integration shares: the context of one send and the outcome of one
attempt, and HTTP POST with the retry classification of the delivery worker
(console/notify/delivery.py)."""
from __future__ import annotations

import email.utils
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from console import __version__
from console.notify.outbox import ANSWER_CAP
from console.notify.receivers.config import Integration
from console.notify.render import Message, render

USER_AGENT = f"Fleetdeck/{__version__}"


@dataclass
class Attempt:
    """The outcome of one attempt. ``ok``: delivered. Else ``retry`` says whether a later
    attempt may succeed (timeouts, connection errors, 5xx, 429, SMTP 4xx, a vendor's
    rate-limit code), ``retry_after`` the seconds the receiver asked to wait (Retry-After).
    ``status``: the HTTP status (or SMTP reply code); ``answer``: the start of the answer;
    ``error``: why it failed."""

    ok: bool
    status: int | None = None
    answer: str = ""
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None


class PermanentError(Exception):
    """A notification that cannot be sent as configured (a secret missing, a receiver
    removed): recorded as failed without retrying."""


@dataclass
class SendContext:
    """One send: the integration, the version-4 ``payload``, ``secret(name)`` the
    plaintext of a stored secret (raises PermanentError), and ``timeout`` seconds."""

    integration: Integration
    payload: dict
    secret: Callable[[str], str]
    timeout: float
    now: Callable[[], float] = time.time

    @property
    def config(self) -> Any:
        return self.integration.config

    @property
    def language(self) -> str:
        return self.integration.language

    def render(self, form: str, limit: int | None = None) -> Message:
        """The payload's message in the integration's language and time zone
        (console/notify/render.py)."""
        return render(self.payload, self.integration.language, form, limit, self.integration.time_zone)

    def url(self, default: str = "") -> str:
        """The integration's ``url``, or the stored URL of ``url_secret``, or ``default``."""
        config = self.config
        if config.url is not None:
            return config.url
        if config.url_secret is not None:
            return self.secret(config.url_secret)
        if not default:
            raise PermanentError("no url configured")
        return default


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002 - urllib's signature
        return None  # a redirect is answered as it is (a failure): notifications are not re-POSTed elsewhere


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def post_json(ctx: SendContext, url: str, doc: Any, headers: dict[str, str] | None = None) -> tuple[Attempt, Any]:
    """POST ``doc`` as JSON to ``url`` (through ``proxy_url`` when set; the
    environment's proxies are not used). Returns the attempt and the answer decoded as
    JSON (None when it is not JSON). 2xx: ok; 429 and 5xx: retry (Retry-After
    honoured); any other status: not retried; network errors and timeouts: retry."""
    proxy = getattr(ctx.config, "proxy_url", None)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {}),
                                         _NoRedirect)
    data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **(headers or {})})
    try:
        with opener.open(req, timeout=ctx.timeout) as resp:
            raw = resp.read(ANSWER_CAP * 4)
            status = resp.status
            attempt = Attempt(ok=True, status=status, answer=raw[:ANSWER_CAP].decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        raw = exc.read(ANSWER_CAP)
        status = exc.code
        text = raw.decode("utf-8", "replace")
        retry = status == 429 or status >= 500
        attempt = Attempt(ok=False, status=status, answer=text, error=f"HTTP {status} {exc.reason}", retry=retry,
                          retry_after=retry_after(exc.headers.get("Retry-After"), ctx.now()) if retry else None)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Attempt(ok=False, error=f"cannot reach {_redact(url)}: {reason}", retry=True), None
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    return attempt, decoded


def _redact(url: str) -> str:
    """``url`` without its query (where robots carry their tokens)."""
    return url.split("?", 1)[0]
