"""HTTP client for the console's ingest endpoint (standard library only).

Wire format (DESIGN.md section 3, "Ingest"): ``POST {console_url}/api/v1/ingest``
with a gzip-compressed JSON body, ``Content-Encoding: gzip``,
``Content-Type: application/json`` and ``Authorization: Bearer <agent token>``.
Errors come back as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from agents import __version__

INGEST_PATH = "/api/v1/ingest"
# Bound how much of an error body is read: it is only there to be reported.
_MAX_ERROR_BODY = 64 * 1024


class PushError(Exception):
    """A batch was not accepted.

    - ``status``: HTTP status, or None when no HTTP answer arrived (refused,
      DNS failure, timeout, TLS error).
    - ``code``: the console's snake_case error code, or a local one:
      ``connection_failed``, ``timeout``, ``http_<status>`` (non-JSON error
      body), ``invalid_response`` (2xx without a JSON object).
    - ``message``: human-readable reason.
    - ``retry_after``: seconds from the ``Retry-After`` header (429/503), else None.
    """

    def __init__(self, status: int | None, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status if status is not None else 'no response'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _describe(reason: object) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


def _error_from_body(status: int, body: bytes, retry_after: float | None) -> PushError:
    try:
        error = json.loads(body.decode("utf-8"))["error"]
        return PushError(status, str(error["code"]), str(error.get("message", "")), retry_after)
    except (ValueError, KeyError, TypeError):
        # Not the console's JSON (a proxy's HTML page, an empty body): report the start of it.
        text = body[:200].decode("utf-8", "replace").strip() or "no error body"
        return PushError(status, f"http_{status}", text, retry_after)


class IngestClient:
    """Pushes batches to one console.

    ``console_url``: base URL (``http://host:8700``); ``token``: agent token;
    ``timeout``: seconds for connect and for each socket read.

    TLS (``https://`` URLs): the console's certificate and host name are always
    verified, against ``ca_file`` (PEM) when given, else the system trust store.
    ``client_cert``/``client_key`` (PEM files; the key may be inside the
    certificate file) are presented when the console asks for a client certificate.
    Raises ``ssl.SSLError``/``OSError`` at construction for unreadable files.
    """

    def __init__(self, console_url: str, token: str, timeout: float = 10.0, ca_file: str = "",
                 client_cert: str = "", client_key: str = "") -> None:
        self.url = console_url.rstrip("/") + INGEST_PATH
        self.token = token
        self.timeout = timeout
        self.ssl_context: ssl.SSLContext | None = None
        if self.url.startswith("https:"):
            self.ssl_context = ssl.create_default_context(cafile=ca_file or None)
            if client_cert:
                self.ssl_context.load_cert_chain(client_cert, client_key or None)

    @staticmethod
    def encode(batch: dict[str, Any]) -> bytes:
        """The request body for ``batch``: compact JSON, gzip level 6. Raises ``ValueError``
        if ``batch`` is not JSON-serialisable (NaN included)."""
        return gzip.compress(json.dumps(batch, separators=(",", ":"), allow_nan=False).encode("utf-8"), 6)

    def push(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Send one batch and return the console's decoded JSON answer.

        Raises :class:`PushError` on any non-2xx status, on a network failure
        or timeout, and on a 2xx answer that is not a JSON object. Raises
        ``ValueError`` if ``batch`` is not JSON-serialisable (NaN included).
        """
        return self.push_body(self.encode(batch))

    def push_body(self, body: bytes) -> dict[str, Any]:
        """Send an already encoded body (:meth:`encode`); answers and errors as :meth:`push`."""
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Accept": "application/json",
            "User-Agent": f"fleetdeck-agent/{__version__}",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raw_error = exc.read(_MAX_ERROR_BODY)
            raise _error_from_body(exc.code, raw_error, parse_retry_after(exc.headers.get("Retry-After"))) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise PushError(None, "timeout", f"no answer within {self.timeout:g}s") from None
            raise PushError(None, "connection_failed", _describe(reason)) from None
        except TimeoutError:
            raise PushError(None, "timeout", f"no answer within {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            # Reset, closed or garbled mid-response: http.client raises these unwrapped.
            raise PushError(None, "connection_failed", _describe(exc)) from None
        try:
            answer = json.loads(raw.decode("utf-8"))
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PushError(status, "invalid_response", f"expected a JSON object from {self.url}, got {raw[:200]!r}")
        return answer
