"""Session and API token lifetimes, on a real console over HTTP whose services run on a
clock the test moves (``build_services(clock=...)``): a browser session ends
``session_days`` after login and an API token at its ``expires_at``, cached or not."""
from __future__ import annotations

import pytest

from tests.harness import ConsoleHarness, OffsetClock, logged_in


def test_a_session_ends_session_days_after_login(tmp_path):
    clock = OffsetClock()
    harness = ConsoleHarness(tmp_path, session_days=1.0, clock=clock).start()
    try:
        session = logged_in(harness, "viewer")
        assert session.request("GET", "/api/v1/hosts").status == 200
        clock.offset = 86400 - 120  # two minutes before the end of the day: still in
        assert session.request("GET", "/api/v1/hosts").status == 200
        assert session.request("GET", "/").status == 200
        clock.offset = 86400 + 1
        assert session.request("GET", "/api/v1/hosts").status == 401
        page = session.request("GET", "/")
        assert page.status == 302 and page.headers["location"].startswith("/login")
        # logging in again starts a new day
        again = logged_in(harness, "viewer")
        assert again.request("GET", "/api/v1/hosts").status == 200
    finally:
        harness.close()


def test_an_api_token_stops_working_at_its_expiry_even_while_cached(tmp_path):
    clock = OffsetClock()
    harness = ConsoleHarness(tmp_path, clock=clock).start()
    try:
        admin = harness.api_token("admin")
        created = harness.request("POST", "/api/v1/tokens", {"name": "ci", "role": "viewer", "expires_in": 3600},
                                  token=admin)
        assert created.status == 201, created.body
        token = created.json()["token"]
        assert created.json()["expires_at"] == pytest.approx(clock() + 3600, abs=60)
        assert harness.request("GET", "/api/v1/hosts", token=token).status == 200  # now cached
        clock.offset = 3600 - 60
        assert harness.request("GET", "/api/v1/hosts", token=token).status == 200
        clock.offset = 3600 + 1
        assert harness.request("GET", "/api/v1/hosts", token=token).status == 401
        listed = harness.request("GET", "/api/v1/tokens", token=admin).json()["tokens"]
        assert [t["expires_at"] for t in listed if t["name"] == "ci"] == [created.json()["expires_at"]]
        # a token without a lifetime is unaffected by the same clock
        assert harness.request("GET", "/api/v1/hosts", token=admin).status == 200
    finally:
        harness.close()
