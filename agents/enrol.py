"""Enrolment: trade a one-time enrolment token for this host's agent token.

``POST {console_url}/api/v1/enrol {"enrol_token", "host"}`` answers ``201 {"host",
"token"}``; the agent token is written to the token file with mode 0600 (atomically:
a temporary file in the same folder, then a rename), where the agent reads it on every
start. Standard library only.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from agents import __version__
from agents.client import PushError, _describe, _error_from_body

ENROL_PATH = "/api/v1/enrol"


def enrol(console_url: str, enrol_token: str, host: str, timeout: float = 10.0) -> str:
    """The new agent token bound to ``host``. Raises :class:`agents.client.PushError`
    (status None for network failures; 403 ``enrolment_refused`` for a used, expired or
    unknown enrolment token; 429 when the console is limiting failed enrolments)."""
    body = json.dumps({"enrol_token": enrol_token, "host": host}).encode("utf-8")
    request = urllib.request.Request(
        console_url.rstrip("/") + ENROL_PATH, data=body, method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json",
                 "User-Agent": f"fleetdeck-agent/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read(64 * 1024)
    except urllib.error.HTTPError as exc:
        with exc:
            raise _error_from_body(exc.code, exc.read(64 * 1024), None) from None
    except urllib.error.URLError as exc:
        raise PushError(None, "connection_failed", _describe(exc.reason)) from None
    except (OSError, ValueError) as exc:
        raise PushError(None, "connection_failed", _describe(exc)) from None
    try:
        token = json.loads(raw.decode("utf-8"))["token"]
    except (ValueError, KeyError, TypeError):
        raise PushError(201, "invalid_response", f"expected {{\"token\": ...}}, got {raw[:200]!r}") from None
    if not isinstance(token, str) or not token:
        raise PushError(201, "invalid_response", "the console answered without a token")
    return token


def write_token_file(path: str, token: str) -> None:
    """Write ``token`` to ``path`` with mode 0600, replacing any previous file atomically.
    Raises OSError."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
