"""The deploys page with an app that has environments, in headless Chromium against a real
console and the real dockerd: the deploy dialog asks which environment, offers and shows
that environment's versions, and deploys and rolls back there only."""
from __future__ import annotations

import re
import time

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness

SHOP = run_app("envshop")


def wait_final(console, deploy_id: int, timeout: float = 60) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while (d := console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.token).json())["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, d
        time.sleep(0.2)
    return d


@pytest.fixture(scope="module")
def shop(tmp_path_factory, docker_client, docker_images):
    target = {"image": docker_images, "stop_timeout": 1, "labels": run_labels()}
    apps = {SHOP: {"strategy": {"type": "recreate"}, "timeout": 60,
                   "environments": {"staging": {"target": target}, "production": {"target": target}}}}
    remove_run_containers(docker_client, SHOP)
    console = ConsoleHarness(tmp_path_factory.mktemp("env-page"), apps=apps).start()
    try:
        console.token = console.api_token("admin", "setup")
        for environment, version in (("production", "1.0"), ("staging", "1.0"), ("staging", "2.0")):
            resp = console.request("POST", f"/api/v1/apps/{SHOP}/deploys",
                                   {"version": version, "environment": environment}, token=console.token)
            assert resp.status == 202, resp.body
            assert wait_final(console, resp.json()["id"])["state"] == "succeeded"
        yield console
    finally:
        console.close()
        remove_run_containers(docker_client, SHOP)
        remove_run_containers(docker_client, f"{SHOP}-staging")
        remove_run_containers(docker_client, f"{SHOP}-production")


@pytest.fixture
def page_timeout_ms() -> int:
    return 60_000  # a deploy against the real dockerd


def test_deploy_and_roll_back_name_the_chosen_environment(shop, page):  # noqa: ANN001
    errors = PageErrors(page)
    log_in(page, shop)
    page.goto(f"{shop.url}/deploys")
    row = page.locator(f'#apps-table tbody tr[data-app="{SHOP}"]')
    row.locator(".deploy-app").click()
    expect(page.locator("#deploy-environment-field")).to_be_visible()
    page.select_option("#deploy-environment", "production")
    expect(page.locator("#deploy-dialog-note")).to_have_text("Now serving 1.0.")
    page.select_option("#deploy-environment", "staging")
    expect(page.locator("#deploy-dialog-note")).to_have_text("Now serving 2.0.")
    page.select_option("#deploy-environment", "production")
    page.fill("#deploy-version", "2.0")
    page.click("#deploy-dialog-submit")
    expect(page.locator("#confirm-message")).to_have_text(f"Deploy {SHOP} (production) to 2.0 (now 1.0).")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r"/deploys/\d+$"))
    deploy_id = int(page.url.rsplit("/", 1)[1])
    done = wait_final(shop, deploy_id)
    assert (done["environment"], done["version"], done["state"]) == ("production", "2.0", "succeeded")
    # Roll back in staging: only staging's earlier versions are offered (1.0, not production's).
    page.goto(f"{shop.url}/deploys")
    row.locator(".rollback-app").click()
    page.select_option("#deploy-environment", "staging")
    expect(page.locator("#rollback-version option")).to_have_text(["1.0"])
    page.click("#deploy-dialog-submit")
    expect(page.locator("#confirm-message")).to_have_text(f"Roll back {SHOP} (staging) to 1.0 (now 2.0).")
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r"/deploys/\d+$"))
    done = wait_final(shop, int(page.url.rsplit("/", 1)[1]))
    assert (done["environment"], done["version"], done["kind"], done["state"]) == ("staging", "1.0", "rollback",
                                                                                   "succeeded")
    errors.assert_clean()
