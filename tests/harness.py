"""Test harness: a real console running in-process on a free loopback port, over real HTTP.

The console runs on its own thread with its own asyncio loop, exactly as ``fleetdeck
serve`` runs it, so tests talk to it with plain HTTP clients from the test thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from console.app import make_app
from console.config import load_config
from console.server import start_http
from console.services import build_services

ADMIN_PASSWORD = "test-admin-password-1"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002 - urllib's signature
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30.0) -> Response:
    """One HTTP request; never raises for an HTTP status (only for network errors) and
    never follows redirects, so tests see a 302 as a 302."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", proc=None, interval: float = 0.1):
    """Poll ``predicate()`` until it returns something truthy (returned) or ``timeout``
    seconds pass (AssertionError naming ``what``). With ``proc`` (a Popen with piped
    stdout), fail at once, with its output, if that process exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) while waiting for {what}: "
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class OffsetClock:
    """A clock for ``build_services(clock=...)`` (``ConsoleHarness(clock=...)``): the real
    time plus ``offset`` seconds, which a test moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def batch(host: str, metrics: list, logs: list | None = None, batch_id: str | None = None) -> dict:
    return {"host": host, "batch_id": batch_id or uuid.uuid4().hex, "sent_at": time.time(),
            "agent": {"version": "test", "interval": 10}, "metrics": metrics, "logs": logs or []}


class ConsoleHarness:
    """Start with ``start()``, stop with ``close()``. ``url`` is ``http://127.0.0.1:PORT``."""

    admin_user = "admin"
    admin_password = ADMIN_PASSWORD

    def __init__(self, data_dir: Path, database_url: str | None = None, apps: dict | None = None,
                 inventory: dict | None = None, probes: dict | None = None, alerting: Any = None,
                 clock: Any = None, **console: Any) -> None:
        env = {"FLEETDECK_DATA_DIR": str(data_dir), "FLEETDECK_LISTEN": "127.0.0.1:0"}
        if database_url:
            env["FLEETDECK_DATABASE_URL"] = database_url
        # Tests push bursts from one host; the per-host rate limits are tested where asked for.
        console = {"ingest_rate_per_host": 0.0, "ingest_samples_per_host": 0.0, "ingest_lines_per_host": 0.0,
                   **console}
        self.config = load_config(path=None, env=env, overrides=console)
        self.config.apps = dict(apps or {})  # the raw `apps:` section, as config.yaml holds it
        self.config.inventory = dict(inventory or {})  # the raw `inventory:` section (SSH hosts)
        self.config.probes = dict(probes or {})  # the raw `probes:` section (blackbox probes)
        if alerting is not None:  # an AlertingConfig (the `alerting:` section)
            self.config.alerting = alerting
        self.services = build_services(self.config, **({"clock": clock} if clock else {}))
        from sqlalchemy import select

        from console.storage.models import User

        restarted = self.services.db.run(lambda s: s.execute(  # the same data directory started again
            select(User.id).where(User.username == self.admin_user)).first() is not None)
        if not restarted:
            self.services.db.run(self.services.users.create, self.admin_user, self.admin_password, "admin")
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConsoleHarness":
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"console did not start: {self._error}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server, self.port = start_http(make_app(self.services), self.services, "127.0.0.1", 0)
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        self.services.close()

    # -- helpers for tests ---------------------------------------------------------------
    @contextlib.contextmanager
    def series_cap(self, cap: int) -> Iterator[None]:
        """The per-host series cap (``max_series_per_host``) at ``cap`` for the block."""
        config = self.services.ingest._config
        old = config.max_series_per_host
        config.max_series_per_host = cap
        try:
            yield
        finally:
            config.max_series_per_host = old

    def agent_token(self, host: str) -> str:
        return self.services.db.run(self.services.tokens.create_agent_token, host)

    def api_token(self, role: str, name: str | None = None) -> str:
        return self.services.db.run(self.services.tokens.create_api_token, name or f"test-{role}", role, None)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                headers: dict | None = None) -> Response:
        hdrs = dict(headers or {})
        data = body
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        return http(method, self.url + path, data, hdrs)

    def push(self, host: str, token: str, metrics: list, logs: list = (), batch_id: str | None = None,
             compress: bool = False) -> tuple[int, dict]:
        """POST one ingest batch; returns (status, decoded JSON body)."""
        raw = json.dumps(batch(host, list(metrics), list(logs), batch_id)).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        if compress:
            raw = gzip.compress(raw)
            headers["Content-Encoding"] = "gzip"
        resp = http("POST", self.url + "/api/v1/ingest", raw, headers)
        return resp.status, resp.json()

    def count(self, table: str) -> int:
        from sqlalchemy import text

        return self.services.db.run(lambda s: s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def required_services() -> set[str]:
    return {s.strip() for s in os.environ.get("FLEETDECK_REQUIRE", "").split(",") if s.strip()}


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class CookieSession:
    """A browser-like client of one console: keeps cookies, never follows redirects, and
    sends the ``_xsrf`` cookie back as ``X-XSRFToken`` on unsafe methods (as the
    dashboard's JavaScript does) unless ``xsrf=False``."""

    def __init__(self, url: str) -> None:
        import http.cookiejar

        self.url = url
        self.jar = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                xsrf: bool = True) -> Response:
        hdrs = dict(headers or {})
        data = body
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if xsrf and method not in ("GET", "HEAD", "OPTIONS") and self.cookie("_xsrf"):
            hdrs["X-XSRFToken"] = self.cookie("_xsrf")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with self._opener.open(req, timeout=30) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    def login(self, username: str, password: str) -> Response:
        """GET the form (for the _xsrf cookie), then POST it; a success answers 302."""
        import urllib.parse

        self.request("GET", "/login")
        form = urllib.parse.urlencode({"username": username, "password": password, "next": "/",
                                       "_xsrf": self.cookie("_xsrf") or ""}).encode()
        return self.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"},
                            xsrf=False)


def logged_in(harness: "ConsoleHarness", role: str) -> CookieSession:
    """A CookieSession logged in as a fresh user with ``role`` (admin: the harness admin)."""
    session = CookieSession(harness.url)
    if role == "admin":
        username, password = harness.admin_user, harness.admin_password
    else:
        username, password = f"{role}-{uuid.uuid4().hex[:8]}", "test-password-" + uuid.uuid4().hex[:8]
        harness.services.db.run(harness.services.users.create, username, password, role)
    resp = session.login(username, password)
    assert resp.status == 302, (resp.status, resp.body[:300])
    return session
