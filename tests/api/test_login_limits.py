"""Login throttling per (user, client address), over real sockets from distinct loopback
source addresses (127.0.0.2, 127.0.0.3, ...), and behind a trusted reverse proxy whose
X-Forwarded-For names the client."""
from __future__ import annotations

import http.client
import http.cookies
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from tests.harness import ConsoleHarness

REPO = Path(__file__).resolve().parents[2]


def login(harness: ConsoleHarness, username: str, password: str, source: str = "127.0.0.1",
          forwarded_for: str | None = None) -> int:
    """GET the form (for the _xsrf cookie) and POST it from ``source``; the status (302: in)."""
    def request(method: str, body: bytes | None = None, headers: dict | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=30, source_address=(source, 0))
        hdrs = dict(headers or {})
        if forwarded_for:
            hdrs["X-Forwarded-For"] = forwarded_for
        conn.request(method, "/login", body=body, headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp

    form = request("GET")
    jar = http.cookies.SimpleCookie()
    for value in form.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    xsrf = jar["_xsrf"].value if "_xsrf" in jar else ""
    body = urllib.parse.urlencode({"username": username, "password": password, "next": "/", "_xsrf": xsrf})
    return request("POST", body.encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                           "Cookie": f"_xsrf={xsrf}"}).status


@pytest.fixture
def direct(tmp_path):
    harness = ConsoleHarness(tmp_path, login_failures_per_user=5, login_failures_per_ip=20).start()
    yield harness
    harness.close()


def test_five_wrong_passwords_from_one_address_do_not_lock_admin_out_elsewhere(direct):
    h = direct
    assert [login(h, "admin", "wrong-password-1", "127.0.0.2") for _ in range(5)] == [401] * 5
    assert login(h, "admin", h.admin_password, "127.0.0.2") == 429  # that address waits, right password or not
    # A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    assert login(h, "admin", h.admin_password, "127.0.0.2", forwarded_for="198.51.100.9") == 429
    assert login(h, "admin", h.admin_password, "127.0.0.3") == 302


def test_behind_a_trusted_proxy_each_client_address_is_throttled_apart(tmp_path):
    h = ConsoleHarness(tmp_path, trusted_proxies="127.0.0.1, 10.0.0.0/8",
                       login_failures_per_user=5, login_failures_per_ip=20).start()
    try:
        attacker = "203.0.113.5"
        # The client is the right-most hop that is not a trusted proxy.
        statuses = [login(h, f"user{i}", "wrong-password-1", forwarded_for=f"{attacker}, 10.1.2.3")
                    for i in range(20)]
        assert statuses == [401] * 20
        assert login(h, "admin", h.admin_password, forwarded_for=attacker) == 429
        # Everyone else behind the same proxy logs in; a forged left-most hop is not trusted.
        assert login(h, "admin", h.admin_password, forwarded_for="198.51.100.7") == 302
        assert login(h, "admin", h.admin_password, forwarded_for=f"192.0.2.1, {attacker}") == 429
        audit = h.services.db.run(h.services.audit.entries, 30)
        assert {e["source"] for e in audit if e["action"] == "login.failure"} == {attacker}
    finally:
        h.close()


@pytest.mark.parametrize("value", ["proxy.example.com", "10.0.0.300", "127.0.0.1, nope"])
def test_invalid_trusted_proxies_refuse_to_start(tmp_path, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"console:\n  trusted_proxies: {value!r}\n")
    with pytest.raises(ConfigError, match=rf"console\.trusted_proxies: .*not an IP address.* \(from {re.escape(str(path))} line 2\)"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"console\.trusted_proxies: .*\(from environment FLEETDECK_TRUSTED_PROXIES\)"):
        load_config(None, env={"FLEETDECK_TRUSTED_PROXIES": value})
    env = dict(os.environ, PYTHONPATH=str(REPO), FLEETDECK_DATA_DIR=str(tmp_path / "data"),
               FLEETDECK_LISTEN="127.0.0.1:0")
    env.pop("FLEETDECK_TRUSTED_PROXIES", None)
    proc = subprocess.run([sys.executable, "-m", "console.cli", "--config", str(path), "serve"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "trusted_proxies" in proc.stderr
