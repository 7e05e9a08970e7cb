"""A small client for the console's HTTP API, used by the CLI's client commands.

Reads ``FLEETDECK_URL`` (default ``http://127.0.0.1:8700``) and ``FLEETDECK_TOKEN``, else
the current context of the user's contexts file (:mod:`console.contexts`). Requests carry
``Accept-Language`` of the terminal's language (:func:`console.i18n.terminal_language`) and
``Fleetdeck-Translate-Errors: 1``, so the console's error messages come back in it, from the
Prometheus- and Alertmanager-compatible APIs too.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from console.errors import STATUS_CODES
from console.i18n import TRANSLATE_HEADER, message_of, terminal_language, tx

DEFAULT_URL = "http://127.0.0.1:8700"


class ClientError(Exception):
    """An API call failed: ``status`` None for network errors, else the HTTP status, with
    the console's error ``code`` and ``message`` (a console/i18n.py ``Text`` when the
    client wrote it, translated where it is shown)."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status or 'network'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiClient:
    """Calls one console. ``url`` and ``token`` default to :func:`console.contexts.resolve`
    (environment, then context); a URL that is not http(s):// raises ClientError
    ``bad_url`` before anything is sent."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        from console.contexts import ContextError, Target, check_url, resolve

        try:
            target = resolve(default_url=DEFAULT_URL) if url is None or token is None else None
            url = check_url(url, "the URL") if url is not None else None
        except ContextError as exc:
            raise ClientError(None, "bad_url", message_of(exc)) from None
        self.target = target or Target(url or DEFAULT_URL, token or "", "argument", "argument")
        self.url = url or self.target.url
        self.token = token if token is not None else self.target.token
        self.token_from = "argument" if token is not None else self.target.token_from
        self.timeout = timeout
        self.language = terminal_language()

    def request(self, method: str, path: str, params: dict | None = None, body: Any = None) -> Any:
        """Call the API; returns decoded JSON. Raises ClientError on any failure."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = json.dumps(body).encode("utf-8") if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("Accept-Language", self.language)
        req.add_header(TRANSLATE_HEADER, "1")  # also from the Prometheus- and Alertmanager-compatible APIs
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise ClientError(401, "unauthorized", self._unauthorized(exc.read())) from None
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
            raise ClientError(None, "unreachable", tx("cannot reach {url}: {reason}", url=self.url,
                                                      reason=str(reason))) from None

    def _unauthorized(self, raw: bytes) -> str:
        """A 401's message, saying where a token comes from (or came from)."""
        if not self.token:
            return tx("{url} needs an API token: set FLEETDECK_TOKEN (create one with "
                      "`fleetdeck token create --name NAME --role viewer` on the console's machine) or "
                      "add a context with `fleetdeck context add NAME --url URL --token-env VAR`", url=self.url)
        try:
            said = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            said = tx("unauthorized")
        return tx("{said}: the token from {source} was refused (revoked, expired or mistyped?)", said=said,
                  source=self.token_from)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)
