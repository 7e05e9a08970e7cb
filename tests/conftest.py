"""Shared fixtures. Services a test needs are skipped where missing, unless named in
``FLEETDECK_REQUIRE`` (comma-separated: browser, docker, ssh, postgres, prometheus, ansible, lint, blackbox,
schemathesis, kubernetes_validate, systemd, tmpfs, debian-logs), where a missing service fails the test
instead. Skips about the platform itself (no Linux /proc) stay plain, explicit skips."""
from __future__ import annotations

import contextlib
import subprocess

import pytest

from tests.harness import ConsoleHarness, chromium_path, required_services

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Name the order the tests ran in, also under ``-q`` (which hides the header where
    pytest-randomly prints its seed): ``--randomly-seed=N`` repeats it, ``-p no:randomly``
    runs in file order (CONTRIBUTING.md)."""
    if config.pluginmanager.hasplugin("randomly") and config.getoption("randomly_reorganize"):
        terminalreporter.write_line(f"random order: rerun with --randomly-seed={config.getoption('randomly_seed')}")
    else:
        terminalreporter.write_line("file order: random order is off (pytest-randomly not loaded or disabled)")


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


@contextlib.contextmanager
def database_url(kind: str, tmp_path_factory):
    """A clean, empty database for one test module: a new SQLite file, or a private schema
    in ``$FLEETDECK_TEST_POSTGRES_URL`` (tests/pg.py, dropped afterwards). Skips (or fails,
    when required) without PostgreSQL."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fleetdeck.db'}"
        return
    from tests.pg import base_url, postgres_problem, private_schema

    url = base_url()
    problem = postgres_problem(url)
    if problem:
        need("postgres", problem)
    with private_schema(url) as schema_url:
        yield schema_url


@contextlib.contextmanager
def console_on(kind: str, tmp_path_factory, **console):
    """A started in-process console on a fresh database of ``kind`` (:func:`database_url`),
    the rollup job off so tests drive it, ``console`` settings over the defaults;
    ``harness.kind`` names the kind. Closed afterwards."""
    with database_url(kind, tmp_path_factory) as url:
        harness = ConsoleHarness(tmp_path_factory.mktemp("console"), database_url=url,
                                 **{"rollup_interval": 0.0, **console}).start()
        harness.kind = kind
        try:
            yield harness
        finally:
            harness.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_console(request, tmp_path_factory):
    """A console on a fresh database of each kind (SQLite, PostgreSQL), rollup job off so
    tests drive it; ``request.param`` names the kind."""
    with console_on(request.param, tmp_path_factory) as harness:
        yield harness


@pytest.fixture(scope="session")
def docker_client():
    """A docker-py client of the local dockerd; needs("docker") when it cannot be reached."""
    try:
        import docker
    except ImportError as exc:
        need("docker", f"the docker SDK is not installed ({exc})")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # docker-py raises several kinds for a missing daemon
        need("docker", f"dockerd unreachable: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def docker_images(docker_client):
    """The test images (tests/docker_images.py) under this run's repository
    (``run_repository()``), removed again at the end of the session."""
    import docker

    from tests.docker_images import build_test_images, run_repository

    try:
        # Not labelled with the run label: containers inherit image labels, so a foreign
        # container made from these images would count as this run's.
        refs = build_test_images(docker_client, run_repository())
    except FileNotFoundError as exc:
        need("docker", str(exc))
    yield run_repository()
    for ref in refs:
        with contextlib.suppress(docker.errors.APIError):  # still used by a container a test left behind
            docker_client.images.remove(ref)


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A SQLAlchemy URL of an empty private schema in the test PostgreSQL database."""
    with database_url("postgres", tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on a free loopback port with per-run keys (tests/sshd.py SshServer)."""
    from tests.sshd import SshServer, sshd_unavailable

    reason = sshd_unavailable()
    if reason:
        need("ssh", reason)
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        need("ssh", f"sshd did not start: {exc}")
    yield server
    server.stop()
