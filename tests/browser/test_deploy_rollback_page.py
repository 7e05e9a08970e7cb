"""The deploy page's "Roll back" panel (the link DeployRegression carries) in headless
Chromium against a real console deploying to the real dockerd: it rolls back to the
version the deploy replaced, with the reason typed in, once confirmed; a first deploy has no
panel."""
from __future__ import annotations

import time

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, logged_in

APP = run_app("undo")


@pytest.fixture
def page_timeout_ms() -> int:
    return 30_000  # deploys against a real dockerd take longer than a page load


def deploy(console, token: str, version: str) -> dict:
    resp = console.request("POST", f"/api/v1/apps/{APP}/deploys", {"version": version}, token=token)
    assert resp.status == 202, resp.body
    deadline = time.monotonic() + 60
    while (d := console.request("GET", f"/api/v1/deploys/{resp.json()['id']}", token=token).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert d["state"] == "succeeded", d
    return d


def test_the_rollback_panel_puts_the_previous_version_back(tmp_path, docker_client, docker_images, page):
    apps = {APP: {"target": {"image": docker_images, "stop_timeout": 1, "labels": run_labels()}, "timeout": 60}}
    remove_run_containers(docker_client, APP)
    console = ConsoleHarness(tmp_path / "data", apps=apps).start()
    try:
        deployer = console.api_token("deployer")
        first = deploy(console, deployer, "1.0")
        second = deploy(console, deployer, "2.0")
        # the first deploy replaced nothing: no panel
        assert b'id="rollback"' not in logged_in(console, "viewer").request("GET", f"/deploys/{first['id']}").body
        errors = PageErrors(page)
        log_in(page, console)  # the admin may roll back
        page.goto(f"{console.url}/deploys/{second['id']}#rollback")
        expect(page.locator("#rollback-form button")).to_have_text(f"Roll back {APP} to 1.0")
        page.fill("#rollback-reason", "DeployRegression on error_rate")
        page.click("#rollback-form button")
        expect(page.locator("#confirm-dialog")).to_be_visible()  # nothing happens before the confirmation
        expect(page.locator("#confirm-message")).to_contain_text(f"Roll back {APP} to 1.0")
        assert console.request("GET", f"/api/v1/deploys/{second['id'] + 1}", token=deployer).status == 404
        page.click("#confirm-yes")
        page.wait_for_url(f"{console.url}/deploys/{second['id'] + 1}")
        expect(page.locator("#deploy-state")).to_have_text("succeeded")
        back = console.request("GET", f"/api/v1/deploys/{second['id'] + 1}", token=deployer).json()
        assert (back["kind"], back["version"], back["reason"]) == ("rollback", "1.0", "DeployRegression on error_rate")
        errors.assert_clean()
    finally:
        console.close()
        remove_run_containers(docker_client, APP)
