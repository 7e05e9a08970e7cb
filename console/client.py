"""A small client for the console's HTTP API, used by the CLI's client commands.

Reads ``FLEETDECK_URL`` (default ``http://127.0.0.1:8700``) and ``FLEETDECK_TOKEN``.
Standard library only.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from console.errors import STATUS_CODES

DEFAULT_URL = "http://127.0.0.1:8700"


class ClientError(Exception):
    """An API call failed: ``status`` None for network errors, else the HTTP status, with
    the console's error ``code`` and ``message``."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status or 'network'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("FLEETDECK_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("FLEETDECK_TOKEN", "")
        self.timeout = timeout

    def request(self, method: str, path: str, params: dict | None = None, body: Any = None) -> Any:
        """Call the API; returns decoded JSON. Raises ClientError on any failure."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
                if isinstance(doc, str):  # Alertmanager's (/alertmanager/api/v2/): the message alone
                    raise ClientError(exc.code, STATUS_CODES.get(exc.code, "error"), doc) from None
                err = doc["error"]
                if isinstance(err, str):  # Prometheus' envelope (/prometheus/api/v1/)
                    raise ClientError(exc.code, doc.get("errorType", "error"), err) from None
                raise ClientError(exc.code, err.get("code", "error"), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise ClientError(exc.code, "http_error", raw[:200].decode("utf-8", "replace")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(None, "unreachable", f"cannot reach {self.url}: {reason}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)
