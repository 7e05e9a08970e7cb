"""Taking credentials away, through the real console: disabling a user ends their API
tokens (and the tokens those minted), their sessions and their live sockets; a revoked
token's socket closes; a revocation written by the CLI process (directly to the
database) is honoured by the running console within a second."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.websocket

from tests.conftest import database_url
from tests.harness import ConsoleHarness, CookieSession

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "offboard-password-1"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request, tmp_path_factory):
    with database_url(request.param, tmp_path_factory) as url:
        harness = ConsoleHarness(tmp_path_factory.mktemp("offboarding"), database_url=url).start()
        harness.admin_token = harness.api_token("admin", "root-admin")
        try:
            yield harness
        finally:
            harness.close()


def new_user(c: ConsoleHarness, role: str) -> tuple[str, CookieSession]:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    resp = c.request("POST", "/api/v1/users", {"username": name, "password": PASSWORD, "role": role},
                     token=c.admin_token)
    assert resp.status == 201, resp.body
    session = CookieSession(c.url)
    assert session.login(name, PASSWORD).status == 302
    return name, session


def me(c: ConsoleHarness, token: str) -> int:
    return c.request("GET", "/api/v1/me", token=token).status


def mint(c: ConsoleHarness, token: str, role: str = "admin") -> tuple[int, dict]:
    resp = c.request("POST", "/api/v1/tokens", {"kind": "api", "name": "minted", "role": role}, token=token)
    return resp.status, resp.json()


def test_disabling_a_user_ends_their_tokens_minted_tokens_and_sessions(console):
    c = console
    name, session = new_user(c, "admin")
    resp = session.request("POST", "/api/v1/tokens", {"kind": "api", "name": "laptop", "role": "admin"})
    assert resp.status == 201, resp.body
    own = resp.json()
    assert own["owner"] == name
    status, child = mint(c, own["token"])
    assert status == 201 and child["owner"] == name  # a token minted by a token acts for the same user
    assert me(c, own["token"]) == me(c, child["token"]) == 200
    assert session.request("GET", "/api/v1/me").status == 200

    resp = c.request("PATCH", f"/api/v1/users/{name}", {"disabled": True}, token=c.admin_token)
    assert resp.status == 200, resp.body

    for token in (own["token"], child["token"]):
        assert me(c, token) == 401
        assert mint(c, token)[0] == 401
    assert session.request("GET", "/api/v1/me").status == 401
    listed = {t["id"]: t for t in c.request("GET", "/api/v1/tokens?include_revoked=true",
                                            token=c.admin_token).json()["tokens"]}
    assert listed[own["id"]]["revoked_at"] is not None and listed[child["id"]]["revoked_at"] is not None
    entry = c.request("GET", "/api/v1/audit?limit=20", token=c.admin_token).json()["entries"]
    update = next(e for e in entry if e["action"] == "user.update" and e["target"] == f"user:{name}")
    assert sorted(update["details"]["tokens_revoked"]) == sorted([own["id"], child["id"]])

    # Enabling the user again does not bring the tokens back.
    assert c.request("PATCH", f"/api/v1/users/{name}", {"disabled": False}, token=c.admin_token).status == 200
    assert me(c, own["token"]) == 401


def test_a_token_never_outranks_its_owner(console):
    c = console
    name, session = new_user(c, "admin")
    token = session.request("POST", "/api/v1/tokens", {"kind": "api", "name": "ci", "role": "admin"}).json()["token"]
    assert c.request("GET", "/api/v1/users", token=token).status == 200
    assert c.request("PATCH", f"/api/v1/users/{name}", {"role": "viewer"}, token=c.admin_token).status == 200
    deadline = time.monotonic() + 1.0
    while c.request("GET", "/api/v1/users", token=token).status != 403:
        assert time.monotonic() < deadline, "a demoted owner's token kept the admin role"
        time.sleep(0.05)
    assert c.request("GET", "/api/v1/me", token=token).json()["role"] == "viewer"
    assert mint(c, token)[0] == 403


async def _open_socket(c: ConsoleHarness, headers: dict, host: str) -> tornado.websocket.WebSocketClientConnection:
    ws = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        c.url.replace("http", "ws") + "/api/v1/live", headers=headers))
    ws.write_message(json.dumps({"subscribe": [f"logs:{host}"]}))
    assert json.loads(await asyncio.wait_for(ws.read_message(), 10)) == {"subscribed": [f"logs:{host}"]}
    return ws


async def _stream_then_cut(c: ConsoleHarness, headers: dict, cut) -> tuple[dict, object, float, int | None]:
    """Open a socket, see one log frame, call ``cut()`` (blocking, in a thread), push another
    line; returns (first frame, what the socket read next, seconds until then, close code)."""
    host = "sock-" + uuid.uuid4().hex[:8]
    agent = c.agent_token(host)
    loop = asyncio.get_running_loop()
    now = int(time.time() * 1000)

    def push(text: str) -> None:
        status, body = c.push(host, agent, [], [{"ts": now, "source": "app", "line": text, "labels": {}}])
        assert status == 200, body

    ws = await _open_socket(c, headers, host)
    await loop.run_in_executor(None, push, "before")
    first = json.loads(await asyncio.wait_for(ws.read_message(), 10))
    await loop.run_in_executor(None, cut)
    started = time.monotonic()
    await loop.run_in_executor(None, push, "after the cut: secret")
    nxt = await asyncio.wait_for(ws.read_message(), 10)
    return first, nxt, time.monotonic() - started, ws.close_code


def test_socket_of_a_revoked_token_closes(console):
    c = console
    created = c.request("POST", "/api/v1/tokens", {"kind": "api", "name": "watcher", "role": "viewer"},
                        token=c.admin_token).json()

    def revoke() -> None:
        assert c.request("DELETE", f"/api/v1/tokens/{created['id']}", token=c.admin_token).status == 200

    first, nxt, took, code = asyncio.run(_stream_then_cut(c, {"Authorization": f"Bearer {created['token']}"},
                                                          revoke))
    assert first["data"]["logs"][0]["line"] == "before"
    assert nxt is None, f"the socket kept streaming after its token was revoked: {nxt}"
    assert code == 4401 and took < 2.0


def _cookie_headers(session: CookieSession) -> dict:
    return {"Cookie": "; ".join(f"{k.name}={k.value}" for k in session.jar)}


def test_socket_of_a_session_closes_at_logout(console):
    c = console
    _, session = new_user(c, "viewer")

    def logout() -> None:
        assert session.request("POST", "/logout", b"", {"Content-Type": "application/x-www-form-urlencoded"}
                               ).status == 302

    first, nxt, _, code = asyncio.run(_stream_then_cut(c, _cookie_headers(session), logout))
    assert first["data"]["logs"][0]["line"] == "before"
    assert nxt is None and code == 4401


def test_socket_of_a_disabled_user_closes(console):
    c = console
    name, session = new_user(c, "viewer")

    def disable() -> None:
        assert c.request("DELETE", f"/api/v1/users/{name}", token=c.admin_token).status == 200

    _, nxt, _, code = asyncio.run(_stream_then_cut(c, _cookie_headers(session), disable))
    assert nxt is None and code == 4401


def test_a_revocation_by_the_cli_process_takes_effect_within_a_second(console):
    c = console
    created = c.request("POST", "/api/v1/tokens", {"kind": "api", "name": "cli-revoked", "role": "viewer"},
                        token=c.admin_token).json()
    for _ in range(3):  # looked up, so the console has it cached
        assert me(c, created["token"]) == 200
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(c.config.data_dir),
               FLEETDECK_DATABASE_URL=c.config.database_url)
    env.pop("FLEETDECK_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "console.cli", "token", "revoke", str(created["id"])],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    revoked_at = time.monotonic()
    while me(c, created["token"]) != 401:
        assert time.monotonic() - revoked_at < 1.0, "the console still honours a token the CLI revoked"
        time.sleep(0.02)
