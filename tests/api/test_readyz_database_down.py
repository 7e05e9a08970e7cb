"""``/readyz`` while the PostgreSQL server cannot be reached, on a real console and the
real server: the console talks to PostgreSQL through a loopback TCP relay the test owns,
so closing the relay (and every connection through it) is the server going away for
this console only; reopening it on the same port is the server coming back."""
from __future__ import annotations

import urllib.parse

import pytest

from tests.conftest import need
from tests.harness import ConsoleHarness, wait_for
from tests.relay import Relay


@pytest.fixture
def relayed_postgres(postgres_url):
    """``postgres_url`` (a private schema) reached through a :class:`Relay`."""
    parts = urllib.parse.urlsplit(postgres_url)
    if parts.hostname is None:
        need("postgres", "the test database URL names no TCP host (a Unix socket cannot be relayed)")
    relay = Relay((parts.hostname, parts.port or 5432)).open()
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{relay.port}"))
    yield relay, url
    relay.close()


def test_readyz_answers_503_while_postgresql_is_away_and_200_once_it_is_back(tmp_path, relayed_postgres):
    relay, url = relayed_postgres
    harness = ConsoleHarness(tmp_path, database_url=url).start()
    try:
        ready = harness.request("GET", "/readyz")
        assert ready.status == 200 and ready.json() == {"status": "ready", "database": "postgresql"}
        relay.close()
        down = harness.request("GET", "/readyz")
        assert down.status == 503, down.body
        error = down.json()["error"]
        assert error["code"] == "storage_unavailable" and "database unreachable" in error["message"]
        assert harness.request("GET", "/healthz").status == 200  # the process itself is fine
        metrics = harness.request("GET", "/metrics").body.decode().splitlines()
        counted = [line for line in metrics if line.startswith('fleetdeck_storage_errors_total{operation="readyz"}')]
        assert len(counted) == 1 and float(counted[0].split()[-1]) >= 1.0, counted
        relay.open()
        wait_for(lambda: harness.request("GET", "/readyz").status == 200, 30, "/readyz to recover")
    finally:
        relay.close()
        harness.close()
