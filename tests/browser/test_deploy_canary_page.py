"""The canary section of the deploy page in headless Chromium, against a real console
deploying to the real dockerd: the verdict, each check's query, threshold and values,
and its sparkline, for a deploy whose canary passed and one whose canary failed."""
from __future__ import annotations

import time

import pytest

from tests.browser.playwright_api import expect
from tests.browser.test_dashboard import PageErrors, log_in
from tests.docker_images import remove_run_containers, run_app, run_labels
from tests.harness import ConsoleHarness, wait_for

SHOP = run_app("cpage")
QUERY = f'max(canary_page_latency{{app="{SHOP}"}})'


@pytest.fixture(scope="module")
def console(tmp_path_factory, docker_client, docker_images):
    apps = {SHOP: {"target": {"image": docker_images, "replicas": 2, "stop_timeout": 0, "labels": run_labels()},
                   "health_check": {"type": "none"}, "timeout": 60,
                   "canary": {"replicas": 1, "duration": 2, "interval": 1, "checks": [
                       {"name": "latency", "query": QUERY, "op": "<", "threshold": 0.5}]}}}
    remove_run_containers(docker_client, SHOP)
    harness = ConsoleHarness(tmp_path_factory.mktemp("canary-page"), apps=apps).start()
    harness.deployer = harness.api_token("deployer", "canary-page")
    harness.agent = harness.agent_token("canary-page-metrics")
    yield harness
    harness.close()
    remove_run_containers(docker_client, SHOP)


@pytest.fixture
def page_timeout_ms() -> int:
    return 30_000  # deploys against a real dockerd take longer than a page load


def deploy(console, version: str, latency: float) -> int:
    status, body = console.push("canary-page-metrics", console.agent, [{
        "name": "canary_page_latency", "type": "gauge", "labels": {"app": SHOP},
        "points": [[int(time.time() * 1000), latency]]}])
    assert status == 200 and not body.get("rejected"), body
    resp = console.request("POST", f"/api/v1/apps/{SHOP}/deploys", {"version": version}, token=console.deployer)
    assert resp.status == 202, resp.body
    deploy_id = resp.json()["id"]
    wait_for(lambda: console.request("GET", f"/api/v1/deploys/{deploy_id}", token=console.deployer).json()["state"]
             not in ("queued", "running"), 60, f"deploy {deploy_id} ends")
    return deploy_id


def test_the_deploy_page_shows_the_canary_checks_and_verdict(console, page):
    errors = PageErrors(page)
    log_in(page, console)
    first = deploy(console, "1.0", 0.1)  # the first release: no canary stage, no section
    page.goto(f"{console.url}/deploys/{first}")
    expect(page.locator("#deploy-state")).to_have_text("succeeded")
    expect(page.locator("#canary")).to_be_hidden()

    passed = deploy(console, "2.0", 0.25)
    page.goto(f"{console.url}/deploys/{passed}")
    expect(page.locator("#canary")).to_be_visible()
    expect(page.locator("#canary-verdict")).to_have_text("passed")
    row = page.locator('#canary-table tbody tr[data-check="latency"]')
    expect(row.locator("td").nth(1)).to_have_text(QUERY)
    expect(row.locator("td").nth(2)).to_have_text("< 0.5")
    expect(row.locator("td").nth(3)).to_have_text("0.25, 0.25")
    expect(row.locator("td").nth(5)).to_have_text("passed")
    expect(row.locator("svg circle")).to_have_count(2)

    failed = deploy(console, "1.0", 0.75)
    page.goto(f"{console.url}/deploys/{failed}")
    expect(page.locator("#deploy-state")).to_have_text("rolled_back")
    expect(page.locator("#canary-verdict")).to_have_text("failed")
    expect(page.locator("#canary-message")).to_have_text("canary analysis failed: check latency = 0.75 (wanted < 0.5)")
    expect(page.locator('#canary-table tbody tr[data-check="latency"] td').nth(5)).to_have_text("failed")
    errors.assert_clean()
