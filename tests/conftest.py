"""Shared fixtures. Services a test needs are skipped where missing, unless named in
``FLEETDECK_REQUIRE`` (comma-separated: browser, docker, ssh, postgres), where a missing
service fails the test instead."""
from __future__ import annotations

import pytest

from tests.harness import ConsoleHarness, chromium_path, required_services

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need(service: str, reason: str) -> None:
    """Skip (or fail, when required) because ``service`` is unavailable."""
    if service in required_services():
        pytest.fail(f"required service {service!r} unavailable: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    harness = ConsoleHarness(tmp_path_factory.mktemp("console")).start()
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        need("browser", "no chromium binary at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        need("browser", f"playwright is not installed ({exc})")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # the binary exists but cannot start here
            need("browser", f"chromium failed to launch: {exc}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def postgres_url():
    """A SQLAlchemy URL of an empty private schema in the test PostgreSQL database
    (``FLEETDECK_TEST_POSTGRES_URL``); skips, or fails when ``postgres`` is required."""
    from tests.pg import base_url, postgres_problem, private_schema

    url = base_url()
    problem = postgres_problem(url)
    if problem:
        need("postgres", problem)
    with private_schema(url) as schema_url:
        yield schema_url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def any_console(request, tmp_path_factory):
    """A running console on SQLite, then on PostgreSQL (the same tests run on both)."""
    if request.param == "sqlite":
        harness = ConsoleHarness(tmp_path_factory.mktemp("console-sqlite")).start()
    else:
        harness = ConsoleHarness(tmp_path_factory.mktemp("console-pg"),
                                 database_url=request.getfixturevalue("postgres_url")).start()
    yield harness
    harness.close()
