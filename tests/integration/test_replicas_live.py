"""Two real console processes on one PostgreSQL schema share what a browser or an agent
sees: a frame published on one reaches live sockets on the other (LISTEN/NOTIFY, large
frames split), never twice on its own; a token revoked through one is refused by both
within a second; behind Debian's nginx, a browser session made on one replica works on
the other (shared cookie secret and secret key)."""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from cryptography.fernet import Fernet

from tests.conftest import need
from tests.harness import CookieSession, batch, http, wait_for
from tests.integration.procs import REPO, ConsoleProcess, free_port

NGINX = "/usr/sbin/nginx"
# As in docs/scaling.md: round robin over the replicas, WebSocket upgrades passed through.
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream fleetdeck {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fleetdeck;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_url):
    root = tmp_path_factory.mktemp("replicas-live")
    # What every replica shares besides the database (docs/scaling.md).
    shared = {"FLEETDECK_DATABASE_URL": postgres_url, "FLEETDECK_COOKIE_SECRET": secrets.token_urlsafe(48),
              "FLEETDECK_SECRET_KEY": Fernet.generate_key().decode()}
    consoles = [ConsoleProcess(root / f"replica-{i}", **shared) for i in range(2)]
    for console in consoles:
        console.data_dir.mkdir()
    try:
        consoles[0].start()  # the first migrates the schema
        consoles[1].start()
        yield consoles
    finally:
        for console in consoles:
            console.stop()


def api_token(console: ConsoleProcess, role: str = "viewer", name: str | None = None) -> str:
    return console.api_token(name or f"live-{uuid.uuid4().hex[:6]}", role)


def push(console: ConsoleProcess, host: str, token: str, samples: int, logs: list | None = None) -> None:
    now = time.time()
    metrics = [{"name": "live_probe", "labels": {"n": str(i)}, "points": [[int(now * 1000), float(i)]]}
               for i in range(samples)]
    resp = http("POST", console.url + "/api/v1/ingest", json.dumps(batch(host, metrics, logs)).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status == 200, resp.body[:300]


async def socket(console: ConsoleProcess, token: str, topics: list[str]) -> tornado.websocket.WebSocketClientConnection:
    ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        console.url.replace("http", "ws") + "/api/v1/live", headers={"Authorization": f"Bearer {token}"}))
    ws.write_message(json.dumps({"subscribe": topics}))
    assert json.loads(await asyncio.wait_for(ws.read_message(), 10)) == {"subscribed": sorted(topics)}
    return ws


def remote_topics(console: ConsoleProcess) -> float:
    body = http("GET", console.url + "/metrics", timeout=5).body.decode()
    return float(re.search(r"^fleetdeck_live_remote_topics (\S+)$", body, re.M).group(1))


async def frame(ws: tornado.websocket.WebSocketClientConnection, timeout: float) -> dict:
    message = await asyncio.wait_for(ws.read_message(), timeout)
    assert message is not None, f"socket closed ({ws.close_code})"
    return json.loads(message)


def test_a_frame_published_on_one_replica_reaches_sockets_on_the_other(replicas):
    frames_cross(*replicas)


def test_frames_cross_console_processes_sharing_a_sqlite_file(tmp_path):
    database = f"sqlite:///{tmp_path / 'shared' / 'fleetdeck.db'}"
    consoles = [ConsoleProcess(tmp_path / f"console-{i}", FLEETDECK_DATABASE_URL=database) for i in range(2)]
    try:
        for console in consoles:
            console.data_dir.mkdir()
            console.start()
        frames_cross(*consoles)
    finally:
        for console in consoles:
            console.stop()


def frames_cross(first: ConsoleProcess, second: ConsoleProcess) -> None:
    """A batch pushed to ``first``: its host frame reaches a socket on ``second`` within 1 s,
    a log frame larger than one NOTIFY payload arrives whole, and ``first``'s own socket
    gets each frame once."""
    host = "live-" + uuid.uuid4().hex[:8]
    agent, viewer = first.agent_token(host), api_token(first)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        on_second = await socket(second, viewer, [f"host:{host}", f"logs:{host}"])
        on_first = await socket(first, viewer, [f"host:{host}"])
        # Frames are relayed for topics watched elsewhere: the second's announcement reached the first.
        await loop.run_in_executor(None, wait_for, lambda: remote_topics(first) >= 2, 5,
                                   "the first console to learn the second's topics")
        started = time.monotonic()
        await loop.run_in_executor(None, push, first, host, agent, 3)
        got = await frame(on_second, 1.0)
        assert time.monotonic() - started < 1.0
        assert got["topic"] == f"host:{host}" and got["data"]["accepted_samples"] == 3, got
        # A log frame larger than one NOTIFY payload (8000 bytes) arrives whole.
        lines = [{"ts": int(time.time() * 1000), "source": "app", "line": f"{i:04d} " + "é" * 300, "labels": {}}
                 for i in range(40)]
        await loop.run_in_executor(None, push, first, host, agent, 2, lines)
        frames = [await frame(on_second, 2.0), await frame(on_second, 2.0)]
        by_topic = {f["topic"]: f["data"] for f in frames}
        assert by_topic[f"host:{host}"]["accepted_samples"] == 2
        assert [entry["line"] for entry in by_topic[f"logs:{host}"]["logs"]] == [e["line"] for e in lines]
        # The publishing replica's own socket got each frame once: its notifications are ignored.
        assert [(await frame(on_first, 2.0))["data"]["accepted_samples"] for _ in range(2)] == [3, 2]
        with pytest.raises(asyncio.TimeoutError):
            await frame(on_first, 0.7)
        on_first.close()
        on_second.close()

    asyncio.run(scenario())


def test_a_token_revoked_on_one_replica_is_refused_by_every_replica_within_a_second(replicas):
    first, second = replicas
    name = "revoked-" + uuid.uuid4().hex[:6]
    admin, viewer = api_token(first, "admin"), api_token(first, name=name)
    tokens = json.loads(http("GET", first.url + "/api/v1/tokens", headers={"Authorization": f"Bearer {admin}"},
                             timeout=5).body)["tokens"]
    token_id = next(t["id"] for t in tokens if t["name"] == name)

    def me(console: ConsoleProcess) -> int:
        return http("GET", console.url + "/api/v1/me", headers={"Authorization": f"Bearer {viewer}"}, timeout=5).status

    assert (me(first), me(second)) == (200, 200)  # cached on both
    resp = http("DELETE", f"{first.url}/api/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {admin}"},
                timeout=5)
    assert resp.status in (200, 204), resp.body[:300]
    revoked = time.monotonic()
    pending = {first.url: first, second.url: second}
    while pending:
        for url, console in list(pending.items()):
            if me(console) == 401:
                del pending[url]
        assert time.monotonic() - revoked < 1.0 or not pending, f"still accepted by {sorted(pending)}"
        time.sleep(0.05)


@pytest.fixture
def nginx(tmp_path, replicas):
    if not Path(NGINX).exists() or shutil.which("nginx", path="/usr/sbin") is None:
        need("nginx", f"{NGINX} is not installed")
    port = free_port()
    servers = " ".join(f"server 127.0.0.1:{c.port};" for c in replicas)
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, servers=servers, port=port))
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            return http("GET", url + "/healthz", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(up, 20, "nginx to proxy /healthz")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_session_made_on_one_replica_works_on_the_others_behind_nginx(replicas, nginx):
    first, _ = replicas
    name, password = f"lb-{uuid.uuid4().hex[:6]}", "lb-password-" + uuid.uuid4().hex[:8]
    subprocess.run([sys.executable, "-m", "console.cli", "user", "create", name, "--role", "admin"], cwd=REPO,
                   env={**first.env, "FLEETDECK_PASSWORD": password}, check=True, capture_output=True, timeout=120)
    browser = CookieSession(nginx)
    resp = browser.login(name, password)
    assert resp.status == 302, resp.body[:300]
    served_by = set()
    for _ in range(6):  # round robin: every replica answers some of these
        resp = browser.request("GET", "/api/v1/me")
        assert resp.status == 200, (resp.headers.get("x-upstream"), resp.body[:300])
        assert resp.json()["name"] == name
        served_by.add(resp.headers["x-upstream"])
        # An unsafe request: the XSRF cookie and the session check out on whichever replica.
        resp = browser.request("POST", "/api/v1/tokens", {"kind": "api", "name": f"lb-{uuid.uuid4().hex[:6]}",
                                                          "role": "viewer"})
        assert resp.status == 201, (resp.headers.get("x-upstream"), resp.body[:300])
        served_by.add(resp.headers["x-upstream"])
    assert served_by == {f"127.0.0.1:{c.port}" for c in replicas}
